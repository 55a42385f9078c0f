"""recrnn learnability probe: can a model learn 0-hop lookups at all? (a check, not a benchmark)

Trains each configuration in-process for a few hundred steps on 0-hop records only (curriculum
level 0) and prints the training answer accuracy per 100 steps. Used to find why the looped model
learned nothing where the non-looped baseline did (plugins/textlab_recrnn/README.md, "Learnability").

    textlab prep recrnn --task pchase --statements 12 --chains 4 --train-max 4 --n-train 50000 \\
        --n-valid 100 --n-test 200 --out /tmp/pc12
    flock -s /tmp/textlab-bench.lock python benchmarks/recrnn_probe.py --data /tmp/pc12 \\
        'model_kind="plain"' 'r=1' 'r=1,coda_norm=False,injection="add"' 'r=1,coda_norm=False,adapter_eye=True'

Each spec is Python keyword arguments: `model_kind` ("rec" or "plain"), `r` (fixed iterations),
`steps`, `lr`, `level`, `adapter_eye` (start the adapter's input half as the identity), and any
RecrnnConfig field (the `cpu` preset with `token_mix=3` and the given vocabulary otherwise).
"""

from __future__ import annotations

import argparse
import ast
import time

import torch


def run(ds, model_kind: str = "rec", steps: int = 500, r: int = 1, lr: float = 3e-3, level: int = 0,
        adapter_eye: bool = False, **over) -> list[float]:
    from textlab_recrnn.config import PRESETS, RecrnnConfig
    from textlab_recrnn.model import build_plain, build_recurrent, losses
    from textlab_recrnn.train import batch_indices, take

    import textlab

    torch.manual_seed(0)
    cfg = RecrnnConfig(**{**PRESETS["cpu"], "token_mix": 3, "vocab_size": len(ds.vocab), "pad_id": ds.pad_id, **over})
    model = (build_recurrent if model_kind == "rec" else build_plain)(cfg)
    if adapter_eye and getattr(model, "adapter", None) is not None:
        with torch.no_grad():
            model.adapter.weight[:, cfg.dim:] = torch.eye(cfg.dim)
    opt = textlab.adamw(model, lr, 0.01)  # what the train verb uses (decay on matrices only)
    schedule = textlab.Schedule("constant", warmup=100)
    train = ds.splits["train"]
    accs = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * schedule.factor(step, 0.0)
        seq, length = take(train, batch_indices(train, 32, 0, step, level), "cpu")
        out = losses(model, seq, length, "single", ds.pad_id, (0, r), generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        accs.append(out["answer_accuracy"].item())
    return [sum(accs[i:i + 100]) / len(accs[i:i + 100]) for i in range(0, steps, 100)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a chain data folder (prep recrnn --task pchase ...)")
    ap.add_argument("specs", nargs="+", help="keyword arguments, e.g. 'r=1,coda_norm=False'")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from textlab_recrnn.data import load_dataset

    ds = load_dataset(args.data)
    for spec in args.specs:
        kwargs = {k.arg: ast.literal_eval(k.value) for k in ast.parse(f"f({spec})", mode="eval").body.keywords}
        t0 = time.perf_counter()
        chunks = run(ds, **kwargs)
        print(f"{spec:55s} {time.perf_counter() - t0:5.1f}s  " + " ".join(f"{c:.2f}" for c in chunks), flush=True)


if __name__ == "__main__":
    main()
