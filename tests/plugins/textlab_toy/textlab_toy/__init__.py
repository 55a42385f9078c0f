"""A minimal third-party textlab plugin: task `toy`, one model, one dataset, one metric, one embedder.

The task: is the sum of a sequence of small integers positive? A linear model over token
embeddings learns it in a few dozen steps on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import textlab
from textlab import Option

__version__ = "0.3.1"


@dataclass
class LinearConfig:
    vocab_size: int = 21
    dim: int = 8


def build_linear(config: LinearConfig, vocab):
    import torch

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(config.vocab_size, config.dim)
            self.out = torch.nn.Linear(config.dim, 2)

        def forward(self, x):
            return self.out(self.emb(x).mean(1))

    return Linear()


def make_data(n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 21, (n, 6), generator=g)
    y = ((x - 10).sum(1) > 0).long()
    return x, y


def load_sample(split: str, n: int = 256):
    return make_data(n, {"train": 1, "valid": 2, "test": 3}[split])


@dataclass
class TrainOptions(textlab.Options):
    """The options of `textlab train toy`: one dataclass (help, bounds, defaults in one place)."""

    model: str = textlab.option("linear", help="Which registered model.")
    data: str = textlab.option("sample", help="'sample' (the only source of this toy).")
    steps: int = textlab.options.steps(40)
    epochs: int = textlab.options.epochs(100)
    lr: float = textlab.options.lr(0.1, help="Learning rate.")
    batch_size: int = textlab.option(32, min=1, help="Examples per step.")
    eval_every: int = textlab.options.eval_every(10)
    patience: Optional[int] = textlab.options.patience()
    time_budget: Optional[float] = textlab.options.time_budget()
    step_delay: float = textlab.option(0.0, min=0.0, help="Sleep per step (tests of Ctrl-C).")
    fail: bool = textlab.option(False, help="Raise a data error before training (tests).")


def train(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train the toy classifier."""
    import time

    import torch

    if opts.fail:
        raise textlab.DataError("toy data is malformed (asked for with --fail)")
    source = textlab.resolve("toy", opts.data)
    if source.kind != "registered":
        raise textlab.DataError(f"toy only knows --data sample, not {opts.data!r}")
    x, y = source.spec.load("train")
    vx, vy = source.spec.load("valid")
    spec = textlab.registry().model("toy", opts.model)
    config = textlab.make_config(spec.config, {})
    net = spec.build(config, None)
    optim = torch.optim.SGD(net.parameters(), lr=opts.lr)
    B = opts.batch_size

    def batches(epoch):
        g = torch.Generator().manual_seed(run.seed * 1000 + epoch)
        order = torch.randperm(len(x), generator=g)
        idx = textlab.distributed.shard(order)
        return [idx[i:i + B] for i in range(0, len(idx) - B + 1, B)]

    def step(net, idx):
        if opts.step_delay:
            time.sleep(opts.step_delay)
        logits = net(x[idx])
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        return {"loss": loss, "n": len(idx), "accuracy": (logits.argmax(1) == y[idx]).float().mean()}

    def evaluate(net):
        logits = net(vx)
        return {"loss": torch.nn.functional.cross_entropy(logits, vy), "accuracy": (logits.argmax(1) == vy).float().mean()}

    result = textlab.Engine(run, net, optim, batches=batches, step=step, evaluate=evaluate,
                            meta={"model": opts.model, "config": config, "vocab": None},
                            epochs=opts.epochs, steps=opts.steps, eval_every=opts.eval_every, patience=opts.patience,
                            time_budget=opts.time_budget, monitor="valid/accuracy").fit()
    return {"steps": result.step, "best": result.best}


def evaluate(
    artifact: textlab.Artifact,
    *,
    split: Annotated[str, Option(help="train, valid or test.")] = "test",
) -> dict:
    """Accuracy of a toy checkpoint on a split of the sample."""
    import torch

    net = artifact.build_model()
    x, y = load_sample(split)
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    textlab.show(f"toy accuracy on {split}: {acc:.3f}")
    result = {"split": split, "accuracy": acc}
    textlab.write_json(artifact.output_dir("eval") / f"{split}.json", result)  # what `textlab report` shows
    return result


@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(name="toy", help="Toy: is the sum positive? (a third-party example)",
                             verbs={"train": train, "eval": evaluate}, monitor="valid/accuracy")]


@textlab.hookimpl
def textlab_models():
    return [textlab.ModelSpec(task="toy", name="linear", config=LinearConfig, build=build_linear,
                              help="mean of embeddings -> linear")]


@textlab.hookimpl
def textlab_datasets():
    return [textlab.DatasetSpec(task="toy", name="sample", load=load_sample, help="256 generated sequences per split")]


@textlab.hookimpl
def textlab_metrics():
    return [textlab.MetricSpec(name="toy_margin", higher_is_better=True, help="an example metric", task="toy")]


def hashed_vectors(text, out_dir, *, dim: int, seed: int = 0, device: str = "cpu") -> dict:
    """A toy embedder: each word of `text` gets a vector drawn from a generator seeded by the word."""
    import hashlib
    import random
    from pathlib import Path

    words = sorted({w for line in Path(text).read_text(encoding="utf-8").splitlines() for w in line.split()})
    out = Path(out_dir) / "vectors.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(f"{len(words)} {dim}\n")
        for w in words:
            rng = random.Random(int(hashlib.md5(f"{seed}:{w}".encode()).hexdigest(), 16))
            fh.write(w + " " + " ".join(f"{rng.uniform(-1, 1):.4f}" for _ in range(dim)) + "\n")
    return {"vectors": str(out), "words": len(words)}


@textlab.hookimpl
def textlab_embedders():
    return [textlab.EmbedderSpec(name="toyhash", train=hashed_vectors, help="seeded random vectors per word (a test)")]
