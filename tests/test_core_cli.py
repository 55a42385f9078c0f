"""The command line end to end, through the toy plugin installed as a real distribution."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_textlab, run_config


def only_run(root: Path, task: str = "toy") -> Path:
    runs = sorted((root / task).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_help_lists_verbs_and_the_third_party_task(cli, toy):
    res = cli("--help")
    assert res.code == 0
    for verb in ("prep", "vocab", "pairs", "train", "eval", "neighbors", "generate", "analyze", "plugins", "runs"):
        assert verb in res.out
    assert "toy" in res.out and "is the sum positive" in res.out
    res = cli("train", "toy", "--help")
    assert res.code == 0
    assert "--steps" in res.out and "--sweep" in res.out and "--resume" in res.out


def test_version_and_bare_command(cli):
    assert cli("--version").out.strip().startswith("textlab ")
    res = cli()
    assert res.code == 0 and "Usage" in res.out


def test_plugins_lists_version_and_registrations(cli, toy):
    res = cli("plugins", "--json")
    assert res.code == 0
    info = {p["name"]: p for p in json.loads(res.out)}
    assert info["toy"]["version"] == "0.3.1"
    assert info["toy"]["distribution"] == "textlab-toy"
    assert info["toy"]["status"] == "ok"
    assert info["toy"]["registers"] == {"tasks": ["toy"], "models": ["toy/linear"], "datasets": ["toy/sample"],
                                        "metrics": ["toy/toy_margin"], "embedders": ["toyhash"]}
    assert info["word2vec"]["registers"]["embedders"] == ["word2vec"]
    assert "csv" in info["textlab"]["registers"]["loggers"]
    table = cli("plugins").out
    assert "toy" in table and "0.3.1" in table


def test_train_writes_the_run_layout(cli, toy, tmp_path):
    res = cli("train", "toy", "--steps", "20", "--seed", "3", "--logger", "csv")
    assert res.code == 0, res.err
    run = only_run(tmp_path / "runs")
    assert run.name.endswith("-linear")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["task"] == "toy" and info["model"] == "linear"
    assert info["seed"] == 3 and info["torch_version"] and info["start"] and info["end"]
    assert info["best"]["metric"] == "valid/accuracy"
    config = run_config(run)
    assert config["steps"] == 20 and config["lr"] == 0.1 and config["seed"] == 3
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and all(set(r) == {"step", "epoch", "split", "name", "value", "time"} for r in records)
    assert {r["split"] for r in records} == {"train", "valid"}
    assert (run / "checkpoints" / "last.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "step,epoch,split,name,value,time" and len(csv_lines) == len(records) + 1


def test_eval_routes_a_run_dir_or_checkpoint_to_its_task(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "30").code == 0
    run = only_run(tmp_path / "runs")
    res = cli("eval", run, "--split", "valid", "--json")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["split"] == "valid" and 0 <= data["accuracy"] <= 1
    res = cli("eval", run / "checkpoints" / "last.pt")
    assert res.code == 0 and "toy accuracy on test" in res.out
    # the task's options are validated, and the task's --help is reachable through the artifact
    res = cli("eval", run, "--nonsense")
    assert res.code == 2 and len(res.err_lines) == 1 and "--nonsense" in res.err
    res = cli("eval", run, "--help")
    assert res.code == 0 and "--split" in res.out


def test_runs_and_analyze(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "20", "--name", "a").code == 0
    assert cli("train", "toy", "--steps", "20", "--lr", "0.5", "--name", "b").code == 0
    res = cli("runs", "--json")
    rows = json.loads(res.out)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}
    assert "finished" in cli("runs").out
    runs = sorted((tmp_path / "runs" / "toy").iterdir())
    res = cli("analyze", *runs)
    assert res.code == 0, res.err
    assert "valid" in res.out and "accuracy" in res.out and runs[1].name in res.out
    (made,) = (tmp_path / "runs" / "_compare").iterdir()  # a folder of its own, never the first run's plots/
    assert (made / "accuracy.png").stat().st_size > 1000 and (made / "learning_curves.png").exists()
    assert not (runs[0] / "plots").exists()
    out = tmp_path / "cmp"
    res = cli("analyze", tmp_path / "runs" / "toy", "--out", out, "--json")
    data = json.loads(res.out)
    assert len(data["runs"]) == 2 and any(p.endswith("loss.png") for p in data["plots"])
    assert (out / "loss.png").exists()


def test_sweep_makes_one_run_per_value_then_compares(cli, toy, tmp_path):
    res = cli("train", "toy", "--steps", "10", "--sweep", "lr=0.05,0.2", "--json")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert [s["values"] for s in data["sweep"]] == [{"lr": "0.05"}, {"lr": "0.2"}]
    runs = sorted((tmp_path / "runs" / "toy").iterdir())
    assert len(runs) == 2
    assert sorted(run_config(r)["lr"] for r in runs) == [0.05, 0.2]
    assert all("lr=" in r.name for r in runs)
    assert data["comparison"]["metrics"]
    res = cli("train", "toy", "--sweep", "nosuch=1,2")
    assert res.code == 2 and "nosuch" in res.err and len(res.err_lines) == 1


def test_resume_continues_exactly(cli, toy, tmp_path):
    import torch

    assert cli("train", "toy", "--steps", "20", "--name", "split").code == 0
    first = only_run(tmp_path / "runs")
    res = cli("train", "--resume", first, "--steps", "50")
    assert res.code == 0, res.err
    assert cli("train", "toy", "--steps", "50", "--name", "straight").code == 0
    straight = next(p for p in (tmp_path / "runs" / "toy").iterdir() if p.name.endswith("straight"))
    a = torch.load(first / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    assert a["train_state"]["loop"]["step"] == b["train_state"]["loop"]["step"] == 50
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    info = json.loads((first / "run.json").read_text())
    assert info["status"] == "finished" and info["resumes"][0]["changed"] == {"steps": 50}
    steps = [json.loads(line)["step"] for line in (first / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 50 and steps == sorted(steps)
    # resuming with the task named explicitly works too, and a finished run does no extra step
    assert cli("train", "toy", "--resume", first).code == 0
    assert torch.load(first / "checkpoints" / "last.pt", weights_only=True)["train_state"]["loop"]["step"] == 50


def test_ctrl_c_saves_last_and_marks_interrupted(toy_env, tmp_path):
    runs = tmp_path / "runs"
    env = dict(toy_env, TEXTLAB_RUNS=str(runs))
    proc = subprocess.Popen([sys.executable, "-m", "textlab", "train", "toy", "--steps", "400", "--step-delay", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = list(runs.glob("toy/*/metrics.jsonl"))
        if metrics and metrics[0].stat().st_size > 0:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    run = only_run(runs)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    import torch

    step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]["loop"]["step"]
    assert 0 < step < 400
    done = run_textlab(["train", "--resume", run, "--step-delay", "0"], env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]["loop"]["step"] == 400


def test_bad_input_is_one_line_and_leaves_nothing_half_written(cli, toy, tmp_path):
    cases = [
        (("train", "nosuchtask"), 2, "unknown task 'nosuchtask'"),
        (("train", "tyo"), 2, "did you mean 'toy'"),
        (("pairs", "toy"), 2, "task 'toy' does not support 'pairs'"),
        (("train", "toy", "--nosuch"), 2, "No such option"),
        (("train", "toy", "--steps", "zero"), 2, "--steps"),
        (("train", "toy", "--model", "cnn"), 2, "cnn"),
        (("train", "toy", "--data", "missing.csv"), 2, "no such file"),
        (("train", "toy", "--fail"), 2, "malformed"),
        (("train", "toy", "--logger", "nosuch"), 2, "unknown logger"),
        (("eval", "runs/toy/nope"), 2, "no such run directory or checkpoint"),  # a usage error, as the README says
        (("train", "--resume", "nope"), 2, "no such run directory"),
        (("analyze", "nope"), 2, "no such run directory"),
        (("nosuchverb",), 2, "No such command"),
    ]
    for args, code, text in cases:
        res = cli(*args)
        assert res.code == code, (args, res.err)
        assert len(res.err_lines) == 1, (args, res.err)
        assert text in res.err, (args, res.err)
        assert "Traceback" not in res.err
    assert not (tmp_path / "runs" / "toy").exists() or not any((tmp_path / "runs" / "toy").iterdir())


def test_python_dash_m_works(toy_env):
    proc = run_textlab(["plugins", "--json"], env=toy_env)
    assert proc.returncode == 0
    assert "toy" in {p["name"] for p in json.loads(proc.stdout)}


def test_a_resume_whose_weights_do_not_fit_puts_the_run_back(cli, toy, tmp_path):
    import torch

    assert cli("train", "toy", "--steps", "20").code == 0
    run = only_run(tmp_path / "runs")
    last = run / "checkpoints" / "last.pt"
    data = torch.load(last, weights_only=True)
    data["state_dict"]["emb.weight"] = torch.zeros(3, 3)  # as if the options now built another model
    torch.save(data, last)
    before = {n: (run / n).read_bytes() for n in ("run.json", "config.toml", "metrics.jsonl")}
    res = cli("train", "--resume", run, "--steps", "30")
    assert res.code == 1 and len(res.err_lines) == 1, res.err
    assert "its weights do not fit this model" in res.err and "size mismatch for emb.weight" in res.err
    assert "this one changed steps" in res.err and "Traceback" not in res.err
    # nothing lost: status, options and metrics as before the resume
    assert {n: (run / n).read_bytes() for n in before} == before
    assert json.loads(before["run.json"])["status"] == "finished"


def test_a_resume_keeps_the_seed(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "10").code == 0
    run = only_run(tmp_path / "runs")
    before = (run / "run.json").read_bytes()
    res = cli("train", "--resume", run, "--seed", "5")
    assert res.code == 2 and len(res.err_lines) == 1 and "keeps the run's seed (0)" in res.err
    assert (run / "run.json").read_bytes() == before


def test_a_resume_after_a_kill_drops_what_the_dead_process_logged_after_last_pt(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "20").code == 0
    run = only_run(tmp_path / "runs")
    info = json.loads((run / "run.json").read_text())
    info["status"] = "running"  # a process killed with -9 never marks its run
    (run / "run.json").write_text(json.dumps(info))
    with open(run / "metrics.jsonl", "a") as fh:  # what it logged after its last last.pt, and a torn line
        fh.write(json.dumps({"step": 25, "epoch": 3.1, "split": "train", "name": "loss", "value": 9.0, "time": 1}) + "\n")
        fh.write('{"step": 26, "spl')
    import shutil

    import torch

    before = (run / "metrics.jsonl").read_bytes()
    last = run / "checkpoints" / "last.pt"
    shutil.copy(last, tmp_path / "last.pt")
    data = torch.load(last, weights_only=True)
    data["state_dict"]["emb.weight"] = torch.zeros(3, 3)
    torch.save(data, last)
    res = cli("train", "--resume", run, "--steps", "30")  # refused after last.pt was read: nothing dropped
    assert res.code == 1 and "do not fit" in res.err and (run / "metrics.jsonl").read_bytes() == before
    shutil.copy(tmp_path / "last.pt", last)
    res = cli("train", "--resume", run, "--steps", "30")
    assert res.code == 0, res.err
    assert "dropped 2 metric records" in res.err  # the record and the torn line
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses: the torn one went too
    keys = [(r["step"], r["split"], r["name"]) for r in records]
    assert len(keys) == len(set(keys)) and max(k[0] for k in keys) == 30
    assert not any(r["value"] == 9.0 for r in records)


def test_a_sweep_checks_every_value_before_the_first_run(cli, toy, tmp_path):
    res = cli("train", "toy", "--steps", "10", "--sweep", "lr=0.1,0.2", "--sweep", "batch_size=8,many")
    assert res.code == 2 and len(res.err_lines) == 1, res.err
    assert "--sweep lr=0.1,batch_size=many" in res.err
    assert not (tmp_path / "runs" / "toy").exists()
    res = cli("train", "toy", "--sweep", "lr=0.1", "--sweep", "lr=0.2")
    assert res.code == 2 and "names lr twice" in res.err and len(res.err_lines) == 1
    res = cli("train", "toy", "--sweep", "fail=false,maybe")
    assert res.code == 2 and "a flag takes true or false" in res.err and len(res.err_lines) == 1
    res = cli("train", "toy", "--sweep", "lr=,")
    assert res.code == 2 and "gives no values" in res.err
    assert not (tmp_path / "runs" / "toy").exists()


def test_artifact_verb_help_for_a_task(cli, toy):
    res = cli("eval", "toy", "--help")
    assert res.code == 0 and "--split" in res.out


def test_ctrl_c_inside_an_artifact_verb_is_one_line(cli, toy, tmp_path, monkeypatch):
    import textlab
    from textlab.plugins import registry

    assert cli("train", "toy", "--steps", "10").code == 0
    run = only_run(tmp_path / "runs")

    def evaluate(artifact):
        raise KeyboardInterrupt

    evaluate.__annotations__ = {"artifact": textlab.Artifact, "return": dict}  # an artifact verb
    monkeypatch.setitem(registry().task("toy").verbs, "eval", evaluate)
    res = cli("eval", run)
    assert res.code == 130 and res.err_lines == ["error: interrupted"], res.err


def test_a_verb_a_plugin_adds_gets_its_help_from_the_plugin(cli):
    res = cli("export", "--help")
    assert res.code == 0 and "word2vec format" in res.out and "added by: word2vec" in res.out


def test_user_text_in_error_lines_is_not_rich_markup(cli, toy, tmp_path):
    for path in ("news [final]/train.csv", "x[/]"):
        res = cli("train", "toy", "--data", tmp_path / path)
        assert res.code == 2 and len(res.err_lines) == 1, res.err
        assert str(tmp_path / path) in res.err and "Traceback" not in res.err


def test_help_without_arguments_is_printed_once(cli, toy):
    for args in ((), ("train",), ("eval",)):
        res = cli(*args)
        assert res.code == 0 and res.out.count("Usage:") == 1, args


def test_runs_skips_a_run_json_it_did_not_write(cli, toy, tmp_path):
    assert cli("train", "toy", "--steps", "10").code == 0
    odd = tmp_path / "runs" / "toy" / "odd"
    odd.mkdir()
    (odd / "run.json").write_text("[1, 2]")
    weird = tmp_path / "runs" / "toy" / "weird"
    weird.mkdir()
    (weird / "run.json").write_text(json.dumps({"task": "toy", "best": "x", "status": "finished"}))
    res = cli("runs")
    assert res.code == 0, res.err
    assert "weird" in res.out and "odd" not in res.out


def test_a_run_still_training_is_not_resumed_beside_itself(cli, toy, tmp_path):
    import os

    assert cli("train", "toy", "--steps", "10").code == 0
    run = only_run(tmp_path / "runs")
    info = json.loads((run / "run.json").read_text())
    parent = os.getppid()  # a live process on this host, not this one
    info.update(status="running", pid=parent)
    (run / "run.json").write_text(json.dumps(info))
    res = cli("train", "--resume", run, "--steps", "20")
    assert res.code == 2 and f"still training (process {parent})" in res.err and len(res.err_lines) == 1


def test_typer_still_vendors_click_where_textlab_imports_it():
    """textlab imports typer's private copy of click in one place (textlab/_typer.py); a typer release
    that moves it fails here, not in a user's error handling."""
    from textlab import _typer

    assert issubclass(_typer.ClickUsageError, _typer.ClickException)
    assert _typer.NoArgsIsHelpError.__module__.startswith("typer._click")
    assert _typer.CompletionItem("x").value == "x"
