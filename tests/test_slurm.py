"""`textlab submit` against a real SLURM (slurmctld + slurmd + munge on localhost).

Started by scripts/slurm-local.sh; skipped with its reason where SLURM cannot run (not
installed, not root). `make test-slurm` installs the Debian packages first. About a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, run_textlab

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm():
    proc = subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "start"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"SLURM cannot start here: {proc.stderr.strip() or proc.stdout.strip()}")
    conf = proc.stdout.strip().split("=", 1)[1]
    yield conf
    subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "stop"], capture_output=True, timeout=60)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def status_of(run: Path) -> str | None:
    try:
        return json.loads((run / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def submit(env, *args) -> dict:
    proc = run_textlab(["submit", "--json", *args], env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_submitted_job_runs_to_a_complete_run_directory(slurm, toy_env, tmp_path):
    env = dict(toy_env, SLURM_CONF=slurm, TEXTLAB_RUNS=str(tmp_path / "runs"))
    job = submit(env, "--time", "00:05:00", "--", "train", "toy", "--steps", "30")
    run = Path(job["run_dir"])
    assert job["job_id"] and run.parent == tmp_path / "runs" / "toy"
    listed = json.loads(run_textlab(["runs", "--json"], env=env).stdout)
    assert listed[0]["slurm"]["job_id"] == job["job_id"]
    assert listed[0]["status"] in ("queued", "running", "finished")
    log_path = run / f"slurm-{job['job_id']}.out"
    wait_for(lambda: status_of(run) == "finished" and "exit code" in log_path.read_text(), 180, "the job to finish")
    for name in ("run.json", "config.toml", "metrics.jsonl", "checkpoints/best.pt", "checkpoints/last.pt", "slurm/job.sh"):
        assert (run / name).exists(), name
    assert "exit code 0" in log_path.read_text()
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 30 and info["slurm"]["job_id"] == job["job_id"]
    script = (run / "slurm" / "job.sh").read_text()
    assert "export HF_HUB_OFFLINE=1" in script and "#SBATCH --requeue" in script


def test_sigterm_saves_requeues_and_resumes(slurm, toy_env, tmp_path):
    env = dict(toy_env, SLURM_CONF=slurm, TEXTLAB_RUNS=str(tmp_path / "runs"))
    job = submit(env, "--", "train", "toy", "--steps", "120", "--step-delay", "0.1")
    run = Path(job["run_dir"])
    wait_for(lambda: (run / "checkpoints" / "last.pt").exists(), 180, "the first checkpoint")
    # what SLURM does at the time limit (--signal=B:TERM@grace) or on preemption
    subprocess.run(["scancel", "--signal=TERM", "--batch", job["job_id"]], check=True, env=env)
    wait_for(lambda: status_of(run) == "finished", 240, "the requeued job to resume and finish")
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 120 and len(info["resumes"]) >= 1
    log = (run / f"slurm-{job['job_id']}.out").read_text()
    assert "requeueing" in log and "resuming" in log and "restart 1" in log
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 120


def test_submit_validates_before_queueing(slurm, toy_env, tmp_path):
    env = dict(toy_env, SLURM_CONF=slurm, TEXTLAB_RUNS=str(tmp_path / "runs"))
    bad = run_textlab(["submit", "--", "train", "toy", "--nosuch"], env=env)
    assert bad.returncode == 2 and "--nosuch" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    bad = run_textlab(["submit", "--time", "soon", "--", "train", "toy"], env=env)
    assert bad.returncode == 2 and "not a SLURM time" in bad.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("run.json"))
