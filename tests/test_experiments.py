"""Experiments a person can write down, repeat, compare and hand in (issue #23): config files,
`--print-config`, config.toml, rerun, diff, report, logs outside a terminal, runs --status/--prune,
analyze's own folder, shell completion, TensorBoard and MLflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import run_config, run_textlab


def runs_of(root: Path, task: str = "toy") -> list[Path]:
    return sorted(p for p in (root / task).iterdir() if (p / "run.json").exists()) if (root / task).exists() else []


# ============================================================================ config files
def test_a_config_file_with_a_grid_and_command_line_overrides(cli, toy, tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text('steps = 12\nlr = 0.3\nseed = 5\n[sweep]\nbatch_size = [8, 16]\n')
    res = cli("train", "toy", "--config", exp, "--lr", "0.2", "--json")
    assert res.code == 0, res.err
    runs = runs_of(tmp_path / "runs")
    assert len(runs) == 2
    configs = [run_config(r) for r in runs]
    assert sorted(c["batch_size"] for c in configs) == [8, 16]
    assert all(c["steps"] == 12 and c["lr"] == 0.2 and c["seed"] == 5 for c in configs)  # the command line wins


def test_print_config_is_the_resolved_options_and_config_toml_reads_back(cli, toy, tmp_path):
    res = cli("train", "toy", "--steps", "7", "--print-config")
    assert res.code == 0 and not (tmp_path / "runs").exists(), res.err
    printed = tomllib.loads(res.out)
    assert printed["task"] == "toy" and printed["options"]["steps"] == 7
    assert printed["options"]["lr"] == 0.1 and printed["options"]["batch_size"] == 32  # defaults included
    assert "null" not in res.out and printed["core"]["seed"] == 0
    assert cli("train", "toy", "--steps", "7").code == 0
    (run,) = runs_of(tmp_path / "runs")
    stored = tomllib.loads((run / "config.toml").read_text())
    assert stored["options"] == printed["options"]
    res = cli("train", "--config", run / "config.toml", "--print-config")  # the task comes from the file
    assert res.code == 0 and tomllib.loads(res.out)["options"] == printed["options"], res.err


def test_a_yaml_config(cli, toy, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("options:\n  steps: 9\n  lr: 0.05\ncore:\n  seed: 2\n")
    res = cli("train", "toy", "--config", exp, "--print-config")
    assert res.code == 0, res.err
    printed = tomllib.loads(res.out)
    assert printed["options"]["steps"] == 9 and printed["options"]["lr"] == 0.05 and printed["core"]["seed"] == 2


@pytest.mark.parametrize("text, words", [
    ("steps = 12\nlr = = 3\n", ["not valid TOML", "line 2"]),
    ('steps = "many"\n', ["steps", "'many' is not an integer"]),
    ("stepz = 12\n", ["unknown option 'stepz'", "steps"]),
    ('task = "gla"\n', ["config of task 'gla'"]),
    ("[sweep]\nlr = [0.1, 0]\n", ["lr=0", "range"]),
])
def test_a_bad_config_file_is_one_line_and_writes_nothing(cli, toy, tmp_path, text, words):
    exp = tmp_path / "bad.toml"
    exp.write_text(text)
    res = cli("train", "toy", "--config", exp)
    assert res.code == 2 and len(res.err_lines) == 1, res.err
    for w in words:
        assert w in res.err
    assert not (tmp_path / "runs").exists()


def test_a_bad_yaml_file_says_where(cli, toy, tmp_path):
    exp = tmp_path / "bad.yaml"
    exp.write_text("steps: 3\nlr: [0.1\n")
    res = cli("train", "toy", "--config", exp)
    assert res.code == 2 and len(res.err_lines) == 1 and "line" in res.err and "column" in res.err, res.err


# ============================================================================ rerun, diff
def test_rerun_with_a_change_and_diff_shows_it_first(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "10", "--lr", "0.2").code == 0
    (first,) = runs_of(tmp_path / "runs")
    res = cli("rerun", first, "--set", "lr=0.05", "--set", "batch_size=16", "--json")
    assert res.code == 0, res.err
    second = Path(json.loads(res.out)["run"])
    assert run_config(second)["lr"] == 0.05 and run_config(second)["steps"] == 10
    assert json.loads((second / "run.json").read_text())["parent"] == str(first.resolve())
    res = cli("diff", first, second, "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)["rows"]
    differ = [r for r in rows if not r["same"]]
    assert rows[: len(differ)] == differ  # the differing rows first
    keys = {(r["section"], r["key"]) for r in differ}
    assert ("option", "lr") in keys and ("option", "batch_size") in keys
    assert ("option", "steps") not in keys and ("run", "seed") not in keys
    assert {("run", "data_fingerprint"), ("run", "git_commit")} <= {(r["section"], r["key"]) for r in rows}
    assert any(r["section"] == "metric" for r in rows)
    res = cli("diff", first, second)
    assert res.code == 0 and "option: lr" in res.out


def test_rerun_and_diff_of_what_is_not_a_run_are_one_line(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "5").code == 0
    (run,) = runs_of(tmp_path / "runs")
    for args in (("rerun", tmp_path), ("rerun", "nope"), ("diff", run, tmp_path / "x"),
                 ("rerun", run, "--set", "stepz=3"), ("rerun", run, "--set", "steps"),
                 ("rerun", run, "--set", "steps=-1"), ("report", tmp_path / "nothing", "-o", tmp_path / "r.html")):
        res = cli(*args)
        assert res.code == 2 and len(res.err_lines) == 1, (args, res.err)
    assert len(runs_of(tmp_path / "runs")) == 1 and not (tmp_path / "r.html").exists()
    assert "did you mean" in cli("rerun", run, "--set", "stepz=3").err


# ============================================================================ report
def _report(cli, tmp_path) -> Path:
    for lr in ("0.2", "0.05"):
        assert cli("train", "toy", "--steps", "20", "--lr", lr).code == 0
    runs = runs_of(tmp_path / "runs")
    assert cli("eval", runs[0]).code == 0  # an eval table for the report
    out = tmp_path / "report.html"
    res = cli("report", *runs, "-o", out)
    assert res.code == 0, res.err
    return out


def test_the_report_is_one_self_contained_file(cli, toy, tmp_path):
    text = _report(cli, tmp_path).read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text
    assert "http://" not in text and "https://" not in text  # no network
    assert text.count("data:image/png;base64,") >= 2  # the learning curves, inline
    assert "Options that differ" in text and "<td class=\"diff\">" in text and "lr" in text
    assert "eval: eval" in text and "accuracy" in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _load_in_chromium(page: Path, shot: Path, profile: Path) -> list[str]:
    """Open `page` in headless Chromium, write a screenshot, return its console messages."""
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1200,2400",
         f"--screenshot={shot}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (make test installs Debian's chromium with "
                                                "scripts/browser-local.sh; it needs root and apt)")
def test_the_report_loads_in_a_real_browser_without_errors(cli, toy, tmp_path):
    import numpy as np
    from matplotlib.image import imread

    bad = tmp_path / "bad.html"  # the harness itself: a page with an error is seen as one
    bad.write_text("<html><body><script>console.error('seen'); missing();</script></body></html>")
    assert any("seen" in m for m in _load_in_chromium(bad, tmp_path / "bad.png", tmp_path / "profile-bad"))
    report = _report(cli, tmp_path)
    shot = tmp_path / "shot.png"
    messages = _load_in_chromium(report, shot, tmp_path / "profile")
    assert messages == []
    pixels = imread(shot)
    assert pixels.shape[0] >= 1000 and float(np.std(pixels)) > 0.05  # not blank: text, tables and curves


# ============================================================================ logs outside a terminal
def test_outside_a_terminal_training_logs_a_line_per_evaluation(toy_env, tmp_path):
    env = {k: v for k, v in toy_env.items() if k != "TEXTLAB_PROGRESS"}
    proc = run_textlab(["train", "toy", "--steps", "30", "--eval-every", "10"],
                       env={**env, "TEXTLAB_RUNS": str(tmp_path / "runs")}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("train toy: step")]
    (run,) = runs_of(tmp_path / "runs")
    evals = {r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "valid"}
    assert len(lines) == len(evals) >= 3 and "step 30/30" in lines[-1], proc.stderr  # one line per evaluation
    assert "| valid loss" in lines[-1] and "accuracy" in lines[-1] and "samples/s" in lines[0]
    assert "\x1b[" not in proc.stderr  # plain text, no terminal codes
    assert "final valid/accuracy" in proc.stdout and "best" in proc.stdout  # the result, on stdout


def test_long_stages_outside_a_terminal_print_a_line_every_tenth(capsys, monkeypatch):
    from textlab import console

    monkeypatch.delenv("TEXTLAB_PROGRESS", raising=False)
    with console.progress(1000, "prep", unit="lines") as bar:
        for _ in range(100):
            bar.advance(10)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("prep:")]
    assert len(lines) == 10 and lines[0].startswith("prep: 10% (100/1,000 lines)") and "100%" in lines[-1]


# ============================================================================ housekeeping
def _statuses(cli, toy_runs: Path) -> None:
    for args in (("--steps", "5"), ("--steps", "5", "--fail")):
        cli("train", "toy", *args, "--name", "x")


def test_runs_status_filter_and_prune(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "5").code == 0
    assert cli("train", "toy", "--steps", "5", "--name", "gone").code == 0
    gone = next(r for r in runs_of(tmp_path / "runs") if r.name.endswith("gone"))
    info = json.loads((gone / "run.json").read_text())
    info.update(status="failed", error="boom")
    (gone / "run.json").write_text(json.dumps(info))
    res = cli("runs", "--status", "failed", "--json")
    assert res.code == 0 and [Path(r["path"]).name for r in json.loads(res.out)] == [gone.name]
    assert cli("runs", "--status", "lost").code == 2
    res = cli("runs", "--prune")  # no terminal to ask: it needs --yes
    assert res.code == 2 and "--yes" in res.err and gone.exists()
    res = cli("runs", "--prune", "--yes")
    assert res.code == 0 and not gone.exists() and len(runs_of(tmp_path / "runs")) == 1


def test_analyze_writes_into_a_folder_of_its_own_sorted_by_the_monitor(cli, toy, tmp_path):
    res = cli("train", "toy", "--steps", "20", "--sweep", "lr=0.01,0.3", "--json")
    assert res.code == 0, res.err
    runs = runs_of(tmp_path / "runs")
    before = {r: sorted(p.name for p in r.rglob("*")) for r in runs}
    res = cli("analyze", *runs, "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert Path(out["out"]).parent == tmp_path / "runs" / "_compare" and (Path(out["out"]) / "comparison.json").exists()
    assert before == {r: sorted(p.name for p in r.rglob("*")) for r in runs}  # nothing written into the runs
    best = {r["run"]: r["best"] for r in out["metrics"] if (r["split"], r["metric"]) == ("valid", "accuracy")}
    ordered = [Path(p).name for p in out["runs"]]
    assert [best[n] for n in ordered] == sorted(best.values(), reverse=True) and out["monitor"] == "valid/accuracy"


def test_legends_stay_readable_with_twenty_runs(tmp_path):
    from textlab.compare import run_colors, short_labels

    runs = [tmp_path / f"20261207-1010{i:02d}-linear-lr={i / 100:g}" for i in range(20)]
    labels = short_labels(runs)
    assert labels == [f"lr={i / 100:g}" for i in range(20)]  # the shared timestamp date and model dropped
    assert len(set(run_colors(20))) == 20 and len(set(run_colors(35))) == 35


# ============================================================================ shell completion
def _complete(words: str, env: dict) -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    proc = subprocess.run([sys.executable, "-m", "textlab"], capture_output=True, text=True, timeout=60,
                          env={**env, "_TEXTLAB_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    return proc.stdout.split()


def test_completion_of_tasks_runs_and_options(cli, toy, toy_env, tmp_path):
    assert cli("train", "toy", "--steps", "5").code == 0
    (run,) = runs_of(tmp_path / "runs")
    env = {**toy_env, "TEXTLAB_RUNS": str(tmp_path / "runs")}
    assert "toy" in _complete("textlab train t", env)
    assert "--steps" in _complete("textlab train toy --st", env)
    assert str(run) in _complete("textlab eval ", env)
    assert str(run) in _complete("textlab rerun ", env)
    res = cli("--help")
    assert "--install-completion" in res.out


# ============================================================================ trackers
def test_tensorboard_logger_writes_scalars_and_hparams(cli, toy, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: F401

    assert cli("train", "toy", "--steps", "20", "--logger", "tensorboard").code == 0
    (run,) = runs_of(tmp_path / "runs")
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    assert "accuracy/valid" in acc.Tags()["scalars"]
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    plugins = {v.metadata.plugin_data.plugin_name for f in (run / "tensorboard").rglob("events.out.tfevents*")
               for event in EventFileLoader(str(f)).Load() for v in event.summary.value}
    assert "hparams" in plugins


def test_mlflow_logger_round_trips_through_mlflows_own_client(cli, toy, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli("train", "toy", "--steps", "20", "--lr", "0.2", "--logger", "mlflow").code == 0
    (run,) = runs_of(tmp_path / "runs")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("textlab-toy")
    (found,) = client.search_runs([exp.experiment_id])
    assert found.info.run_name == run.name and found.info.status == "FINISHED"
    assert found.data.params["lr"] == "0.2" and found.data.params["steps"] == "20"
    history = client.get_metric_history(found.info.run_id, "valid/accuracy")
    logged = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if (r["split"], r["name"]) == ("valid", "accuracy")]
    assert [(m.step, round(m.value, 6)) for m in history] == [(r["step"], round(r["value"], 6)) for r in logged]


def test_a_config_file_is_refused_with_a_resume(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "5").code == 0
    (run,) = runs_of(tmp_path / "runs")
    exp = tmp_path / "exp.toml"
    exp.write_text("steps = 9\n")
    before = (run / "config.toml").read_text()
    for args in (("train", "--resume", run, "--config", exp), ("train", "--config", exp, "--resume", run)):
        res = cli(*args)
        assert res.code == 2 and len(res.err_lines) == 1 and "--config starts a new run" in res.err, res.err
    assert (run / "config.toml").read_text() == before
