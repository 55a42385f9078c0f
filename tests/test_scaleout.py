"""Scale-out with the real plugins: two DDP processes (gla, recrnn; agnews has its own), and a
bundle built here that trains and evaluates agnews with every network variable forcing offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TEXTLAB_OFFLINE": "1"}


def textlab(args: list, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textlab", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def two_processes(task: str, args: list, tmp_path: Path) -> tuple[Path, dict]:
    """`textlab train TASK ARGS --nproc 2`: returns the run directory and each rank's weight digest."""
    env = dict(os.environ, TEXTLAB_RUNS=str(tmp_path / "runs"), TEXTLAB_RANK_DIGEST=str(tmp_path / "digests"),
               OMP_NUM_THREADS="1")
    proc = textlab(["train", task, *args, "--nproc", "2", "--threads", "1"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "stdout.txt").write_text(proc.stdout)
    (run,) = list((tmp_path / "runs" / task).iterdir())  # rank 0 alone made a run directory
    digests = {p.name: p.read_text() for p in (tmp_path / "digests").iterdir()}
    return run, digests


def check_run(run: Path) -> list[dict]:
    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "finished"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["split"], r["name"]) for r in records]
    assert records and len(keys) == len(set(keys))  # logged once, by rank 0, not once per rank
    assert (run / "checkpoints" / "last.pt").exists()
    return records


@pytest.mark.slow
def test_gla_trains_on_two_processes_with_identical_weights(tmp_path):
    run, digests = two_processes("gla", ["--data", "sample", "--d-model", "32", "--layers", "1", "--heads", "2",
                                         "--seq-len", "64", "--batch-size", "8", "--steps", "6", "--eval-every", "3",
                                         "--eval-chars", "2000"], tmp_path)
    records = check_run(run)
    assert max(r["step"] for r in records) == 6
    assert set(digests) == {"rank0.txt", "rank1.txt"} and digests["rank0.txt"] == digests["rank1.txt"]


@pytest.mark.slow
def test_recrnn_trains_on_two_processes_with_identical_weights(tmp_path):
    run, digests = two_processes("recrnn", ["--data", "sample", "--preset", "smoke", "--steps", "6",
                                            "--eval-every", "3", "--valid-max", "20", "--json"], tmp_path)
    check_run(run)
    assert set(digests) == {"rank0.txt", "rank1.txt"} and digests["rank0.txt"] == digests["rank1.txt"]
    # --json under --nproc: one document (rank 0's), not one per process plus the launcher's
    out = (tmp_path / "stdout.txt").read_text()
    assert json.loads(out)["run"] == str(run)
    # a resume with another number of processes would be another data order: refused in one line
    env = dict(os.environ, TEXTLAB_RUNS=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    before = (run / "run.json").read_bytes()
    proc = textlab(["train", "--resume", run, "--steps", "8", "--threads", "1"], env)
    assert proc.returncode == 2 and "trained with 2 process(es), this resume has 1" in proc.stderr
    assert "--nproc 2" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (run / "run.json").read_bytes() == before


@pytest.mark.slow
def test_bundle_then_train_and_eval_offline(tmp_path):
    """Build a bundle from a local AG News folder, move it, delete the original, go offline: train + eval."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    from textlab_agnews import data as D

    src = tmp_path / "agnews-local"
    src.mkdir()
    for split in ("train", "test"):
        rows = D.make_sample(split)
        pq.write_table(pa.table({"text": rows["text"], "label": rows["label"]}), src / f"{split}.parquet")
    env = dict(os.environ, TEXTLAB_HOME=str(tmp_path / "home-here"), TEXTLAB_RUNS=str(tmp_path / "runs"))
    proc = textlab(["bundle", "--task", "agnews", "--data", src, "--out", tmp_path / "bundle", "--no-wheels", "--json"],
                   env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    made = json.loads(proc.stdout)
    assert made["data"] == ["agnews-local"] and made["prepared"]["agnews-local"]  # prep/vocab ran into the bundle
    moved = tmp_path / "node" / "bundle"
    moved.parent.mkdir()
    (tmp_path / "bundle").rename(moved)
    for f in src.iterdir():
        f.unlink()
    src.rmdir()
    node = dict(os.environ, TEXTLAB_HOME=str(moved / "home"), TEXTLAB_RUNS=str(tmp_path / "node-runs"), **OFFLINE)
    node.pop("TEXTLAB_PLUGINS", None)
    proc = textlab(["train", "agnews", "--data", "agnews-local", "--epochs", "1", "--hidden-dim", "16",
                    "--emb-dim", "16", "--threads", "1", "--json"], node)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the vocabulary and the tokenized splits came from the bundle's caches: nothing was prepared again
    assert f"from the cache: {moved / 'home'}" in proc.stderr and "tokenize" not in proc.stderr
    (run,) = list((tmp_path / "node-runs" / "agnews").iterdir())
    proc = textlab(["eval", run, "--json"], node)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 0.0 <= json.loads(proc.stdout)["accuracy"] <= 1.0
    # the hub default still says in one line that it needs the network
    proc = textlab(["train", "agnews", "--data", "someone/other_news", "--epochs", "1"], node)
    assert proc.returncode == 2 and "offline" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_ai4code_neural_ranker_trains_on_two_processes_with_identical_weights(tmp_path):
    run, digests = two_processes("ai4code", ["--data", "sample", "--model", "neural", "--epochs", "1", "--dim", "8",
                                             "--buckets", "1024", "--batch-size", "8", "--limit", "64"], tmp_path)
    check_run(run)
    assert set(digests) == {"rank0.txt", "rank1.txt"} and digests["rank0.txt"] == digests["rank1.txt"]


def test_a_failure_under_nproc_is_one_line(tmp_path):
    """Every rank fails the same way: one error line (rank 0's), no torchrun log or traceback."""
    env = dict(os.environ, TEXTLAB_RUNS=str(tmp_path / "runs"))
    proc = textlab(["train", "word2vec", "--data", "sample", "--nproc", "2", "--threads", "1"], env)
    assert proc.returncode == 2
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("launching: ")]
    assert len(lines) == 1 and "not under torchrun" in lines[0] and "Traceback" not in proc.stderr
    assert not list((tmp_path / "runs").glob("word2vec/*"))


@pytest.mark.parametrize("failures, code, extra_line", [
    ({0: (2, 2.0), 1: (2, 1.0)}, 2, False),  # every rank fails; torchrun happened to record rank 1 first
    ({0: (-15, 2.0), 1: (3, 1.0)}, 3, True),  # rank 1 fails, torchrun kills rank 0 (no line of its own)
    ({1: (4, 1.0)}, 4, True),
])
def test_launcher_reports_rank_0s_failure_whichever_rank_torchrun_records_first(failures, code, extra_line,
                                                                                monkeypatch, capsys):
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from textlab import launch

    def failed(rank, exitcode, when):
        f = ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=exitcode, error_file="/nonexistent")
        f.timestamp = when
        return f

    def run(_args):
        raise ChildFailedError("textlab", {r: failed(r, *v) for r, v in failures.items()})

    monkeypatch.setattr(torchrun, "run", run)
    monkeypatch.setattr(torchrun, "parse_args", lambda argv: argv)
    assert launch.main([]) == code
    err = capsys.readouterr().err
    assert bool(err) == extra_line and ("process 1 failed" in err) == extra_line


def test_launcher_turns_sigterm_into_an_exit_code_not_a_traceback(monkeypatch, capsys):
    import signal as _signal

    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from textlab import launch

    def run(_args):
        raise SignalException("Process 1 got signal: 15", sigval=_signal.SIGTERM)

    monkeypatch.setattr(torchrun, "run", run)
    assert launch.main(["--standalone", "--nproc_per_node", "2", "-m", "textlab"]) == 128 + 15
    assert "Traceback" not in capsys.readouterr().err
