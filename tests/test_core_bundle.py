"""`textlab bundle`: data copied and named in a TEXTLAB_HOME that works from anywhere, offline."""

from __future__ import annotations

import json
import shutil

from textlab.bundle import _filter_args, requirement_pins
from textlab.data import fingerprint, resolve


def test_bundle_copies_local_data_and_names_it(cli, toy, tmp_path, monkeypatch):
    src = tmp_path / "mydata"
    src.mkdir()
    (src / "train.csv").write_text("text,label\nhello,1\n")
    res = cli("bundle", "--task", "toy", "--out", tmp_path / "b", "--data", src, "--data", "sample",
              "--include", src, "--no-wheels", "--json")
    assert res.code == 0, res.err
    result = json.loads(res.out)
    assert result["data"] == ["mydata", "sample"] and result["extra"] == ["extra/mydata"]
    home = tmp_path / "b" / "home"
    aliases = json.loads((home / "datasets.json").read_text())
    assert aliases["mydata"] == "data/mydata" and aliases[str(src)] == "data/mydata"
    assert "TEXTLAB_HOME" in (tmp_path / "b" / "env.sh").read_text()
    # the bundle moves to another machine (another path): names still resolve, fingerprints still match
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(tmp_path / "b", moved, copy_function=shutil.copy2)
    shutil.rmtree(src)
    monkeypatch.setenv("TEXTLAB_HOME", str(moved / "home"))
    got = resolve("toy", "mydata")
    assert got.kind == "local" and got.path == moved / "home" / "data" / "mydata"
    assert fingerprint(got.path) == fingerprint(tmp_path / "b" / "home" / "data" / "mydata")
    assert resolve("toy", str(src)).path == got.path  # the original path works too, via the alias


def test_bundle_bad_input(cli, toy, tmp_path):
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x").write_text("x")
    res = cli("bundle", "--task", "toy", "--out", tmp_path / "occupied", "--no-wheels")
    assert res.code == 2 and "not a textlab bundle" in res.err and len(res.err_lines) == 1
    res = cli("bundle", "--task", "nosuch", "--out", tmp_path / "b", "--no-wheels")
    assert res.code == 2 and "unknown task" in res.err
    res = cli("--offline", "bundle", "--task", "toy", "--out", tmp_path / "b2", "--data", "someone/dataset", "--no-wheels")
    assert res.code == 2 and "offline" in res.err and len(res.err_lines) == 1
    assert not (tmp_path / "b2").exists()  # nothing half-written
    res = cli("bundle", "--task", "toy", "--out", tmp_path / "b3", "--no-wheels", "--include", tmp_path / "nope")
    assert res.code == 2 and "--include" in res.err and not (tmp_path / "b3").exists()
    res = cli("bundle", "--task", "toy", "--out", tmp_path / "b4", "--no-wheels", "--", "--min-cout", "3")
    assert res.code == 2 and "--min-cout" in res.err and len(res.err_lines) == 1 and not (tmp_path / "b4").exists()


def test_filter_args_and_pins():
    known, bare = {"--min-count", "--lower", "--no-lower"}, {"--lower", "--no-lower"}
    assert _filter_args(["--min-count", "10", "--window", "5", "--lower"], known, bare) == ["--min-count", "10", "--lower"]
    assert _filter_args(["--min-count=3", "--other=1"], known, bare) == ["--min-count=3"]
    pins = requirement_pins()
    names = {p.split("==")[0] for p in pins}
    assert {"torch", "typer", "pluggy", "datasets", "pyarrow"} <= names
    assert all("==" in p for p in pins) and "textlab" not in names


def test_submit_dry_run_script_and_validation(cli, toy, tmp_path):
    from textlab.slurm import _TIME

    for ok in ("30", "120", "04:00:00", "100:00:00", "1-12", "1-12:00:00", "UNLIMITED", "5:30"):
        assert _TIME.match(ok), ok
    for bad in ("soon", "1-", "-1", "1:2:3:4"):
        assert not _TIME.match(bad), bad
    res = cli("submit", "--dry-run", "--json", "--runs-dir", tmp_path / "my runs", "--", "train", "toy", "--steps", "5")
    assert res.code == 0, res.err
    script = json.loads(res.out)["text"]
    # sbatch reads a path with a space only when quoted
    assert any(line.startswith('#SBATCH --output="') and "my runs" in line for line in script.splitlines())
    cases = [
        (("submit", "--dry-run", "--", "train", "toy", "--nproc", "2"), "textlab submit --nproc 2"),
        (("submit", "--dry-run", "--partition", "gpu a", "--", "train", "toy"), "no spaces"),
        (("submit", "--dry-run", "--sbatch", "constraint=a100", "--", "train", "toy"), "not an sbatch option"),
    ]
    for args, text in cases:
        res = cli(*args)
        assert res.code == 2 and len(res.err_lines) == 1 and text in res.err, (args, res.err)


def test_a_job_that_fails_on_bad_input_keeps_its_run_directory(cli, toy, tmp_path, monkeypatch):
    run_dir = tmp_path / "queued-run"
    (run_dir / "slurm").mkdir(parents=True)
    (run_dir / "slurm" / "job.sh").write_text("#!/bin/bash\n")
    (run_dir / "slurm-7.out").write_text("log\n")
    monkeypatch.setenv("TEXTLAB_RUN_DIR", str(run_dir))
    res = cli("train", "toy", "--fail")
    assert res.code == 2 and len(res.err_lines) == 1
    assert (run_dir / "slurm" / "job.sh").exists() and (run_dir / "slurm-7.out").exists()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "malformed" in info["error"]
