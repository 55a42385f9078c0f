"""Comparing runs: `textlab analyze RUN...` (a table and PNG learning curves), `textlab diff A B`,
and the result table `train` prints when a run ends."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from .runs import read_info, read_metrics

# logged values that are settings, not results: no better or worse (best = last)
SETTINGS = {"lr", "learning_rate"}


def summarize(run_dirs: list[Path]) -> list[dict]:
    """For each run and each (split, metric): best value (by the metric's direction), its step, last value."""
    from .plugins import registry

    reg = registry()
    rows = []
    for run_dir in run_dirs:
        info = read_info(run_dir)
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


def rank_runs(rows: list[dict], run_dirs: list[Path]) -> tuple[list[Path], str | None]:
    """Runs ordered by their best value of the monitored metric (best first), and that metric.

    The monitor is the task's (`TaskSpec.monitor`), else the metric each run kept best.pt by."""
    from .plugins import registry

    infos = {d.name: read_info(d) for d in run_dirs}
    monitor = None
    for info in infos.values():
        task = registry().tasks.get(str(info.get("task")))
        monitor = monitor or (task.monitor if task else None) or (info.get("best") or {}).get("metric")
    if not monitor:
        return list(run_dirs), None
    split, _, name = monitor.partition("/")
    best = {r["run"]: r["best"] for r in rows if r["split"] == split and r["metric"] == name and math.isfinite(r["best"])}
    higher = registry().higher_is_better(monitor)
    ordered = sorted(run_dirs, key=lambda d: (d.name not in best, -best.get(d.name, 0.0) if higher else best.get(d.name, 0.0)))
    return ordered, monitor


def table(rows: list[dict], order: list[Path] | None = None, monitor: str | None = None) -> Any:
    from rich.markup import escape
    from rich.table import Table

    title = "runs compared (best by each metric's direction; ↑ higher is better, ↓ lower)"
    if monitor:
        title += f"; runs ordered by {monitor}"
    t = Table(title=title)
    for col in ("run", "model", "split", "metric", "best", "at step", "last"):
        t.add_column(col, justify="right" if col in ("best", "at step", "last") else "left")
    rank = {d.name: i for i, d in enumerate(order or [])}
    prev = None
    for r in sorted(rows, key=lambda r: rank.get(r["run"], len(rank))):
        arrow = {True: " ↑", False: " ↓", None: ""}[r["higher_is_better"]]
        first = r["run"] != prev
        t.add_row(escape(r["run"]) if first else "", escape(r["model"] or "") if first else "", r["split"],
                  f"{escape(r['metric'])}{arrow}", _fmt(r["best"]), str(r["best_step"]), _fmt(r["last"]))
        prev = r["run"]
    return t


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v and abs(v) < 1e-3:
        return f"{v:.2e}"  # a learning rate of 3e-5 is not 0.0000
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"


# ============================================================================ learning curves
def short_labels(run_dirs: list[Path]) -> list[str]:
    """Legend labels: run names without the timestamp and task words they share (20 runs stay legible)."""
    names = [d.name for d in run_dirs]
    parts = [n.split("-") for n in names]
    if len(names) > 1:
        common = set(parts[0]).intersection(*map(set, parts[1:]))
        stamp = [p[2:] if len(p) > 2 and p[0].isdigit() and p[1].isdigit() else p for p in parts]
        short = ["-".join(w for w in s if w not in common) or n for s, n in zip(stamp, names)]
        if len(set(short)) == len(short):
            return short
    return names


def run_colors(n: int) -> list[Any]:
    """n distinct colours: tab10 up to 10 runs, tab20 up to 20, then evenly spaced hues."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    return [matplotlib.colormaps["hsv"](i / n) for i in range(n)]


def plot_curves(run_dirs: list[Path], out_dir: Path, *, x: str = "auto") -> list[Path]:
    """One PNG per metric name: every run in its own colour, train dashed, valid solid, others dotted.

    Also `learning_curves.png` with all metrics side by side. x is `step`, `epoch` or `time`
    (`auto`: epoch when every record has one, else step). The legend sits beside the plot, in
    columns, with short labels, so it stays readable with 20 runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {d: read_metrics(d) for d in run_dirs}
    names = sorted({r["name"] for recs in data.values() for r in recs if r["name"] not in SETTINGS})
    if not names:
        return []
    if x == "auto":
        x = "epoch" if all(r.get("epoch") is not None for recs in data.values() for r in recs) else "step"
    colors, labels = run_colors(len(data)), short_labels(list(data))
    out_dir.mkdir(parents=True, exist_ok=True)
    ncol = 1 if len(data) <= 8 else 2
    written = []
    for name in names:
        fig, ax = plt.subplots(figsize=(7 + 2.2 * ncol, 4.5))
        _draw(ax, name, data, x, colors, labels)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol, frameon=False)
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"{_slug(name)}.png", 120))
    if len(names) > 1:
        cols = min(3, len(names))
        rows = (len(names) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            _draw(ax, name, data, x, colors, labels)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        handles, legend = axes.flat[0].get_legend_handles_labels()
        per_row = min(4, max(1, len(legend)))
        fig.legend(handles, legend, fontsize=7, loc="lower center", ncol=per_row, frameon=False)
        fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(legend) + per_row - 1) // per_row), 1, 1))
        written.append(_save(fig, out_dir / "learning_curves.png", 110))
    return written


def _draw(ax: Any, name: str, data: dict, x: str, colors: list, labels: list[str]) -> None:
    styles = {"train": "--", "valid": "-"}
    for i, (run_dir, recs) in enumerate(data.items()):
        splits = sorted({r["split"] for r in recs if r["name"] == name}, key=lambda s: (s != "train", s))
        for split in splits:
            pts = [(r[x], r["value"]) for r in recs if r["name"] == name and r["split"] == split and r.get(x) is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, styles.get(split, ":"), color=colors[i], marker="o" if len(pts) < 30 else None,
                    markersize=3, label=f"{labels[i]} {split}", alpha=0.75 if split == "train" else 1.0)
    ax.set_xlabel({"time": "seconds"}.get(x, x))
    ax.set_ylabel(name)
    ax.set_title(name)
    ax.grid(alpha=0.3)


def _save(fig: Any, path: Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^\w.-]+", "_", name)


def comparison_dir(run_dirs: list[Path], runs_dir: Any = None) -> Path:
    """A folder of its own for a comparison: `<runs root>/_compare/<time>-<n>-runs` (never a run's own)."""
    from .rundir import runs_root

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = runs_root(runs_dir) / "_compare"
    for i in range(1, 1000):
        cand = base / (f"{stamp}-{len(run_dirs)}-runs" + (f"-{i}" if i > 1 else ""))
        if not cand.exists():
            return cand
    return base / f"{stamp}-{len(run_dirs)}-runs-x"


def compare_runs(run_dirs: list[Path], out: Path | None = None, x: str = "auto") -> dict:
    """Table on stdout (runs ordered by the monitored metric), plots and comparison.json in `out`
    (default: a new folder under the runs root). Returns the summary as JSON."""
    from .console import show, status
    from .data import write_json

    rows = summarize(run_dirs)
    order, monitor = rank_runs(rows, run_dirs)
    if rows:
        show(table(rows, order, monitor))
    else:
        status("no metrics logged yet in these runs")
    out_dir = out or comparison_dir(run_dirs)
    plots = plot_curves(order, out_dir, x=x) if rows else []
    result = {"runs": [str(d) for d in order], "monitor": monitor, "metrics": rows, "plots": [str(p) for p in plots],
              "out": str(out_dir)}
    if rows:
        write_json(out_dir / "comparison.json", result)
        status(f"comparison: {out_dir} ({', '.join(p.name for p in plots)})")
    return result


# ============================================================================ the result of one run
def final_metrics(run_dir: Path) -> dict[str, float]:
    """The last value of each `split/metric` a run logged."""
    last: dict[str, float] = {}
    for rec in read_metrics(run_dir):
        last[f"{rec['split']}/{rec['name']}"] = rec["value"]
    return last


def result_table(run_dir: Path, info: dict, final: dict[str, float]) -> Any:
    """What `train` prints when a run ends: where it is, how it ended, its best and final metrics."""
    from rich.markup import escape
    from rich.table import Table

    best = info.get("best") if isinstance(info.get("best"), dict) else {}
    t = Table(title=escape(f"{info.get('task')} run {run_dir.name}: {info.get('status')}"), show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("run directory", escape(str(run_dir)))
    if info.get("stopped"):
        t.add_row("stopped", escape(f"{info['stopped']} at step {info.get('steps')}"))
    if best:
        t.add_row("best", escape(f"{best.get('metric')} = {_fmt(float(best.get('value')))} at step {best.get('step')}"))
    for name, value in final.items():
        if name.split("/")[-1] not in SETTINGS:
            t.add_row(f"final {escape(name)}", _fmt(value))
    t.add_row("wall time", f"{float(info.get('wall_time') or 0):,.1f} s")
    return t


# ============================================================================ textlab diff A B
_RUN_FIELDS = ("task", "model", "status", "seed", "device", "world_size", "git_commit", "data", "data_fingerprint",
               "vocab_size", "steps", "stopped", "train_time", "wall_time", "parent")
_NOT_SETTINGS = set(_RUN_FIELDS) | {"name", "command", "host", "pid", "start", "end", "best", "loggers", "error",
                                    "resumes", "options_given", "versions", "textlab_version", "torch_version",
                                    "python", "slurm", "slurm_jobs"}


def run_facts(run_dir: Path) -> list[tuple[str, str, Any]]:
    """(section, key, value) of everything `diff` compares about a run."""
    from .runs import flat_config, read_config

    info = read_info(run_dir)
    rows: list[tuple[str, str, Any]] = []
    record = read_config(run_dir)
    for key, value in (record.get("options") or (flat_config(record) if "options" not in record else {})).items():
        rows.append(("option", key, value))
    for key, value in (record.get("core") or {}).items():
        rows.append(("core option", key, value))
    for key in _RUN_FIELDS:
        if key in info:
            rows.append(("run", key, info[key]))
    versions = dict(info.get("versions") or {})
    versions.setdefault("textlab", info.get("textlab_version"))
    versions.setdefault("torch", info.get("torch_version"))
    versions.setdefault("python", info.get("python"))
    rows += [("version", k, v) for k, v in sorted(versions.items()) if v is not None]
    for key, value in info.items():
        if key not in _NOT_SETTINGS:
            rows += [("resolved", k, v) for k, v in _flatten(key, value)]
    best = info.get("best") if isinstance(info.get("best"), dict) else {}
    if best:
        rows.append(("metric", f"best {best.get('metric')}", best.get("value")))
        rows.append(("metric", "best at step", best.get("step")))
    rows += [("metric", f"final {k}", v) for k, v in final_metrics(run_dir).items() if k.split("/")[-1] not in SETTINGS]
    return rows


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flatten(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def diff_runs(a: Path, b: Path) -> list[dict]:
    """Rows {section, key, a, b, same}: every fact of either run, the differing ones first."""
    fa = {(s, k): v for s, k, v in run_facts(a)}
    fb = {(s, k): v for s, k, v in run_facts(b)}
    keys = list(dict.fromkeys([*fa, *fb]))
    rows = [{"section": s, "key": k, "a": fa.get((s, k)), "b": fb.get((s, k)), "same": _same(fa.get((s, k)), fb.get((s, k)))}
            for s, k in keys]
    return sorted(rows, key=lambda r: r["same"])  # stable: the sections keep their order within each group


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


def diff_table(rows: list[dict], a: Path, b: Path) -> Any:
    from rich.markup import escape
    from rich.table import Table

    n = sum(not r["same"] for r in rows)
    t = Table(title=escape(f"{a.name} vs {b.name}: {n} of {len(rows)} facts differ (those first)"))
    for col in ("", "what", a.name, b.name):
        t.add_column(escape(col))
    for r in rows:
        style = "" if r["same"] else "[bold yellow]"
        end = "" if r["same"] else "[/]"
        t.add_row("=" if r["same"] else "≠", escape(f"{r['section']}: {r['key']}"),
                  style + escape(_cell(r["a"])) + end, style + escape(_cell(r["b"])) + end)
    return t


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return _fmt(v)
    return str(v)
