"""Run every task benchmark one after another and print what each took.

    python benchmarks/run_all.py            # the full benchmarks (long: see each task's README)
    python benchmarks/run_all.py --quick    # each in its quick mode (minutes), checks they work
    python benchmarks/run_all.py --only gla word2vec
    python benchmarks/run_all.py --only scale --quick   # how time and memory grow with the data (scale.py)

Each `benchmarks/<task>.py` prints its own rich table and writes `benchmarks/results/<task>.json`
(with the load average next to every timing); `scale` is `benchmarks/scale.py`, every task's
pipeline at growing data sizes (`scale.json`, `scale.png`). This driver adds
`benchmarks/results/run_all.json`: per task the exit status, wall time and the load average
before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
TASKS = ["agnews", "word2vec", "gla", "recrnn", "ai4code", "scale"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="each benchmark in its quick mode")
    ap.add_argument("--only", nargs="+", choices=TASKS, help="run these tasks only")
    args = ap.parse_args()
    console = Console(stderr=True)
    rows = []
    for task in args.only or TASKS:
        script = HERE / f"{task}.py"
        if not script.exists():
            rows.append({"task": task, "status": "missing", "seconds": 0.0})
            continue
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        console.rule(f"[bold]{task}[/]: {' '.join(cmd[1:])}")
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        rows.append({"task": task, "command": " ".join(["python"] + cmd[1:]), "status": "ok" if rc == 0 else f"exit {rc}",
                     "seconds": round(time.perf_counter() - t0, 1),
                     "load_before": [round(x, 2) for x in load_before],
                     "load_after": [round(x, 2) for x in os.getloadavg()]})
    table = Table(title="benchmarks" + (" (quick)" if args.quick else ""))
    for col in ("task", "status", "seconds", "load before (1/5/15 min)"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["task"], r["status"], f"{r['seconds']:.1f}", " ".join(map(str, r.get("load_before", []))))
    Console().print(table)
    out = HERE / "results" / ("run_all.quick.json" if args.quick else "run_all.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "runs": rows}, indent=2) + "\n")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
