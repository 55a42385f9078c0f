"""`textlab submit`: queue a textlab command as a SLURM batch job.

The job script (written into the run directory, so it is kept with the results):
  * sets the offline variables (compute nodes have no internet) and points TEXTLAB_HOME at the
    shared data location,
  * fixes the run directory in advance (TEXTLAB_RUN_DIR), so `submit` can say where results go,
  * asks SLURM for SIGTERM some seconds before the time limit (`--signal=B:TERM@GRACE`); on
    SIGTERM (time limit or preemption) textlab saves last.pt and the script requeues the job,
  * when it starts and the run directory already has last.pt, it runs `textlab train --resume`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from .data import write_json
from .errors import TextlabError, UsageError
from .rundir import runs_root

# sbatch --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED / INFINITE
_TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(:\d{1,2}){0,2}|unlimited|infinite)$", re.I)


def plan(inv: Any) -> tuple[str, str, Path | None]:
    """Check a training invocation before it is queued; (task, run label, run dir to resume or None)."""
    import dataclasses

    from .rundir import locate_run

    core = inv.core
    if inv.grid:
        raise UsageError("submit one job per run: --sweep is not supported with submit")
    if (core.nproc or 1) > 1:
        # inside the job the relaunch would sit between SLURM's SIGTERM and the processes that must save
        raise UsageError("give the number of processes to submit, not to train",
                         hint=f"textlab submit --nproc {core.nproc} -- train {inv.task} ...")
    if core.resume is not None:
        return inv.task, "", locate_run(core.resume).resolve()
    inv = inv.resolved()  # the task's own checks too: a bad combination fails now, not in the queue
    task = inv.verb.task
    options = dataclasses.asdict(inv.options)
    label = task.run_label(options) if task.run_label else str(options.get("model") or task.name)
    return task.name, label, None


def job_script(*, run_dir: Path, args: list[str], home: Path | None, runs: Path, python: str, job_name: str,
               partition: str | None, time: str | None, nodes: int, gpus: int, cpus: int | None, mem: str | None,
               account: str | None, qos: str | None, nproc: int, grace: int, extra: list[str], offline: bool) -> str:
    """The sbatch script, as text."""
    for name, value in (("--partition", partition), ("--account", account), ("--qos", qos), ("--mem", mem)):
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise UsageError(f"{name} {value!r}: SLURM values have no spaces")
    for e in extra:
        if not e.startswith("-") or any(c.isspace() for c in e.split("=", 1)[0]):
            raise UsageError(f"--sbatch {e!r} is not an sbatch option", hint="e.g. --sbatch=--constraint=a100")
    sb = [f"--job-name={job_name}", f'--output="{run_dir}/slurm-%j.out"', "--open-mode=append", "--requeue",
          f"--signal=B:TERM@{grace}", f"--nodes={nodes}", "--ntasks-per-node=1"]
    if partition:
        sb.append(f"--partition={partition}")
    if time:
        sb.append(f"--time={time}")
    if gpus:
        sb.append(f"--gres=gpu:{gpus}")
    if cpus:
        sb.append(f"--cpus-per-task={cpus}")
    if mem:
        sb.append(f"--mem={mem}")
    if account:
        sb.append(f"--account={account}")
    if qos:
        sb.append(f"--qos={qos}")
    lines = ["#!/bin/bash", "# written by `textlab submit`; kept in the run directory"]
    lines += [f"#SBATCH {s}" for s in sb] + [f"#SBATCH {e}" for e in extra]
    # no TEXTLAB_PROGRESS=0: outside a terminal textlab logs plain lines (one per evaluation) into slurm-<job>.out
    env = {"TEXTLAB_RUNS": str(runs), "TEXTLAB_RUN_DIR": str(run_dir), "PYTHONUNBUFFERED": "1"}
    if home:
        env["TEXTLAB_HOME"] = str(home)
    if offline:
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TEXTLAB_OFFLINE": "1"})
    lines += ["set -u"] + [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    if nproc > 1:  # torchrun's own default, said here so it does not print a warning about it; --threads overrides
        lines.append('export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"')
    lines.append(f"cd {shlex.quote(os.getcwd())}")
    py = shlex.quote(python)
    if nproc > 1 and nodes > 1:
        launch = (f'srun --kill-on-bad-exit=1 {py} -m textlab.launch --nnodes "$SLURM_NNODES" '
                  f'--nproc_per_node {nproc} --rdzv-backend c10d '
                  f'--rdzv-endpoint "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1):29500" -m textlab')
    elif nproc > 1:
        launch = f"{py} -m textlab.launch --standalone --nproc_per_node {nproc} -m textlab"
    else:
        launch = f"{py} -m textlab"
    quoted = " ".join(shlex.quote(a) for a in args)
    lines += [
        f"RUN_DIR={shlex.quote(str(run_dir))}",
        'if [ -f "$RUN_DIR/checkpoints/last.pt" ]; then',
        '  echo "textlab: $RUN_DIR has last.pt: resuming"',
        '  ARGS=(train --resume "$RUN_DIR")',
        "else",
        f"  ARGS=({quoted})",
        "fi",
        'echo "textlab: job ${SLURM_JOB_ID:-(not under SLURM)} (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date -Is)"',
        'CHILD=""',
        "requeue() {  # set before the child starts: a SIGTERM at any moment is handled",
        '  echo "textlab: SIGTERM (time limit or preemption): saving last.pt, then requeueing"',
        '  if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD"; fi',
        '  if scontrol requeue "${SLURM_JOB_ID:-}"; then exit 0; fi',
        '  echo "textlab: requeue failed; resume by hand: textlab submit -- train --resume $RUN_DIR"',
        "  exit 1",
        "}",
        "trap requeue TERM USR1",
        f'{launch} "${{ARGS[@]}}" &',
        "CHILD=$!",
        'wait "$CHILD"',
        "RC=$?",
        'echo "textlab: exit code $RC"',
        "exit $RC",
    ]
    return "\n".join(lines) + "\n"


def submit(inv: Any, args: list[str], *, partition: str | None = None, time: str | None = None, nodes: int = 1, gpus: int = 0,
           cpus: int | None = None, mem: str | None = None, account: str | None = None, qos: str | None = None,
           nproc: int = 1, grace: int = 120, home: str | None = None, runs_dir: str | None = None,
           python: str | None = None, extra: list[str] | None = None, offline: bool = True,
           dry_run: bool = False) -> dict:
    """Write the job script into a new (or the resumed) run directory and `sbatch` it.

    `inv`: the training command `args` (`train TASK ...`) parsed and checked."""
    if time and not _TIME.match(time):
        raise UsageError(f"--time {time!r} is not a SLURM time", hint="e.g. 30, 04:00:00, 1-12:00:00")
    task, label, resume_dir = plan(inv)
    runs = runs_root(runs_dir).resolve()
    if resume_dir is not None:
        run_dir = resume_dir
        args = ["train", "--resume", str(run_dir)]
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = runs / task
        base.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10_000):
            run_dir = base / (f"{stamp}-{label}-slurm" if i == 1 else f"{stamp}-{label}-slurm-{i}")
            if dry_run:
                if not run_dir.exists():
                    break
                continue
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                continue
    home_path = Path(home).expanduser().resolve() if home else (
        Path(os.environ["TEXTLAB_HOME"]).resolve() if os.environ.get("TEXTLAB_HOME") else None)
    script = job_script(run_dir=run_dir, args=args, home=home_path, runs=runs, python=python or sys.executable,
                        job_name=f"textlab-{task}", partition=partition, time=time, nodes=nodes, gpus=gpus,
                        cpus=cpus, mem=mem, account=account, qos=qos, nproc=nproc, grace=grace,
                        extra=list(extra or []), offline=offline)
    script_path = run_dir / "slurm" / "job.sh"
    if dry_run:
        return {"run_dir": str(run_dir), "script": str(script_path), "job_id": None, "text": script}
    script_path.parent.mkdir(parents=True, exist_ok=True)
    script_path.write_text(script)
    script_path.chmod(0o755)
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise TextlabError("sbatch not found: is this a SLURM login node?",
                           hint=f"the job script is ready: {script_path}")
    proc = subprocess.run([sbatch, "--parsable", str(script_path)], capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise TextlabError(f"sbatch failed: {msg[-1] if msg else proc.returncode}", hint=f"script: {script_path}")
    job_id = proc.stdout.strip().split(";")[0]
    record = {"job_id": job_id, "script": str(script_path), "submitted": datetime.now().astimezone().isoformat(timespec="seconds"),
              "partition": partition, "time": time, "nodes": nodes, "gpus": gpus, "nproc": nproc}
    if resume_dir is None:
        write_json(run_dir / "run.json", {"task": task, "model": label, "name": None, "status": "queued",
                                          "command": "textlab " + " ".join(shlex.quote(a) for a in args),
                                          "start": record["submitted"], "best": None, "slurm": record})
    else:
        from .data import read_json

        info = read_json(run_dir / "run.json", "run.json")
        info.setdefault("slurm_jobs", []).append(record)
        write_json(run_dir / "run.json", info)
    return {"run_dir": str(run_dir), "script": str(script_path), "job_id": job_id}


def job_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM states of jobs (PENDING, RUNNING, ...) from squeue; empty when SLURM is not reachable."""
    squeue = shutil.which("squeue")
    if not job_ids or squeue is None:
        return {}
    try:
        proc = subprocess.run([squeue, "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def annotate(rows: list[dict[str, Any]]) -> None:
    """Add live SLURM states to `textlab runs` rows of submitted jobs."""
    ids = [r["slurm"]["job_id"] for r in rows if isinstance(r.get("slurm"), dict) and r["slurm"].get("job_id")]
    states = job_states(ids)
    for r in rows:
        job = r.get("slurm") if isinstance(r.get("slurm"), dict) else None
        if not job:
            continue
        state = states.get(str(job.get("job_id")))
        r["slurm_state"] = state
        if r.get("status") in ("queued", "stale", "interrupted") and state:
            r["status"] = {"PENDING": "queued", "RUNNING": "running", "REQUEUED": "queued",
                           "CONFIGURING": "queued", "COMPLETING": "running"}.get(state, state.lower())
        elif r.get("status") == "queued" and not state and ids and states is not None:
            r["status"] = "queued?"  # squeue does not know the job (finished before it wrote run.json, or no SLURM here)
