"""Benchmark of every ai4code model on ../shared/data/ai4code, through the real CLI.

    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/ai4code.py            # full (about an hour on 2 cores)
    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/ai4code.py --quick    # a few minutes: checks it works

Each model is trained with `textlab train ai4code --data DATA --model M --threads N` (an
ancestor-grouped 80/20 split, seed 42, the same for every model) and scored with
`textlab eval RUN --data DATA --split valid` (the same 20%). Fit time is the training command's own
measure (run.json), predict time the eval command's; the 1-minute load average is recorded
before and after every command, since timings on a shared machine are only indicative.
Results: a rich table and benchmarks/results/ai4code.json.

    flock /work/bench.lock .venv/bin/python benchmarks/ai4code.py --scale 1 4 16   # the ranker's memory and time by size

`--scale K...`: the data replicated K times in a temporary folder (each notebook K times: the
original and K - 1 copies with new notebook and cell ids, the same ancestor group, and about 10%
of the words of every cell replaced by words drawn from the whole data set), then the ranker trained
on each (`--trees`, `--threads`; the usual 20% grouped split of it) under /usr/bin/time: peak
memory (max RSS), wall time, fit time and its phases, the temporary disk the fit used, the valid
Kendall tau. A straight line through (training notebooks, seconds) and (training notebooks,
MB) extrapolates to 140,000 training notebooks (Kaggle's AI4Code training set).
Results: benchmarks/results/ai4code-scale.json.
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
MODELS = ["appended", "similar", "pointwise", "neural", "ranker", "transformer", "blend"]
DEFAULT_MODELS = ["appended", "similar", "pointwise", "neural", "ranker", "blend"]  # transformer: needs --encoder
BLENDED = ("ranker", "neural", "transformer")  # the blend row blends those of them trained in the same command
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
    ap.add_argument("--scale", type=int, nargs="+", default=None, help="ranker memory/time on the data replicated K times")
    ap.add_argument("--trees", type=int, default=200, help="--scale: boosting iterations per stage")
    ap.add_argument("--code", type=Path, default=REPO, help="--scale: the textlab checkout to run (to compare another)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder in Kaggle layout")
    ap.add_argument("--quick", action="store_true", help="400 training notebooks, small models (minutes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=MODELS)
    ap.add_argument("--encoder", type=Path, default=None, help="the transformer's encoder folder")
    ap.add_argument("--make-tiny-encoder", type=Path, default=None, metavar="DIR",
                    help="write the tests' tiny random BERT-like encoder (2 layers, width 16) into DIR and stop")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/ai4code[-quick].json)")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "benchmarks" / "runs")
    args = ap.parse_args()
    if args.make_tiny_encoder:
        sys.path.insert(0, str(REPO / "tests"))
        from test_ai4code_hf import make_encoder

        make_encoder(args.make_tiny_encoder)
        return print(f"wrote {args.make_tiny_encoder}", file=sys.stderr)
    if not (args.data / "train").is_dir():
        raise SystemExit(f"no data at {args.data} (expected train/ and train_orders.csv)")
    if args.scale:
        return scale_main(args)
    if "transformer" in args.models and not args.encoder:
        raise SystemExit("--models transformer needs --encoder DIR (see --make-tiny-encoder)")
    out = args.out or REPO / "benchmarks" / "results" / ("ai4code-quick.json" if args.quick else "ai4code.json")
    env = dict(os.environ, TEXTLAB_RUNS=str(args.runs_dir))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see measure()
    common = ["--data", str(args.data), "--threads", str(args.threads), "--split-seed", "42", "--valid-share", "0.2"]
    if args.quick:
        common += ["--limit", "400"]
    rows, trained = [], {}
    for model in sorted(args.models, key=lambda m: m == "blend"):  # the blend after its members
        extra = (QUICK if args.quick else FULL).get(model, [])
        if model == "transformer":
            extra = extra + ["--encoder", str(args.encoder)]
        if model == "blend":
            members = [trained[m] for m in BLENDED if m in trained]
            if len(members) < 2:
                raise SystemExit("the blend row blends the ranker, neural or transformer runs of the same command: "
                                 "pass two of them in --models")
            extra = [w for run in members for w in ("--member", str(run))]
        before = load()
        t0 = time.time()
        res = textlab(["train", "ai4code", *common, "--model", model, *extra, "--name", "bench"], env)
        wall = time.time() - t0
        run = Path(res["run"])
        trained[model] = run
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
            **({"members": [trained[m].name for m in BLENDED if m in trained and m != "blend"],
                **{k: v for k, v in (info.get("blend") or {}).items() if k != "members"}} if model == "blend" else {}),
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


# ============================================================================ --scale
TARGET = 140_000  # Kaggle AI4Code's training notebooks


def replicate(src: Path, k: int, dest: Path, seed: int = 0) -> int:
    """Write `k` copies of every notebook of `src` into `dest` (Kaggle layout); returns how many."""
    import csv
    import hashlib
    import random
    import re

    from textlab_ai4code import data as D

    notebooks = D.load_notebooks(src)
    rng = random.Random(seed)
    pool = [w for nb in notebooks[:300] for s in nb.sources for w in re.findall(r"[A-Za-z_]{4,}", s)]
    (dest / "train").mkdir(parents=True)
    n = 0
    with open(dest / "train_orders.csv", "w", newline="") as fo, open(dest / "train_ancestors.csv", "w", newline="") as fa:
        orders, ancestors = csv.writer(fo), csv.writer(fa)
        orders.writerow(["id", "cell_order"])
        ancestors.writerow(["id", "ancestor_id", "parent_id"])
        for nb in notebooks:
            by_id = dict(zip(nb.cell_ids, zip(nb.cell_types, nb.sources)))
            for c in range(k):
                if c == 0:
                    copy = nb
                else:
                    nb_id = hashlib.sha1(f"{nb.id}:{c}".encode()).hexdigest()[:14]
                    cells = [(t, re.sub(r"[A-Za-z_]{4,}", lambda m: rng.choice(pool) if rng.random() < 0.1 else m.group(0), s))
                             for t, s in (by_id[i] for i in nb.order)]
                    copy = D.kaggle_notebook(nb_id, cells, ancestor=nb.ancestor)
                (dest / "train" / f"{copy.id}.json").write_text(json.dumps(
                    {"cell_type": dict(zip(copy.cell_ids, copy.cell_types)), "source": dict(zip(copy.cell_ids, copy.sources))}))
                orders.writerow([copy.id, " ".join(copy.order)])
                ancestors.writerow([copy.id, copy.ancestor, ""])
                n += 1
    return n


def measure(data: Path, args: argparse.Namespace, runs: Path, name: str) -> dict:
    """Train the ranker on `data` under /usr/bin/time; what it took."""
    import tempfile

    # OpenMP threads that wait passively: on a machine shared with other jobs, LightGBM's and scikit-learn's
    # spinning threads otherwise slow each other down many times over (set OMP_WAIT_POLICY to override)
    env = dict(os.environ, TEXTLAB_RUNS=str(runs), PYTHONPATH=f"{args.code}:{args.code / 'plugins'}", TEXTLAB_PROGRESS="0")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        before = load()
        t0 = time.time()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M %e", "-o", tf.name, sys.executable, "-m", "textlab", "train",
                               "ai4code", "--data", str(data), "--model", "ranker", "--trees", str(args.trees),
                               "--threads", str(args.threads), "--name", name, "--json"],
                              stdout=subprocess.PIPE, text=True, env=env, cwd=args.code)
        wall = time.time() - t0
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): train on {data}")
        rss_kb, _ = tf.read().split()[-2:]
    run = Path(json.loads(proc.stdout)["run"])
    info = json.loads((run / "run.json").read_text())
    train = {r["name"]: r["value"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if r["split"] == "train"}
    valid = {r["name"]: r["value"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if r["split"] == "valid"}
    return {"train_notebooks": info.get("train_notebooks") or int(train.get("notebooks", 0)),
            "peak_rss_mb": round(int(rss_kb) / 1024), "wall_seconds": round(wall, 1),
            "fit_seconds": round(train.get("fit_time", 0.0), 1), "disk_mb": train.get("disk_mb"),
            "phases": {k[:-5]: round(v, 1) for k, v in train.items() if k.endswith("_time") and k != "fit_time"},
            "peak_mb_after": {k[:-8]: v for k, v in train.items() if k.endswith("_peak_mb")},
            "rows": {k[:-5]: int(v) for k, v in train.items() if k.endswith("_rows")},
            "valid_kendall_tau": valid.get("kendall_tau"), "predict_seconds": round(valid.get("predict_time", 0.0), 1),
            "load_before": before, "load_after": load()}


def fit_line(xs: list[float], ys: list[float], at: float) -> float | None:
    if len(xs) < 2:
        return None
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sum((x - mx) ** 2 for x in xs) or 1.0)
    return my + b * (at - mx)


def scale_main(args: argparse.Namespace) -> None:
    import shutil
    import tempfile

    rows = []
    root = Path(tempfile.mkdtemp(prefix="ai4code-scale-"))
    try:
        for k in args.scale:
            data = root / f"x{k}"
            t0 = time.time()
            n = replicate(args.data, k, data)
            print(f"x{k}: {n:,} notebooks written in {time.time() - t0:.0f}s", file=sys.stderr)
            row = {"scale": k, "notebooks": n, **measure(data, args, root / "runs", f"x{k}")}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            shutil.rmtree(data)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    xs = [r["train_notebooks"] for r in rows]
    extra = {key: fit_line(xs, [r[key] for r in rows], TARGET) for key in ("peak_rss_mb", "fit_seconds", "wall_seconds")}
    result = {"task": "ai4code", "mode": "scale", "data": str(args.data), "code": str(args.code), "trees": args.trees,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
              "threads": args.threads, "command": "flock /work/bench.lock .venv/bin/python benchmarks/ai4code.py --scale "
              + " ".join(map(str, args.scale)) + f" --trees {args.trees} --threads {args.threads}",
              "host": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "rows": rows, "extrapolated_to": TARGET, "extrapolated": extra}
    out = args.out or REPO / "benchmarks" / "results" / "ai4code-scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"ai4code ranker by size ({args.trees} trees per stage, {args.threads} threads)")
    for col in ("scale", "train nb", "peak MB", "wall s", "fit s", "disk MB", "valid tau", "load"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(f"x{r['scale']}", f"{r['train_notebooks']:,}", f"{r['peak_rss_mb']:,}", f"{r['wall_seconds']:.0f}",
                  f"{r['fit_seconds']:.0f}", f"{r['disk_mb'] or 0:,.0f}", f"{r['valid_kendall_tau'] or 0:.4f}",
                  f"{r['load_before']}/{r['load_after']}")
    if extra["peak_rss_mb"] is not None:
        t.add_row("line", f"{TARGET:,}", f"{extra['peak_rss_mb']:,.0f}", f"{extra['wall_seconds']:,.0f}",
                  f"{extra['fit_seconds']:,.0f}", "", "", "")
    Console().print(t)


def show(rows: list[dict], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="ai4code: ancestor-grouped 20% validation split")
    for col in ("model", "Kendall tau", "mean tau", "Spearman", "right gap", "pos. MAE", "fit s", "predict s", "load"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in sorted(rows, key=lambda r: r["kendall_tau"]):
        name = r["model"] + (f" ({' + '.join(m.split('-')[-2] for m in r['members'])})" if r.get("members") else "")
        t.add_row(name, f"{r['kendall_tau']:.4f}", f"{r['mean_tau']:.4f}", f"{r['spearman']:.4f}",
                  f"{r['gap_accuracy']:.3f}", f"{r['position_mae']:.2f}", f"{r['fit_seconds']:.0f}",
                  f"{r['predict_seconds']:.1f}", f"{r['load_before_fit']}/{r['load_before_predict']}")
    Console().print(t)
    Console(stderr=True).print(f"[dim]wrote {out}[/dim]")


if __name__ == "__main__":
    main()
