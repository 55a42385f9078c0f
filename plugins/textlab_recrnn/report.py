"""`textlab eval RUN`: the steps x difficulty table (JSON, CSV, PNG, rich table) or the KL-exit report."""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import textlab

from .config import TASK, EvalOptions
from .data import Dataset, Split, load_dataset
from .evaluate import group_key, kl_exit, plot_exit, plot_steps, steps_table, summarize


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


def _load(artifact: textlab.Artifact, data: str | None, split: str) -> tuple[Dataset, str]:
    """The data to evaluate on (`--data`, else the run's own) and its reference."""
    source, own = artifact.data_source(data)
    try:
        ds = load_dataset(source, splits=("train", split) if split != "train" else ("train",))
    except textlab.DataError as exc:
        if data is None:
            raise textlab.DataError(f"the run's data is not readable any more ({exc.message})",
                                    hint="pass --data FOLDER") from None
        raise
    if ds.vocab != list(artifact.vocab or []):
        raise textlab.DataError(f"the vocabulary of {source} differs from the one the model was trained with")
    return ds, source


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


@dataclass
class Setting:
    """What one evaluation reads: the records, their groups, the model and where results go."""

    artifact: textlab.Artifact
    ds: Dataset
    source: str
    split: Split
    model: Any
    groups: list[str]
    names: list[str]
    ood: list[bool]
    out_dir: Path
    tag: str

    @property
    def looped(self) -> bool:
        return bool(getattr(self.model, "looped", False))

    @property
    def train_r(self) -> int:
        return self.artifact.extra.get("fixed_recurrence") or self.model.config.mean_recurrence

    @property
    def chance(self) -> float:
        return 1 / self.ds.answer_classes()

    @property
    def label(self) -> str:
        extra = self.artifact.extra
        depth = f"fixed r={self.train_r}" if extra.get("fixed_recurrence") else f"mean r={self.train_r}"
        return f"{self.artifact.model_name} ({extra.get('mode', '?')} mode, {depth})"


def setting(artifact: textlab.Artifact, opts: EvalOptions) -> Setting:
    if artifact.task != TASK:
        raise textlab.CheckpointError(f"{artifact.path} belongs to task {artifact.task!r}, not {TASK!r}")
    ds, source = _load(artifact, opts.data, opts.split)
    sp = _limit(ds.splits[opts.split], opts.limit)
    groups = sp.groups()
    # another split, checkpoint or --limit gets files of its own instead of replacing the test table
    stem = Path(artifact.path).stem
    tag = "".join(f"-{p}" for p in (opts.split if opts.split != "test" else None, stem if stem != "best" else None,
                                     f"limit{opts.limit}" if opts.limit else None) if p)
    return Setting(artifact, ds, source, sp, artifact.build_model(), groups, sorted(set(groups), key=group_key),
                   ds.is_ood(sp), artifact.output_dir("eval", data=source), tag)


def run_eval(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """The eval verb: the steps table, or the adaptive-exit report with `--exit kl`."""
    s = setting(artifact, opts)
    if opts.exit == "kl":
        return exit_report(s, opts)
    steps, draws = opts.step_list, opts.state_draws
    textlab.status(f"evaluating {len(s.split):,} records" + (f" x {draws} draws" if draws > 1 else "") +
                   f", {max(steps)} recurrence steps each")
    with textlab.Timer() as timer, textlab.progress(draws * len(s.split), "eval recrnn", unit="record") as bar:
        res = steps_table(s.model, s.split, steps, batch_size=opts.batch_size, state_seed=opts.state_seed,
                          draws=draws, device=artifact.device, bar=bar)
    result = steps_result(s, opts, res)
    result["seconds"] = round(timer.seconds, 3)
    write_steps(s, result)
    show_steps(s, result)
    return result


def steps_result(s: Setting, opts: EvalOptions, res: dict) -> dict:
    steps, draws = opts.step_list, opts.state_draws
    cols = [*s.names, "id", "ood", "all"]
    per_draw = [[summarize(res["correct"][d, j].float(), s.groups, s.ood) for j in range(len(steps))]
                for d in range(draws)]

    def cell(summary: dict, col: str) -> float:
        return summary[col] if col in ("id", "ood", "all") else summary["groups"].get(col, math.nan)

    table = {str(st): {c: float(sum(cell(per_draw[d][j], c) for d in range(draws)) / draws) for c in cols}
             for j, st in enumerate(steps)}
    spread = {str(st): {c: float(torch.tensor([cell(per_draw[d][j], c) for d in range(draws)]).std())
                        if draws > 1 else 0.0 for c in cols} for j, st in enumerate(steps)}
    ood = s.ood
    counts = {c: (sum(1 for g in s.groups if g == c) if c not in ("id", "ood", "all") else
                  {"id": len(ood) - sum(ood), "ood": sum(ood), "all": len(ood)}[c]) for c in cols}
    extra = s.artifact.extra
    return {
        "task": TASK, "checkpoint": str(s.artifact.path), "model": s.artifact.model_name,
        "mode": extra.get("mode"), "looped": s.looped, "split": opts.split, "data": s.source,
        "steps": steps, "columns": cols, "counts": counts, "accuracy": table, "std": spread,
        "loss": {str(st): float(res["loss"][:, j].mean()) for j, st in enumerate(steps)},
        "chance": s.chance, "train_recurrence": s.train_r, "train_max_difficulty": s.ds.train_max_difficulty(),
        "state_seed": opts.state_seed, "state_draws": draws,
        "raw_correct": {str(st): [int(res["correct"][d, j].sum()) for d in range(draws)] for j, st in enumerate(steps)},
    }


def write_steps(s: Setting, result: dict) -> None:
    """recrnn_steps{tag}.json, .csv and .png in the eval folder (their paths go into result["files"])."""
    steps, cols, table = result["steps"], result["columns"], result["accuracy"]
    stem = s.out_dir / f"recrnn_steps{s.tag}"
    result["files"] = [f"{stem}.{x}" for x in ("json", "csv", "png")]
    textlab.write_json(Path(f"{stem}.json"), {k: v for k, v in result.items() if k != "files"})
    with textlab.atomic_write(Path(f"{stem}.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["steps", *cols])
        for st in steps:
            w.writerow([st, *(f"{table[str(st)][c]:.4f}" for c in cols)])
    rows = {c: [table[str(st)][c] for st in steps] for c in s.names}
    errs = {c: [result["std"][str(st)][c] for st in steps] for c in s.names} if result["state_draws"] > 1 else None
    plot_steps(Path(f"{stem}.png"), steps, rows, chance=s.chance, train_mean=s.train_r if s.looped else None,
               title=f"{s.label}: {result['split']} accuracy by difficulty", errors=errs)


def show_steps(s: Setting, result: dict) -> None:
    from rich.table import Table

    cols, table, counts = result["columns"], result["accuracy"], result["counts"]
    t = Table(title=f"answer accuracy on {result['split']}: rows = recurrence steps, columns = difficulty "
                    f"(chance {s.chance:.2f}; training r = {s.train_r}"
                    f"{'' if s.looped else '; baseline: steps do not apply'})")
    t.add_column("steps", justify="right")
    for c in cols:
        t.add_column(c, justify="right", style="bold" if c in ("id", "ood", "all") else None)
    for st in result["steps"]:
        mark = " *" if st == s.train_r else ""
        t.add_row(f"{st}{mark}", *(_fmt(table[str(st)][c]) for c in cols))
    t.add_row("n", *(f"{counts[c]:,}" for c in cols), style="dim")
    textlab.show(t)
    textlab.show(f"* training mean recurrence; table, CSV and plot in {s.out_dir}")


# ============================================================================ adaptive exit
def exit_report(s: Setting, opts: EvalOptions) -> dict:
    """`--exit kl`: accuracy at each record's exit step, exit-step statistics per group (JSON, PNG, table)."""
    textlab.status(f"evaluating {len(s.split):,} records, up to {opts.max_steps} recurrence steps each")
    with textlab.Timer() as timer, textlab.progress(len(s.split), "eval recrnn (kl exit)", unit="record") as bar:
        res = kl_exit(s.model, s.split, max_steps=opts.max_steps, threshold=opts.exit_threshold,
                      min_steps=opts.min_steps, batch_size=opts.batch_size, state_seed=opts.state_seed,
                      device=s.artifact.device, bar=bar)
    rows = exit_rows(s, res)
    result = {"task": TASK, "exit": "kl", "threshold": opts.exit_threshold, "max_steps": opts.max_steps,
              "min_steps": opts.min_steps, "looped": s.looped, "chance": s.chance, "rows": rows,
              "seconds": round(timer.seconds, 3), "state_seed": opts.state_seed}
    stem = s.out_dir / f"recrnn_exit{s.tag}"
    textlab.write_json(Path(f"{stem}.json"), result)
    plot_exit(Path(f"{stem}.png"), {n: rows[n]["histogram"] for n in s.names if n in rows}, opts.max_steps,
              f"{s.label}: exit step when KL < {opts.exit_threshold:g}")
    result["files"] = [f"{stem}.json", f"{stem}.png"]
    show_exit(s, opts, rows)
    return result


def exit_rows(s: Setting, res: dict) -> dict:
    by: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(s.groups):
        by[g].append(i)
    ood_t = torch.tensor(s.ood)
    buckets = {**{n: torch.tensor(by[n]) for n in s.names}, "id": (~ood_t).nonzero().flatten(),
               "ood": ood_t.nonzero().flatten(), "all": torch.arange(len(s.groups))}
    rows = {}
    for name, ix in buckets.items():
        if ix.numel() == 0:
            continue
        steps_used = res["exit_step"][ix]
        rows[name] = {"n": int(ix.numel()), "accuracy": float(res["correct"][ix].float().mean()),
                      "accuracy_at_max": float(res["correct_max"][ix].float().mean()),
                      "mean_exit": float(steps_used.float().mean()), "median_exit": float(steps_used.median()),
                      "histogram": {int(k): int(v) for k, v in zip(*steps_used.unique(return_counts=True))}}
    return rows


def show_exit(s: Setting, opts: EvalOptions, rows: dict) -> None:
    from rich.table import Table

    t = Table(title=f"adaptive exit: KL(p_i-1 || p_i) < {opts.exit_threshold:g}, at most {opts.max_steps} steps "
                    f"(chance {s.chance:.2f})")
    for col in ("group", "n", "accuracy", f"accuracy at {opts.max_steps}", "mean exit", "median exit",
                "exit histogram"):
        t.add_column(col, justify="left" if col in ("group", "exit histogram") else "right")
    for name, r in rows.items():
        hist = " ".join(f"{k}:{v}" for k, v in sorted(r["histogram"].items()))
        t.add_row(name, f"{r['n']:,}", _fmt(r["accuracy"]), _fmt(r["accuracy_at_max"]), f"{r['mean_exit']:.2f}",
                  f"{r['median_exit']:.0f}", hist[:80])
    textlab.show(t)
