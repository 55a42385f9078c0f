"""`textlab analyze RUN...`: compare runs as a table and as PNG learning curves."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from .runs import read_metrics


def summarize(run_dirs: list[Path]) -> list[dict]:
    """For each run and each (split, metric): best value (by the metric's direction), its step, last value."""
    from .plugins import registry

    reg = registry()
    rows = []
    for run_dir in run_dirs:
        info = _info(run_dir)
        series: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for rec in read_metrics(run_dir):
            series[(rec["split"], rec["name"])].append(rec)
        for (split, name), recs in sorted(series.items()):
            higher = None if name in SETTINGS else reg.higher_is_better(name, info.get("task"))
            finite = [r for r in recs if math.isfinite(r["value"])] or recs  # NaN (a diverged loss) is never best
            best = recs[-1] if higher is None else (max if higher else min)(finite, key=lambda r: r["value"])
            rows.append({
                "run": run_dir.name, "path": str(run_dir), "task": info.get("task"), "model": info.get("model"),
                "split": split, "metric": name, "best": best["value"], "best_step": best["step"],
                "best_epoch": best.get("epoch"), "last": recs[-1]["value"], "last_step": recs[-1]["step"],
                "higher_is_better": higher,
            })
    return rows


# logged values that are settings, not results: no better or worse (best = last)
SETTINGS = {"lr", "learning_rate"}


def table(rows: list[dict]) -> Any:
    from rich.table import Table

    t = Table(title="runs compared (best by each metric's direction; ↑ higher is better, ↓ lower)")
    for col in ("run", "model", "split", "metric", "best", "at step", "last"):
        t.add_column(col, justify="right" if col in ("best", "at step", "last") else "left")
    prev = None
    for r in rows:
        arrow = {True: " ↑", False: " ↓", None: ""}[r["higher_is_better"]]
        t.add_row(r["run"] if r["run"] != prev else "", r["model"] or "" if r["run"] != prev else "", r["split"],
                  f"{r['metric']}{arrow}", _fmt(r["best"]), str(r["best_step"]), _fmt(r["last"]))
        prev = r["run"]
    return t


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v and abs(v) < 1e-3:
        return f"{v:.2e}"  # a learning rate of 3e-5 is not 0.0000
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"


def _info(run_dir: Path) -> dict:
    import json

    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def plot_curves(run_dirs: list[Path], out_dir: Path, *, x: str = "auto") -> list[Path]:
    """One PNG per metric name: every run in its own colour, train dashed, valid solid, others dotted.

    Also `learning_curves.png` with all metrics side by side. x is `step`, `epoch` or `time`
    (`auto`: epoch when every record has one, else step).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {d: read_metrics(d) for d in run_dirs}
    names = sorted({r["name"] for recs in data.values() for r in recs if r["name"] != "lr"})
    if not names:
        return []
    if x == "auto":
        x = "epoch" if all(r.get("epoch") is not None for recs in data.values() for r in recs) else "step"
    cmap = plt.get_cmap("tab10")
    styles = {"train": "--", "valid": "-"}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def draw(ax: Any, name: str) -> None:
        for i, (run_dir, recs) in enumerate(data.items()):
            splits = sorted({r["split"] for r in recs if r["name"] == name}, key=lambda s: (s != "train", s))
            for split in splits:
                pts = [(r[x], r["value"]) for r in recs if r["name"] == name and r["split"] == split and r.get(x) is not None]
                if not pts:
                    continue
                xs, ys = zip(*pts)
                ax.plot(xs, ys, styles.get(split, ":"), color=cmap(i % 10), marker="o" if len(pts) < 30 else None,
                        markersize=3, label=f"{run_dir.name} {split}", alpha=0.75 if split == "train" else 1.0)
        ax.set_xlabel({"time": "seconds"}.get(x, x))
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)

    for name in names:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        draw(ax, name)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out_dir / f"{_slug(name)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if len(names) > 1:
        cols = min(3, len(names))
        rows = (len(names) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            draw(ax, name)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, max(1, len(labels))))
        fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(labels) + 3) // 4), 1, 1))
        path = out_dir / "learning_curves.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^\w.-]+", "_", name)


def compare_runs(run_dirs: list[Path], out: Path | None = None, x: str = "auto") -> dict:
    """Table on stdout, plots in the first run's plots/ (or `out`). Returns the summary as JSON."""
    from .console import show, status

    rows = summarize(run_dirs)
    if rows:
        show(table(rows))
    else:
        status("no metrics logged yet in these runs")
    out_dir = out or (run_dirs[0] / "plots")
    plots = plot_curves(run_dirs, out_dir, x=x) if rows else []
    if plots:
        status(f"learning curves: {', '.join(str(p) for p in plots)}")
    return {"runs": [str(d) for d in run_dirs], "metrics": rows, "plots": [str(p) for p in plots]}
