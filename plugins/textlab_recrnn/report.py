"""`textlab eval RUN`: the steps x difficulty table (JSON, CSV, PNG, rich table) or the KL-exit report."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from collections import Counter, defaultdict
from typing import Any

import torch

import textlab

from .data import Dataset, Split, load_dataset
from .evaluate import kl_exit, plot_exit, plot_steps, steps_table, summarize
from .train import _group_key


def _limit(split: Split, limit: int | None) -> Split:
    if not limit:
        return split
    seen: Counter = Counter()
    keep = []
    for i, g in enumerate(split.groups()):
        if seen[g] < limit:
            keep.append(i)
            seen[g] += 1
    idx = torch.tensor(keep)
    return Split(split.name, split.seq[idx], split.length[idx], split.answer[idx], [split.types[i] for i in keep],
                 [split.difficulty[i] for i in keep])


def _load(artifact: textlab.Artifact, data: str | None, split: str) -> Dataset:
    ref = data or artifact.extra.get("data")
    if not ref:
        raise textlab.UsageError("this checkpoint does not say which data it trained on; pass --data")
    try:
        ds = load_dataset(ref, splits=("train", split) if split != "train" else ("train",))
    except textlab.DataError as exc:
        if data is None:
            raise textlab.DataError(f"the run's data is not readable any more ({exc.message})",
                                    hint="pass --data FOLDER") from None
        raise
    if ds.vocab != list(artifact.vocab or []):
        raise textlab.DataError(f"the vocabulary of {ref} differs from the one the model was trained with")
    return ds


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def run_eval(artifact: textlab.Artifact, *, steps: list[int], data: str | None, split: str, exit: str,
             exit_threshold: float, max_steps: int, min_steps: int, state_seed: int, draws: int,
             limit: int | None, batch_size: int) -> dict:
    ds = _load(artifact, data, split)
    sp = _limit(ds.splits[split], limit)
    model = artifact.build_model(artifact.device)
    cfg = model.config
    looped = bool(getattr(model, "looped", False))
    train_r = artifact.extra.get("fixed_recurrence") or cfg.mean_recurrence
    groups = sp.groups()
    names = sorted(set(groups), key=_group_key)
    ood = ds.is_ood(sp)
    chance = 1 / ds.answer_classes()
    out_dir = artifact.output_dir("eval", data=data)
    # another split, checkpoint or --limit gets files of its own instead of replacing the test table
    tag = "".join(f"-{p}" for p in (split if split != "test" else None,
                                     Path(artifact.path).stem if Path(artifact.path).stem != "best" else None,
                                     f"limit{limit}" if limit else None) if p)
    label = f"{artifact.model_name} ({artifact.extra.get('mode', '?')} mode, " + \
        (f"fixed r={train_r})" if artifact.extra.get("fixed_recurrence") else f"mean r={train_r})")
    if exit == "kl":
        return _exit_report(model, sp, groups, names, ood, chance, out_dir, label, max_steps=max_steps,
                            threshold=exit_threshold, min_steps=min_steps, state_seed=state_seed, batch_size=batch_size,
                            device=artifact.device, looped=looped, tag=tag)
    with textlab.Timer() as timer:
        res = steps_table(model, sp, steps, batch_size=batch_size, state_seed=state_seed, draws=draws,
                          device=artifact.device)
    cols = [*names, "id", "ood", "all"]
    per_draw = []  # [draw][step] -> summary
    for d in range(draws):
        per_draw.append([summarize(res["correct"][d, j].float(), groups, ood) for j in range(len(steps))])

    def cell(summary: dict, col: str) -> float:
        return summary[col] if col in ("id", "ood", "all") else summary["groups"].get(col, math.nan)

    table = {str(s): {c: float(sum(cell(per_draw[d][j], c) for d in range(draws)) / draws) for c in cols}
             for j, s in enumerate(steps)}
    spread = {str(s): {c: float(torch.tensor([cell(per_draw[d][j], c) for d in range(draws)]).std())
                       if draws > 1 else 0.0 for c in cols} for j, s in enumerate(steps)}
    counts = {c: (sum(1 for g in groups if g == c) if c not in ("id", "ood", "all") else
                  {"id": len(ood) - sum(ood), "ood": sum(ood), "all": len(ood)}[c]) for c in cols}
    result = {
        "task": "recrnn", "checkpoint": str(artifact.path), "model": artifact.model_name,
        "mode": artifact.extra.get("mode"), "looped": looped, "split": split, "data": data or artifact.extra.get("data"),
        "steps": steps, "columns": cols, "counts": counts, "accuracy": table, "std": spread,
        "loss": {str(s): float(res["loss"][:, j].mean()) for j, s in enumerate(steps)},
        "chance": chance, "train_recurrence": train_r, "train_max_difficulty": ds.train_max_difficulty(),
        "state_seed": state_seed, "state_draws": draws, "seconds": round(timer.seconds, 3),
        "raw_correct": {str(s): [int(res["correct"][d, j].sum()) for d in range(draws)] for j, s in enumerate(steps)},
    }
    textlab.write_json(out_dir / f"recrnn_steps{tag}.json", result)
    with textlab.atomic_write(out_dir / f"recrnn_steps{tag}.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["steps", *cols])
        for s in steps:
            w.writerow([s, *(f"{table[str(s)][c]:.4f}" for c in cols)])
    rows = {c: [table[str(s)][c] for s in steps] for c in names}
    errs = {c: [spread[str(s)][c] for s in steps] for c in names} if draws > 1 else None
    plot_steps(out_dir / f"recrnn_steps{tag}.png", steps, rows, chance=chance, train_mean=train_r if looped else None,
               title=f"{label}: {split} accuracy by difficulty", errors=errs)
    result["files"] = [str(out_dir / f"recrnn_steps{tag}.{x}") for x in ("json", "csv", "png")]
    from rich.table import Table

    t = Table(title=f"answer accuracy on {split}: rows = recurrence steps, columns = difficulty "
                    f"(chance {chance:.2f}; training r = {train_r}{'' if looped else '; baseline: steps do not apply'})")
    t.add_column("steps", justify="right")
    for c in cols:
        t.add_column(c, justify="right", style="bold" if c in ("id", "ood", "all") else None)
    for s in steps:
        mark = " *" if s == train_r else ""
        t.add_row(f"{s}{mark}", *(_fmt(table[str(s)][c]) for c in cols))
    t.add_row("n", *(f"{counts[c]:,}" for c in cols), style="dim")
    textlab.show(t)
    textlab.show(f"* training mean recurrence; table, CSV and plot in {out_dir}")
    return result


def _exit_report(model: Any, sp: Split, groups: list[str], names: list[str], ood: list[bool], chance: float,
                 out_dir: Any, label: str, *, max_steps: int, threshold: float, min_steps: int, state_seed: int,
                 batch_size: int, device: Any, looped: bool, tag: str = "") -> dict:
    with textlab.Timer() as timer:
        res = kl_exit(model, sp, max_steps=max_steps, threshold=threshold, min_steps=min_steps, batch_size=batch_size,
                      state_seed=state_seed, device=device)
    by: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by[g].append(i)
    ood_t = torch.tensor(ood)
    buckets = {**{n: torch.tensor(by[n]) for n in names}, "id": (~ood_t).nonzero().flatten(),
               "ood": ood_t.nonzero().flatten(), "all": torch.arange(len(groups))}
    rows = {}
    for name, ix in buckets.items():
        if ix.numel() == 0:
            continue
        steps_used = res["exit_step"][ix]
        rows[name] = {"n": int(ix.numel()), "accuracy": float(res["correct"][ix].float().mean()),
                      "accuracy_at_max": float(res["correct_max"][ix].float().mean()),
                      "mean_exit": float(steps_used.float().mean()), "median_exit": float(steps_used.median()),
                      "histogram": {int(k): int(v) for k, v in zip(*steps_used.unique(return_counts=True))}}
    result = {"task": "recrnn", "exit": "kl", "threshold": threshold, "max_steps": max_steps, "min_steps": min_steps,
              "looped": looped, "chance": chance, "rows": rows, "seconds": round(timer.seconds, 3),
              "state_seed": state_seed}
    textlab.write_json(out_dir / f"recrnn_exit{tag}.json", result)
    plot_exit(out_dir / f"recrnn_exit{tag}.png", {n: rows[n]["histogram"] for n in names if n in rows}, max_steps,
              f"{label}: exit step when KL < {threshold:g}")
    result["files"] = [str(out_dir / f"recrnn_exit{tag}.json"), str(out_dir / f"recrnn_exit{tag}.png")]
    from rich.table import Table

    t = Table(title=f"adaptive exit: KL(p_i-1 || p_i) < {threshold:g}, at most {max_steps} steps (chance {chance:.2f})")
    for col in ("group", "n", "accuracy", f"accuracy at {max_steps}", "mean exit", "median exit", "exit histogram"):
        t.add_column(col, justify="left" if col in ("group", "exit histogram") else "right")
    for name, r in rows.items():
        hist = " ".join(f"{k}:{v}" for k, v in sorted(r["histogram"].items()))
        t.add_row(name, f"{r['n']:,}", _fmt(r["accuracy"]), _fmt(r["accuracy_at_max"]), f"{r['mean_exit']:.2f}",
                  f"{r['median_exit']:.0f}", hist[:80])
    textlab.show(t)
    return result
