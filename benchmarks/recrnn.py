"""recrnn benchmark: the two training modes (and the non-looped baseline) under one wall-clock budget,
then the steps x difficulty table of the better model, then both modes timed on Grokked-style
composition data (vocabulary ~2,200).

    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/recrnn.py --budget 1200 --parallel 2   # the README's run (about 45 min)
    flock /tmp/textlab-bench.lock .venv/bin/python benchmarks/recrnn.py --quick    # minutes: checks it works

Each training run is its own process (`python -m textlab train recrnn ...`), so its peak memory
(ru_maxrss) is its own. Every timing is stored with the load average before and after it.
Writes benchmarks/results/recrnn.json (and recrnn_*.png) and prints rich tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# Pure pointer chasing (every hop a copy), statements in topological order (each chain in order, chains
# interleaved at random): 4 chains, so guessing one of the 4 root literals scores 0.25; train on 0..6
# hops, test on 0..8 (0..4 until 2026-11-22: a fifth of those in-distribution rows were 0-hop lookups,
# solved at one step, which capped the gain from recurrence; README, "Measured results"). The model is
# the `cpu` preset with the CPU defaults of `train` (add injection, token mix 3, no norm before the
# coda, lr 3e-3). See the README, "Learnability".
TRAIN_MAX = 6
DATA = ["--task", "pchase", "--statements", "12", "--chains", "4", "--order", "topological", "--n-train", "50000",
        "--n-valid", "100", "--n-test", "200"]
# The curriculum promotes at 80%, the default (at 90% a 420 s run never left level 1; at 80% a 1,500 s run
# reached level 4 and 97% valid accuracy: README, "Learnability", e13).
MODEL = ["--preset", "cpu", "--batch-size", "32", "--eval-every", "200", "--valid-max", "500", "--promote-at", "0.8"]
# single mode (and the baseline) also learn from the per-statement targets; full mode has every position as a target
AUX = ["--aux", "statements"]
QUICK_DATA = ["--task", "pchase", "--statements", "6", "--chains", "2", "--train-max", "2", "--n-train", "2000",
              "--n-valid", "20", "--n-test", "40"]
QUICK_MODEL = ["--preset", "smoke", "--batch-size", "16", "--eval-every", "20", "--valid-max", "100"]
COMPOSITION = ["--task", "composition", "--entities", "2000", "--relations", "200", "--phi", "3.6"]
QUICK_COMPOSITION = ["--task", "composition", "--entities", "400", "--relations", "60", "--out-degree", "8",
                     "--phi", "1.0", "--test-size", "200"]

CHILD = """
import json, resource, sys, time
from textlab.cli import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.stderr.write("\\nRECRNN_BENCH " + json.dumps({"peak_rss_mib": peak_kib / 1024, "wall": time.perf_counter() - t0}) + "\\n")
sys.exit(code)
"""


def load() -> float:
    return round(os.getloadavg()[0], 2)


def textlab(args: list[str], env: dict, what: str) -> dict:
    """Run `textlab ARGS --json` in a child process; its JSON result plus peak RSS and loads."""
    before = load()
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, args), "--json"], capture_output=True, text=True,
                          env=env)
    after = load()
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise SystemExit(f"{what} failed ({proc.returncode}): {' | '.join(tail)}")
    stats = {}
    for line in proc.stderr.splitlines():
        if line.startswith("RECRNN_BENCH "):
            stats = json.loads(line.split(" ", 1)[1])
    result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return {"result": result, "peak_rss_mib": round(stats.get("peak_rss_mib", 0.0), 1),
            "wall_seconds": round(stats.get("wall", 0.0), 2), "load_before": before, "load_after": after}


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def curve(run_dir: Path) -> dict:
    """Validation accuracy against training seconds and steps, and seconds per step."""
    recs = metrics(run_dir)
    valid: dict[int, dict] = {}
    for r in recs:
        if r["split"] == "valid":
            valid.setdefault(r["step"], {})[r["name"]] = r["value"]
    pts = [{"step": s, "train_time": round(v.get("train_time", 0.0), 2), "accuracy_id": round(v["accuracy_id"], 4),
            "accuracy_ood": round(v["accuracy_ood"], 4), "level": v.get("level")} for s, v in sorted(valid.items())]
    sps = [r["value"] for r in recs if r["split"] == "train" and r["name"] == "seconds_per_step"]
    sps_sorted = sorted(sps[1:] or sps)
    return {"points": pts, "seconds_per_step_median": round(sps_sorted[len(sps_sorted) // 2], 4) if sps_sorted else None}


def time_to(points: list[dict], threshold: float) -> dict | None:
    for p in points:
        if p["accuracy_id"] >= threshold:
            return {"train_seconds": p["train_time"], "step": p["step"]}
    return None


def plot_curves(path: Path, runs: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, info in runs.items():
        pts = info["curve"]["points"]
        ax.plot([p["train_time"] for p in pts], [p["accuracy_id"] for p in pts], label=f"{label} (ID)")
    ax.axhline(0.5, ls=":", color="grey", lw=0.8)
    ax.axhline(0.9, ls=":", color="grey", lw=0.8)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation answer accuracy, in distribution")
    finish_plot(fig, ax, path)


def finish_plot(fig, ax, path: Path) -> None:
    """An accuracy plot's common end (also benchmarks/recrnn_long.py): 0..1 axis, grid, legend, PNG."""
    import matplotlib.pyplot as plt

    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny data and budgets: checks the benchmark runs")
    ap.add_argument("--budget", type=float, default=None, help="training seconds per run (default 1800, quick 20)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "recrnn.json")
    ap.add_argument("--workdir", type=Path, default=None, help="where data and runs go (default: a temporary folder)")
    ap.add_argument("--train-max", type=int, default=None,
                    help=f"hardest training difficulty (hops) of the pchase data (default {TRAIN_MAX})")
    ap.add_argument("--parallel", type=int, default=1,
                    help="training runs at once (each with --threads threads; 2 on a 2-core machine halves the time)")
    args = ap.parse_args()
    budget = args.budget or (20.0 if args.quick else 1800.0)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160 if not sys.stdout.isatty() else None)  # log files get whole tables
    work = args.workdir or Path(tempfile.mkdtemp(prefix="recrnn-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TEXTLAB_RUNS": str(work / "runs"), "TEXTLAB_HOME": str(work / "home"),
           "TEXTLAB_PROGRESS": "0"}
    threads = ["--threads", str(args.threads)]
    data_dir, comp_dir = work / "varchain", work / "composition"
    data = QUICK_DATA if args.quick else [*DATA, "--train-max", str(args.train_max or TRAIN_MAX)]
    report: dict = {"quick": args.quick, "budget_seconds": budget, "threads": args.threads, "parallel": args.parallel,
                    "seed": args.seed,
                    "cpu_count": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": load()}

    console.print(f"[bold]recrnn benchmark[/bold] in {work} (budget {budget:.0f}s per run, {args.threads} thread, "
                  f"{args.parallel} at once)")
    prep = textlab(["prep", "recrnn", "--out", data_dir, *data, "--force"], env,
                   "prep varchain")
    report["data"] = prep["result"].get("settings")
    report["train_options"] = {"common": QUICK_MODEL if args.quick else MODEL, "single": AUX, "baseline-single": AUX}
    common = ["train", "recrnn", "--data", data_dir, *(QUICK_MODEL if args.quick else MODEL), "--steps", "1000000",
              "--time-budget", str(budget), "--seed", str(args.seed), *threads]
    runs: dict[str, dict] = {}
    plan = (("single", ["--mode", "single", *AUX]), ("full", ["--mode", "full"]),
            ("baseline-single", ["--mode", "single", "--model", "baseline", *AUX]))

    def train(label: str, extra: list[str]) -> dict:
        console.print(f"training {label} ...")
        return textlab([*common, *extra, "--name", f"bench-{label}"], env, f"train {label}")

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:  # each run is its own process
        outs = {label: pool.submit(train, label, extra) for label, extra in plan}
    for label, _ in plan:
        out = outs[label].result()
        run_dir = Path(out["result"]["run"])
        info = json.loads((run_dir / "run.json").read_text())
        c = curve(run_dir)
        runs[label] = {"run": str(run_dir), "steps": info.get("steps"), "train_time": info.get("train_time"),
                       "peak_rss_mib": out["peak_rss_mib"], "load_before": out["load_before"],
                       "load_after": out["load_after"], "curve": c,
                       "seconds_per_step": c["seconds_per_step_median"],
                       "time_to_50": time_to(c["points"], 0.5), "time_to_90": time_to(c["points"], 0.9),
                       "final_accuracy_id": c["points"][-1]["accuracy_id"] if c["points"] else None,
                       "best_accuracy_id": max((p["accuracy_id"] for p in c["points"]), default=None),
                       "parameters": out["result"].get("result", {}).get("parameters")}
    report["runs"] = runs
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = args.out if not args.quick or args.out != RESULTS / "recrnn.json" else RESULTS / "recrnn_quick.json"

    def save() -> None:  # partial results survive a later failure or a kill
        out_path.write_text(json.dumps(report, indent=2) + "\n")

    save()
    plot_curves(RESULTS / ("recrnn_curves_quick.png" if args.quick else "recrnn_curves.png"), runs)

    def rank(label: str) -> tuple:
        r = runs[label]
        t90 = r["time_to_90"]["train_seconds"] if r["time_to_90"] else float("inf")
        return (t90, -(r["best_accuracy_id"] or 0))

    better = min(("single", "full"), key=rank)
    other = "full" if better == "single" else "single"
    report["better_mode"] = better
    console.print(f"evaluating {better} (steps x difficulty) ...")
    ev = textlab(["eval", runs[better]["run"], "--steps", "1,2,4,8,16,32", *threads], env, "eval")
    report["eval"] = {k: ev["result"].get(k) for k in ("steps", "columns", "counts", "accuracy", "chance",
                                                        "train_recurrence", "train_max_difficulty", "seconds")}
    report["eval"]["load_before"], report["eval"]["load_after"] = ev["load_before"], ev["load_after"]
    base_ev = textlab(["eval", runs["baseline-single"]["run"], "--steps", "1", *threads], env, "eval baseline")
    report["baseline_eval"] = {"accuracy": base_ev["result"].get("accuracy", {}).get("1")}
    save()
    ex = textlab(["eval", runs[better]["run"], "--exit", "kl", "--exit-threshold", "5e-4", "--max-steps", "32",
                  *threads], env, "eval exit")
    report["kl_exit"] = {k: {kk: vv for kk, vv in v.items() if kk != "histogram"} | {"histogram": v["histogram"]}
                         for k, v in ex["result"].get("rows", {}).items()}
    # longer chains than any in training, at the same sequence length: the same programs with 2 chains
    # instead of 4 (up to statements - 2 hops; the longest is partly a shortcut, see the README)
    console.print(f"evaluating {better} on 2-chain programs (longer chains) ...")
    long_dir = work / "long"
    long_data = [*data, "--chains", "2", "--n-train", "10", "--n-valid", "10"]
    textlab(["prep", "recrnn", "--out", long_dir, *long_data, "--force"], env, "prep long")
    lev = textlab(["eval", runs[better]["run"], "--data", long_dir, "--steps", "1,2,4,8,16,32", *threads], env,
                  "eval long")
    report["long_eval"] = {k: lev["result"].get(k) for k in ("steps", "columns", "counts", "accuracy", "chance")}
    report["long_eval"]["data"] = long_data
    report["long_eval"]["load_before"], report["long_eval"]["load_after"] = lev["load_before"], lev["load_after"]
    save()
    import shutil

    # the plots of both tables (an eval on other data writes to a folder of its own, eval/<data>-<hash>/)
    for result, name in ((ev["result"], "recrnn_steps"), (lev["result"], "recrnn_steps_long")):
        png = next((Path(f) for f in result.get("files", []) if f.endswith(".png")), None)
        if png and png.exists():
            shutil.copy(png, RESULTS / f"{name}{'_quick' if args.quick else ''}.png")

    # composition: per-step time and memory of both modes at a ~2,200-token vocabulary
    console.print("composition timing ...")
    cp = textlab(["prep", "recrnn", "--out", comp_dir, *(QUICK_COMPOSITION if args.quick else COMPOSITION), "--force"],
                 env, "prep composition")
    report["composition_data"] = {"vocab": cp["result"].get("vocab"), "records": cp["result"].get("records")}
    comp = {}
    steps = "20" if args.quick else "60"
    for mode in ("single", "full"):
        out = textlab(["train", "recrnn", "--data", comp_dir, "--mode", mode, "--no-curriculum", "--steps", steps,
                       "--eval-every", steps, "--valid-max", "64",
                       *(QUICK_MODEL[:2] if args.quick else ["--preset", "cpu", "--norm", "prenorm"]),
                       "--batch-size", "64", "--seed", str(args.seed), *threads, "--name", f"comp-{mode}"], env,
                      f"composition {mode}")
        c = curve(Path(out["result"]["run"]))
        comp[mode] = {"seconds_per_step": c["seconds_per_step_median"], "peak_rss_mib": out["peak_rss_mib"],
                      "load_before": out["load_before"], "load_after": out["load_after"], "steps": int(steps)}
    comp["single_speedup"] = round(comp["full"]["seconds_per_step"] / comp["single"]["seconds_per_step"], 3) \
        if comp["single"]["seconds_per_step"] else None
    report["composition"] = comp

    # targets
    acc = report["eval"]["accuracy"]
    r_bar = str(report["eval"]["train_recurrence"])
    targets = {}
    if r_bar in acc and "1" in acc:
        gain = acc[r_bar]["id"] - acc["1"]["id"]
        targets["id_gain_mean_vs_1"] = {"value": round(gain, 4), "target": 0.30, "met": gain >= 0.30}
    if "8" in acc and "32" in acc and acc["8"].get("ood") is not None:
        gain = acc["32"]["ood"] - acc["8"]["ood"]
        targets["ood_gain_8_to_32"] = {"value": round(gain, 4), "target": 0.10, "met": gain >= 0.10}
    lacc = report["long_eval"]["accuracy"]
    if "8" in lacc and "32" in lacc and lacc["8"].get("ood") is not None:
        gain = lacc["32"]["ood"] - lacc["8"]["ood"]
        targets["long_ood_gain_8_to_32"] = {"value": round(gain, 4), "target": 0.10, "met": gain >= 0.10}
    t_b, t_o = runs[better]["time_to_90"], runs[other]["time_to_90"]
    targets["better_mode_reaches_90_sooner"] = {
        "better": better, "seconds": t_b and t_b["train_seconds"], "other": other,
        "other_seconds": t_o and t_o["train_seconds"],
        "met": bool(t_b) and (not t_o or t_b["train_seconds"] < t_o["train_seconds"])}
    report["targets"] = targets
    report["load_end"] = load()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()

    t = Table(title=f"recrnn: training modes, {budget:.0f}s budget each (load {report['load_start']} at start)")
    for col in ("run", "steps", "s/step", "peak MiB", "t to 50% ID", "t to 90% ID", "best ID acc", "load"):
        t.add_column(col, justify="right")
    for label, r in runs.items():
        fmt = lambda x: f"{x['train_seconds']:.0f}s (step {x['step']})" if x else "not reached"  # noqa: E731
        t.add_row(label, str(r["steps"]), f"{r['seconds_per_step']:.3f}", f"{r['peak_rss_mib']:.0f}",
                  fmt(r["time_to_50"]), fmt(r["time_to_90"]), f"{r['best_accuracy_id']:.3f}",
                  f"{r['load_before']}-{r['load_after']}")
    console.print(t)
    def steps_table(ev: dict, title: str) -> Table:
        st = Table(title=f"{better} mode {title}: accuracy by steps (rows) x difficulty (chance {ev['chance']:.2f})")
        st.add_column("steps", justify="right")
        for ccol in ev["columns"]:
            st.add_column(ccol, justify="right")
        for s in ev["steps"]:
            st.add_row(str(s), *(f"{ev['accuracy'][str(s)][ccol]:.3f}" for ccol in ev["columns"]))
        return st

    console.print(steps_table(report["eval"], f"on test (training mean r = {r_bar})"))
    console.print(steps_table(report["long_eval"], "on 2-chain programs (longer chains)"))
    t3 = Table(title="composition data (vocabulary %s): both modes, same model" % report["composition_data"]["vocab"])
    for col in ("mode", "s/step", "peak MiB", "load"):
        t3.add_column(col, justify="right")
    for mode in ("single", "full"):
        m = comp[mode]
        t3.add_row(mode, f"{m['seconds_per_step']:.3f}", f"{m['peak_rss_mib']:.0f}", f"{m['load_before']}-{m['load_after']}")
    console.print(t3)
    for name, tgt in targets.items():
        console.print(f"target {name}: {'[green]met' if tgt['met'] else '[red]not met'}[/] {tgt}")
    console.print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
