"""Two real processes under torchrun (gloo on CPU): rank 0 alone writes, gradients are exchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from conftest import run_config


@pytest.mark.slow
def test_torchrun_two_processes(toy_env, tmp_path):
    runs = tmp_path / "runs"
    digests = tmp_path / "digests"
    digests.mkdir()
    env = dict(toy_env, TEXTLAB_RUNS=str(runs), TEXTLAB_RANK_DIGEST=str(digests), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "textlab", "train", "toy", "--steps", "24", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = list(runs.glob("toy/*"))
    assert len(run_dirs) == 1, run_dirs  # one run directory, written by rank 0 alone
    run = run_dirs[0]
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "finished"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keys = Counter((r["step"], r["split"], r["name"]) for r in records)
    assert records and max(keys.values()) == 1  # each metric logged once, not once per rank
    # both ranks trained; DDP averaged their gradients, so their weights are identical
    got = {p.name: p.read_text() for p in digests.iterdir()}
    assert set(got) == {"rank0.txt", "rank1.txt"}
    assert got["rank0.txt"] == got["rank1.txt"]
    assert (run / "checkpoints" / "last.pt").exists()


@pytest.mark.slow
def test_nproc_option_relaunches_under_torchrun(toy_env, tmp_path):
    runs = tmp_path / "runs"
    env = dict(toy_env, TEXTLAB_RUNS=str(runs))
    proc = subprocess.run([sys.executable, "-m", "textlab", "train", "toy", "--steps", "10", "--nproc", "2", "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torchrun --standalone --nproc_per_node 2" in proc.stderr
    (run,) = list(runs.glob("toy/*"))
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 10
    assert "nproc" not in run_config(run)  # launcher option, not a run setting
