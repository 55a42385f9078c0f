"""The transformer ranker's inputs, and its training on the core engine.

Each markdown cell is one input: `[CLS] markdown [SEP] code [SEP] code [SEP] ...`, the markdown
cut to `md_tokens` tokens, then `code_cells` code cells evenly spread over the notebook (in their
order), each cut to `code_tokens`, the whole cut to `max_len`. Two numbers describe the
notebook (its markdown share, log of its code cells). The target is the cell's relative position
(code cells before it / code cells); the loss is the mean absolute error, as in the top solutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import textlab

from . import features as F
from .config import MONITOR, TASK, TrainOptions, TransformerConfig
from .data import Notebook

CHARS_PER_TOKEN = 12  # text cut before tokenising (a token is rarely longer): the budget, not the cell, costs time


@dataclass
class Encoded:
    """A notebook's inputs: the token ids of each markdown cell, the shared code context, the notebook's
    features, and the markdown cells' relative positions when the order is known."""

    md: list[np.ndarray]
    context: np.ndarray
    feats: np.ndarray
    targets: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.md)


def code_sample(C: int, k: int) -> list[int]:
    """`k` code cells evenly spread over `C` (all of them when there are at most `k`), in order."""
    if C <= k:
        return list(range(C))
    return sorted({int(round(x)) for x in np.linspace(0, C - 1, k)})


def _ids(tok: Any, texts: Sequence[str], budget: int) -> list[np.ndarray]:
    if not texts:
        return []
    enc = tok.encode_batch([F.clean(t)[: budget * CHARS_PER_TOKEN] for t in texts], add_special_tokens=False)
    return [np.asarray(e.ids[:budget], dtype=np.int64) for e in enc]


def encode_cells(nb: Notebook, tok: Any, config: TransformerConfig) -> Encoded:
    M, C = len(nb.markdown), len(nb.code)
    md = _ids(tok, [nb.sources[i] for i in nb.markdown], config.md_tokens)
    code = _ids(tok, [nb.sources[nb.code[k]] for k in code_sample(C, config.code_cells)], config.code_tokens)
    context = np.concatenate([np.append(c, config.sep_id) for c in code]) if code else np.zeros(0, np.int64)
    feats = np.array([M / max(M + C, 1), math.log1p(C) / 5.0], dtype=np.float32)
    targets = None
    if nb.order is not None:
        gaps = nb.gaps()
        targets = np.array([gaps[nb.cell_ids[i]] / max(C, 1) for i in nb.markdown], dtype=np.float32)
    return Encoded(md, context, feats, targets)


def make_batch(items: Sequence[tuple[Encoded, int]], config: TransformerConfig, device: Any) -> dict:
    """Padded input ids, attention mask, features (and targets) of markdown cells (notebook, index)."""
    import torch

    rows = [np.concatenate([[config.cls_id], e.md[m], [config.sep_id], e.context])[: config.max_len] for e, m in items]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), config.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, r in enumerate(rows):
        ids[k, :len(r)], mask[k, :len(r)] = r, 1
    out = {"ids": torch.from_numpy(ids).to(device), "mask": torch.from_numpy(mask).to(device),
           "feats": torch.from_numpy(np.stack([e.feats for e, _ in items])).to(device)}
    if all(e.targets is not None for e, _ in items):
        out["target"] = torch.tensor([float(e.targets[m]) for e, m in items], device=device)
    return out


def encoder_record(run: textlab.Run, opts: TrainOptions, loaded: dict) -> None:
    """The encoder folder and the sha256 of its files in run.json; a resume refuses a folder whose files changed."""
    local = Path(opts.encoder).expanduser()
    where = str(local.resolve()) if local.is_dir() else opts.encoder
    if run.resumed:
        before = (run.info.get("encoder") or {}).get("files")
        if before is not None and before != loaded["files"]:
            changed = sorted(k for k in set(before) | set(loaded["files"]) if before.get(k) != loaded["files"].get(k))
            raise textlab.DataError(f"--encoder {opts.encoder} is not the folder the run started from: "
                                    f"{', '.join(changed[:3])} differ{'s' if len(changed) == 1 else ''}",
                                    hint="resume with the same encoder files, or start a new run")
    run.update(encoder={"path": where, "files": loaded["files"]})


def resolved_max_len(opts: TrainOptions, loaded: dict) -> int:
    most = loaded["max_positions"]
    if opts.max_len is not None and opts.max_len > most:
        raise textlab.UsageError(f"--max-len {opts.max_len} is more than the encoder's {most} positions",
                                 hint=f"--max-len {most} or less")
    return opts.max_len or min(512, most)


def prepare_encoder(run: textlab.Run, opts: TrainOptions) -> dict:
    """The encoder loaded (see `hf.load_encoder`), its files recorded, and `max_len` resolved: `loaded["config"]`."""
    from .hf import load_encoder

    loaded = load_encoder(opts.encoder, hub=opts.hub)
    encoder_record(run, opts, loaded)
    max_len = resolved_max_len(opts, loaded)
    loaded["config"] = textlab.make_config(TransformerConfig, opts, {
        "encoder_config": loaded["config_json"], "hidden": loaded["hidden"], "max_len": max_len,
        **{k: loaded[k] for k in ("cls_id", "sep_id", "pad_id")}})
    return loaded


def train_transformer(run: textlab.Run, opts: TrainOptions, loaded: dict, train: Sequence[Notebook],
                      valid: Sequence[Notebook], extra: dict) -> dict:
    """Fine-tune the encoder on the engine (DDP, --precision, --time-budget, exact resume)."""
    import torch

    from .evaluate import evaluate_orders, overall
    from .model import TransformerRanker
    from .train import usable

    config = loaded["config"]
    vocab = {"tokenizer": loaded["tokenizer_json"]}
    net = TransformerRanker(config, vocab, encoder=loaded.pop("model"))
    tok, train = net.tokenizer(), usable(train)
    with textlab.progress(len(train), "tokenize", unit="nb") as bar:
        encs = []
        for nb in train:
            encs.append(encode_cells(nb, tok, config))
            bar.advance(1)
    items = [(k, m) for k, e in enumerate(encs) for m in range(e.n)]
    B, device = opts.batch_size, run.device

    def batches(epoch: int):
        g = torch.Generator().manual_seed(run.seed * 1000 + epoch)
        order = textlab.distributed.shard(torch.randperm(len(items), generator=g).tolist())
        return [order[i:i + B] for i in range(0, len(order), B)]

    def step(model, batch):
        b = make_batch([(encs[items[i][0]], items[i][1]) for i in batch], config, device)
        loss = (model(b).float() - b["target"]).abs().mean()
        return {"loss": loss, "n": len(batch), "units": len(batch)}

    def evaluate(model):
        return overall(evaluate_orders(valid, model.order(valid, show=False))[0])

    per_epoch = math.ceil(len(textlab.distributed.shard(list(range(len(items))))) / B)
    warmup = opts.warmup if opts.warmup is not None else max(1, round(0.05 * opts.epochs * per_epoch))
    run.record(max_len=config.max_len, warmup=warmup)
    result = textlab.Engine(
        run, net, textlab.adamw(net, opts.lr, 0.01), batches=batches, step=step, evaluate=evaluate if valid else None,
        meta={"model": "transformer", "config": config, "vocab": vocab, "extra": extra}, epochs=opts.epochs,
        time_budget=opts.time_budget, schedule=textlab.Schedule("linear", warmup=warmup), grad_clip=1.0,
        monitor=MONITOR if valid else "train/loss", unit="md", description="train transformer").fit()
    return {"steps": result.step, "best": result.best, "stopped": result.stopped, "train_time": result.train_time,
            "valid_kendall_tau": result.best if valid else None, "task": TASK}
