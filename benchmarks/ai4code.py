"""Benchmark of every ai4code model on ../shared/data/ai4code, through the real CLI.

    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/ai4code.py            # full (about an hour on 2 cores)
    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/ai4code.py --quick    # a few minutes: checks it works

Each model is trained with `textlab train ai4code --data DATA --model M --threads N` (an
ancestor-grouped 80/20 split, seed 42, the same for every model) and scored with
`textlab eval RUN --data DATA --split valid` (the same 20%). Fit time is the training command's own
measure (run.json), predict time the eval command's; the 1-minute load average is recorded
before and after every command, since timings on a shared machine are only indicative.
Results: a rich table and benchmarks/results/ai4code.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ai4code"
MODELS = ["appended", "similar", "pointwise", "neural", "ranker"]
# --quick: fewer notebooks and smaller models, to check the pipeline in minutes
QUICK = {"ranker": ["--trees", "40"], "neural": ["--epochs", "1"]}
FULL = {"neural": ["--epochs", "8"]}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def textlab(args: list[str], env: dict) -> dict:
    """`python -m textlab ARGS --json`; stderr (progress) passes through to the terminal."""
    proc = subprocess.run([sys.executable, "-m", "textlab", *args, "--json"], stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): textlab {' '.join(args)}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder in Kaggle layout")
    ap.add_argument("--quick", action="store_true", help="400 training notebooks, small models (minutes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/ai4code[-quick].json)")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "benchmarks" / "runs")
    args = ap.parse_args()
    if not (args.data / "train").is_dir():
        raise SystemExit(f"no data at {args.data} (expected train/ and train_orders.csv)")
    out = args.out or REPO / "benchmarks" / "results" / ("ai4code-quick.json" if args.quick else "ai4code.json")
    env = dict(os.environ, TEXTLAB_RUNS=str(args.runs_dir))
    common = ["--data", str(args.data), "--threads", str(args.threads), "--split-seed", "42", "--valid-share", "0.2"]
    if args.quick:
        common += ["--limit", "400"]
    rows = []
    for model in args.models:
        extra = (QUICK if args.quick else FULL).get(model, [])
        before = load()
        t0 = time.time()
        res = textlab(["train", "ai4code", *common, "--model", model, *extra, "--name", "bench"], env)
        wall = time.time() - t0
        run = Path(res["run"])
        info = json.loads((run / "run.json").read_text())
        fit = info.get("fit_time") or info.get("train_time") or wall
        mid = load()
        ev = textlab(["eval", str(run), "--data", str(args.data), "--split", "valid", "--threads", str(args.threads)]
                     + (["--limit", "100"] if args.quick else []), env)
        m = ev["metrics"]
        rows.append({
            "model": model, "options": extra, "run": str(run.relative_to(REPO)) if run.is_relative_to(REPO) else str(run),
            "kendall_tau": m["all"]["kendall_tau"], "mean_tau": m["all"]["mean_tau"], "spearman": m["all"]["spearman"],
            "gap_accuracy": m["all"]["gap_accuracy"], "position_mae": m["all"]["position_mae"],
            "notebooks": m["all"]["notebooks"], "fit_seconds": round(fit, 1), "train_command_seconds": round(wall, 1),
            "predict_seconds": ev["predict_time"], "load_before_fit": before, "load_before_predict": mid,
            "load_after": load(), "by_length": {k: v for k, v in m.items() if k != "all"},
        })
        print(f"{model}: Kendall tau {rows[-1]['kendall_tau']:.4f}  fit {fit:.0f}s  predict {ev['predict_time']:.0f}s "
              f"(load {before} / {mid} / {rows[-1]['load_after']})", file=sys.stderr)
    result = {
        "task": "ai4code", "data": str(args.data), "quick": args.quick, "threads": args.threads,
        "split": "ancestor-grouped 80/20, seed 42 (textlab_ai4code.data.grouped_split)",
        "command": "flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/ai4code.py" + (" --quick" if args.quick else ""),
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    show(rows, out)


def show(rows: list[dict], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="ai4code: ancestor-grouped 20% validation split")
    for col in ("model", "Kendall tau", "mean tau", "Spearman", "right gap", "pos. MAE", "fit s", "predict s", "load"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in sorted(rows, key=lambda r: r["kendall_tau"]):
        t.add_row(r["model"], f"{r['kendall_tau']:.4f}", f"{r['mean_tau']:.4f}", f"{r['spearman']:.4f}",
                  f"{r['gap_accuracy']:.3f}", f"{r['position_mae']:.2f}", f"{r['fit_seconds']:.0f}",
                  f"{r['predict_seconds']:.1f}", f"{r['load_before_fit']}/{r['load_before_predict']}")
    Console().print(t)
    Console(stderr=True).print(f"[dim]wrote {out}[/dim]")


if __name__ == "__main__":
    main()
