"""`textlab report RUN... -o report.html`: one self-contained HTML file to hand in.

Learning curves of the runs, the options that differ between them, every run's summary, its eval
results as tables and the plots it made (confusion matrices, steps curves, generation speed...),
every image inline (base64), no script, no server, no network.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from ._version import __version__
from .compare import SETTINGS, plot_curves, rank_runs, summarize
from .runs import read_info

MAX_ROWS = 200  # rows of one table in the report (more: a note says how many were left out)
CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1d2733; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #d5dce4; }
h3 { margin-top: 1.4em; } .meta { color: #5b6b7c; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d5dce4; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; } th { background: #eef2f6; }
td.diff { background: #fff4d6; } figure { margin: 1em 0; } figcaption { color: #5b6b7c; font-size: 13px; }
img { max-width: 100%; border: 1px solid #e3e8ee; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return esc("-" if value is None else value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return esc(value)
        return esc(f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}")
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return esc(text if len(text) <= 120 else text[:117] + "...")
    return esc(value)


def table(header: list[str], rows: list[list[Any]], marks: list[list[bool]] | None = None) -> str:
    shown = rows[:MAX_ROWS]
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(shown):
        tds = []
        for j, v in enumerate(row):
            cls = ' class="diff"' if marks and marks[i][j] else ""
            tds.append(f"<td{cls}>{cell(v)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    if len(rows) > len(shown):
        out.append(f"<p class=meta>{len(rows) - len(shown):,} more rows not shown</p>")
    return "".join(out)


def image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def json_tables(obj: Any, title: str, depth: int = 0) -> list[str]:
    """An eval result (any JSON) as tables: scalars as a two-column table, a mapping of mappings or
    a list of mappings as one table, a matrix as a grid; deeper structure as sections."""
    parts: list[str] = []
    if isinstance(obj, dict):
        flat = {k for k, v in obj.items() if _scalar(v) or (isinstance(v, list) and all(map(_scalar, v)))}
        if flat:
            parts.append(table([title, "value"], [[k, v] for k, v in obj.items() if k in flat]))
        for key, value in obj.items():
            if key in flat or depth >= 3:
                continue
            parts += [f"<h4>{esc(title)} / {esc(key)}</h4>", *json_tables(value, str(key), depth + 1)]
    elif isinstance(obj, list) and obj and all(isinstance(r, dict) and all(map(_scalar, r.values())) for r in obj):
        cols = list(dict.fromkeys(k for r in obj for k in r))
        parts.append(table(cols, [[r.get(c) for c in cols] for r in obj]))
    elif isinstance(obj, list) and obj and all(isinstance(r, list) and all(map(_scalar, r)) for r in obj):
        parts.append(table([""] + [str(j) for j in range(len(obj[0]))], [[i, *r] for i, r in enumerate(obj)]))
    elif _scalar(obj):
        parts.append(f"<p>{cell(obj)}</p>")
    return parts


def differing_options(runs: list[Path]) -> str:
    from .runs import flat_config, read_config

    configs = [flat_config(read_config(r)) for r in runs]
    keys = sorted({k for c in configs for k in c})
    rows = [[k, *[c.get(k) for c in configs]] for k in keys
            if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    if len(runs) < 2:
        rows = [[k, configs[0].get(k)] for k in keys]
        return table(["option", runs[0].name], rows)
    if not rows:
        return "<p class=meta>The runs have the same options.</p>"
    return table(["option", *[r.name for r in runs]], rows, [[False] + [True] * len(runs) for _ in rows])


def run_section(run: Path, rows: list[dict]) -> list[str]:
    info = read_info(run)
    best = info.get("best") if isinstance(info.get("best"), dict) else {}
    facts = [["task", info.get("task")], ["model", info.get("model")], ["status", info.get("status")],
             ["best", f"{best.get('metric')} = {cell(best.get('value'))} at step {best.get('step')}" if best else None],
             ["steps", info.get("steps")], ["wall time (s)", info.get("wall_time")], ["seed", info.get("seed")],
             ["data", info.get("data")], ["git commit", info.get("git_commit")], ["started", info.get("start")]]
    parts = [f"<h2>{esc(run.name)}</h2>", f"<p class=meta>{esc(run)}</p>", table(["run", ""], facts)]
    mine = [r for r in rows if r["run"] == run.name and r["metric"] not in SETTINGS]
    if mine:
        parts.append(table(["split", "metric", "best", "at step", "last"],
                           [[r["split"], r["metric"], r["best"], r["best_step"], r["last"]] for r in mine]))
    for path in sorted((run / "eval").rglob("*.json")) if (run / "eval").is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        parts += [f"<h3>eval: {esc(path.relative_to(run))}</h3>", *json_tables(data, path.stem)]
    pngs = [p for sub in ("plots", "eval", "outputs") if (run / sub).is_dir() for p in sorted((run / sub).rglob("*.png"))]
    parts += [image(p, str(p.relative_to(run))) for p in pngs]
    return parts


def make_report(runs: list[Path], out: Path, title: str | None = None) -> dict:
    """Write the report to `out` (atomically) and return what it holds."""
    from .data import atomic_write

    rows = summarize(runs)
    order, monitor = rank_runs(rows, runs)
    title = title or (f"textlab report: {len(runs)} runs" if len(runs) > 1 else f"textlab report: {runs[0].name}")
    body = [f"<h1>{esc(title)}</h1>",
            f"<p class=meta>{datetime.now().astimezone():%Y-%m-%d %H:%M %Z} · textlab {esc(__version__)} · "
            f"{len(runs)} run(s)" + (f", ordered by {esc(monitor)}" if monitor else "") + "</p>",
            "<h2>Options</h2>" if len(runs) < 2 else "<h2>Options that differ</h2>", differing_options(order)]
    with tempfile.TemporaryDirectory() as tmp:
        curves = plot_curves(order, Path(tmp)) if rows else []
        if curves:
            body.append("<h2>Learning curves</h2>")
            body += [image(p, p.stem.replace("_", " ")) for p in curves]
        for run in order:
            body += run_section(run, rows)
        page = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
                f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{esc(title)}</title>"
                f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    with atomic_write(out, "w", encoding="utf-8") as fh:
        fh.write(page)
    return {"report": str(out), "runs": [str(r) for r in order], "bytes": len(page.encode()),
            "curves": len(curves)}
