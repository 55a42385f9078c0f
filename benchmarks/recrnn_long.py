"""recrnn on chains longer than anything trained: fine-tune a trained run on longer programs, then
accuracy x test-time steps on chains of up to 44 hops.

    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/recrnn_long.py --init RUN --budget 2700 --threads 2
    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/recrnn_long.py --init RUN --seed 1   # another fine-tuning seed
    .venv/bin/python benchmarks/recrnn_long.py --quick     # about a minute: trains its own tiny model first

RUN is the single-mode run of benchmarks/recrnn.py (12-statement programs, names A-Z). The stage is
`textlab train recrnn --init RUN` on a 50/50 mix of 24- and 48-statement pchase programs (4 chains,
topological order, queries of 0..6 hops, names A-Z and a-v) with `--aux statements --aux-max-hops 16`:
no chain of more than 16 hops is computed in training, neither here nor in RUN (whose programs hold
at most 9-hop chains). Then `textlab eval` at 1..64 steps on 48-statement test programs (chains of
0..44 hops). The issue's target: chains longer than any seen in training gain at least 10 points
from 8 to 32 steps. Writes benchmarks/results/recrnn_long.json and recrnn_long_steps.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from recrnn import RESULTS, curve, finish_plot, load, textlab, time_to  # noqa: E402

QUERY_MAX = 6  # hops of the training queries
AUX_MAX = 16  # deepest statement taught by --aux statements
STEPS = [1, 2, 4, 8, 16, 32, 64]
PCHASE = ["--task", "pchase", "--chains", "4", "--order", "topological"]  # + --train-max
TRAIN = ["--mode", "single", "--batch-size", "32", "--eval-every", "200", "--valid-max", "500", "--promote-at", "0.8",
         "--aux", "statements", "--steps", "1000000"]  # + --aux-max-hops
BANDS = [("0-6 (queried in training)", 0, QUERY_MAX), (f"7-{AUX_MAX} (statement targets only)", QUERY_MAX + 1, AUX_MAX),
         (f"{AUX_MAX + 1}-24", AUX_MAX + 1, 24), ("25-32", 25, 32), ("33-44", 33, 44)]
QUICK = {"short": 6, "long": 30, "mid": 12, "query": 2, "aux": 4, "n_train": 600, "n_test": 4}


def mix_folder(out: Path, parts: list[Path], target: Path) -> int:
    """train = the train programs of `parts` shuffled together (without any of target's valid/test
    programs); valid, test and vocab are target's (its vocabulary holds every part's)."""
    held = {r["input_text"] for s in ("valid", "test") for r in json.loads((target / f"{s}.json").read_text())}
    train = [r for p in parts for r in json.loads((p / "train.json").read_text()) if r["input_text"] not in held]
    random.Random(0).shuffle(train)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(train))
    for name in ("valid", "test", "vocab"):
        shutil.copyfile(target / f"{name}.json", out / f"{name}.json")
    return len(train)


def bands(ev: dict, spec: list[tuple[str, int, int]]) -> dict:
    """Accuracy per band of difficulties at each step, weighted by records."""
    out: dict = {}
    for name, lo, hi in spec:
        cols = [f"d{d}" for d in range(lo, hi + 1) if f"d{d}" in ev["counts"]]
        n = sum(ev["counts"][c] for c in cols)
        if n:
            out[name] = {"records": n, **{str(s): round(sum(ev["accuracy"][str(s)][c] * ev["counts"][c] for c in cols)
                                                        / n, 4) for s in ev["steps"]}}
    return out


def plot(path: Path, table: dict, steps: list[int], train_r: int, statements: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, row in table.items():
        ax.plot(steps, [row[str(s)] for s in steps], marker="o", label=f"{name} hops")
    ax.axvline(train_r, ls="--", color="grey", lw=0.8)
    ax.axhline(0.25, ls=":", color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("recurrence steps at test time (training mean dashed)")
    ax.set_ylabel("test answer accuracy")
    ax.set_title(f"{statements}-statement programs; guessing a root literal: 0.25 (dotted)", fontsize=9)
    finish_plot(fig, ax, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", type=Path, help="the run to start from (benchmarks/recrnn.py's single run)")
    ap.add_argument("--quick", action="store_true", help="tiny data, budgets and model (trains its own --init)")
    ap.add_argument("--budget", type=float, default=None, help="fine-tuning seconds (default 2700, quick 15)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--n-test", type=int, default=60, help="test programs per difficulty")
    ap.add_argument("--workdir", type=Path, default=None, help="where data and runs go (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0,
                    help="fine-tuning seed (depth sampler, batch order); data, test and RUN stay the same")
    ap.add_argument("--out", type=Path, default=None,
                    help="default benchmarks/results/recrnn_long.json (recrnn_long_seedN.json for --seed N > 0)")
    args = ap.parse_args()
    if not args.quick and args.init is None:
        ap.error("--init RUN is needed (the single-mode run of benchmarks/recrnn.py), or --quick")
    budget = args.budget or (15.0 if args.quick else 2700.0)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160 if not sys.stdout.isatty() else None)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="recrnn-long-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TEXTLAB_RUNS": str(work / "runs"), "TEXTLAB_HOME": str(work / "home"),
           "TEXTLAB_PROGRESS": "0"}
    threads = ["--threads", str(args.threads)]
    q = QUICK if args.quick else None
    mid, long = (q["mid"], q["long"]) if q else (24, 48)
    query_max, aux_max = (q["query"], q["aux"]) if q else (QUERY_MAX, AUX_MAX)
    spec = [("0-2", 0, 2), ("3-4", 3, 4), ("5-28", 5, 28)] if q else BANDS
    pchase = [*PCHASE, "--train-max", str(query_max)]
    train_opts = [*TRAIN, "--aux-max-hops", str(aux_max)]
    report: dict = {"quick": args.quick, "budget_seconds": budget, "threads": args.threads,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": load(), "query_max": query_max,
                    "aux_max_hops": aux_max, "statements": [mid, long], "seed": args.seed}
    init = args.init
    if q:  # a tiny model to start from, on short programs
        short = work / "short"
        textlab(["prep", "recrnn", *pchase, "--statements", str(q["short"]), "--chains", "2", "--n-train", "2000",
                 "--n-valid", "10", "--n-test", "10", "--out", short, "--force"], env, "prep short")
        out = textlab(["train", "recrnn", "--data", short, "--preset", "smoke", *train_opts, "--time-budget", "10",
                       "--eval-every", "20", *threads, "--name", "short"], env, "train short")
        init = Path(out["result"]["run"])
    report["init"] = str(init)
    console.print(f"[bold]recrnn long chains[/bold] in {work}: fine-tune {init} for {budget:.0f}s ({args.threads} "
                  f"threads) on {mid}- and {long}-statement programs")
    folders = {}
    for n, seed in ((mid, 4), (long, 3)):
        folders[n] = work / f"pchase{n}"
        n_train = q["n_train"] if q else 30000
        textlab(["prep", "recrnn", *pchase, "--statements", str(n), "--seed", str(seed), "--n-train", str(n_train),
                 "--n-valid", "4" if q else "50", "--n-test", str(q["n_test"] if q else args.n_test),
                 "--out", folders[n], "--force"], env, f"prep {n} statements")
    mix = work / "mix"
    report["train_records"] = mix_folder(mix, [folders[mid], folders[long]], folders[long])
    tuned = textlab(["train", "recrnn", "--data", mix, "--init", init, *train_opts, "--time-budget", str(budget),
                     *(["--eval-every", "20"] if q else []), "--seed", str(args.seed), *threads,
                     "--name", "long"], env, "fine-tune")
    run_dir = Path(tuned["result"]["run"])
    c = curve(run_dir)
    report["fine_tune"] = {"run": str(run_dir), "peak_rss_mib": tuned["peak_rss_mib"],
                           "load_before": tuned["load_before"], "load_after": tuned["load_after"],
                           "steps": c["points"][-1]["step"] if c["points"] else 0,
                           "seconds_per_step": c["seconds_per_step_median"], "curve": c["points"],
                           "time_to_90": time_to(c["points"], 0.9),
                           "best_accuracy_id": max((p["accuracy_id"] for p in c["points"]), default=None)}
    console.print(f"fine-tuned: {report['fine_tune']['steps']} steps, best valid ID "
                  f"{report['fine_tune']['best_accuracy_id']}, load {tuned['load_before']}-{tuned['load_after']}")
    steps = STEPS[:4] + [32] if q else STEPS
    ev = textlab(["eval", run_dir, "--data", folders[long], "--steps", ",".join(map(str, steps)), *threads], env,
                 "eval")
    table = bands(ev["result"], spec)
    unseen = [name for name, lo, _ in spec if lo > aux_max]
    counts = {n: table[n]["records"] for n in unseen if n in table}
    total = sum(counts.values())

    def unseen_at(s: int) -> float:
        return round(sum(table[n][str(s)] * counts[n] for n in counts) / total, 4) if total else float("nan")

    gain = round(100 * (unseen_at(32) - unseen_at(8)), 1)
    report["eval"] = {"steps": steps, "bands": table, "per_difficulty": ev["result"]["accuracy"],
                      "counts": ev["result"]["counts"], "seconds": ev["wall_seconds"],
                      "load_before": ev["load_before"], "load_after": ev["load_after"],
                      "unseen": {"difficulties": f">{aux_max}", "at_8": unseen_at(8), "at_32": unseen_at(32),
                                 "gain_points_8_to_32": gain, "target_met": gain >= 10}}
    report["load_end"] = load()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / (("recrnn_long_quick" if q else "recrnn_long") + (f"_seed{args.seed}" if args.seed else "")
                                 + ".json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(out.with_name(out.stem + "_steps.png"), table, steps, 8, long)

    t = Table(title=f"test accuracy by chain length (hops) x steps, {long}-statement programs; training: queries "
                    f"0..{query_max}, statement targets 0..{aux_max}")
    t.add_column("steps", justify="right")
    for name in table:
        t.add_column(f"{name} ({table[name]['records']})", justify="right")
    t.add_column(f"all >{aux_max}", justify="right")
    for s in steps:
        t.add_row(str(s), *(f"{table[n][str(s)]:.3f}" for n in table), f"{unseen_at(s):.3f}")
    console.print(t)
    console.print(f"chains longer than any in training (>{aux_max} hops): {unseen_at(8):.3f} at 8 steps, "
                  f"{unseen_at(32):.3f} at 32: {gain:+.1f} points (target +10: "
                  f"{'met' if gain >= 10 else 'not met'}). Written to {out}")


if __name__ == "__main__":
    main()
