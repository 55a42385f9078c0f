"""recrnn's options on the redesigned core: defaults that follow the data, options that do not apply
refused, bounds on the work an evaluation may ask for, --time-budget / --patience, 0.1.0 records."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

from conftest import run_config

torch.set_num_threads(1)
FAST = ["--preset", "smoke", "--batch-size", "16", "--valid-max", "40", "--threads", "1"]


@pytest.fixture
def folder(cli, tmp_path) -> Path:
    out = tmp_path / "vc"
    res = cli("prep", "recrnn", "--out", out, "--statements", "6", "--chains", "2", "--train-max", "2",
              "--n-train", "200", "--n-valid", "4", "--n-test", "4")
    assert res.code == 0, res.err
    return out


def resolved(cli, *args) -> dict:
    res = cli("train", "recrnn", *args, "--print-config")
    assert res.code == 0, res.err
    return tomllib.loads(res.out)["options"]


def test_steps_and_eval_defaults_follow_the_data(cli, folder):
    """Issue #27: the embedded sample is a demo of about a minute; a data folder keeps the real defaults."""
    sample = resolved(cli, "--data", "sample")
    assert (sample["steps"], sample["eval_every"]) == (150, 50)
    real = resolved(cli, "--data", folder)
    assert (real["steps"], real["eval_every"]) == (3000, 100)
    given = resolved(cli, "--data", "sample", "--steps", "7", "--eval-every", "3")
    assert (given["steps"], given["eval_every"]) == (7, 3)
    # the preset's sizes and the CPU architecture defaults are resolved into the record
    assert {k: sample[k] for k in ("preset", "dim", "heads", "core", "mean_recurrence", "injection", "token_mix")} == {
        "preset": "cpu", "dim": 64, "heads": 4, "core": 2, "mean_recurrence": 8, "injection": "add", "token_mix": 3}
    base = resolved(cli, "--model", "baseline")
    assert "mean_recurrence" not in base and "coda_norm" not in base  # they do not apply to the baseline


@pytest.mark.parametrize("args,text", [
    (("train", "recrnn", "--aux-weight", "2"), "--aux-weight applies to --aux statements"),
    (("train", "recrnn", "--no-curriculum", "--promote-at", "0.5"), "--promote-at applies to --curriculum True"),
    (("train", "recrnn", "--model", "baseline", "--coda-norm"), "--coda-norm applies to --model recurrent"),
    (("train", "recrnn", "--model", "baseline", "--mean-recurrence", "4"), "--mean-recurrence applies"),
    (("train", "recrnn", "--lr", "0"), "--lr"),
    (("train", "recrnn", "--fixed-recurrence", "5000"), "--fixed-recurrence"),
    (("train", "recrnn", "--time-budget", "ten"), "--time-budget"),
    (("prep", "recrnn", "--task", "composition", "--statements", "8"), "--statements applies to --task varchain"),
    (("prep", "recrnn", "--task", "varchain", "--relations", "8"), "--relations applies to --task composition"),
    (("prep", "recrnn", "--statements", "8", "--chains", "2", "--test-max", "9"), "--test-max 9 must lie between"),
    (("prep", "recrnn", "--task", "composition", "--relations", "3", "--out-degree", "5"), "exceeds --relations"),
])
def test_options_that_cannot_apply_are_one_line(cli, args, text):
    res = cli(*args)
    assert res.code == 2 and len(res.err_lines) == 1 and text in res.err, res.err
    assert not Path("runs").exists() and not Path("data").exists()


def test_eval_bounds_the_work_and_refuses_what_does_not_apply(cli, folder):
    res = cli("train", "recrnn", "--data", folder, "--steps", "2", *FAST, "--json")
    assert res.code == 0, res.err
    run = json.loads(res.out)["run"]
    for args, text in (
            (("--steps", "1,50000"), "--steps 50000 is above the largest number of recurrence steps, 1024"),
            (("--exit", "kl", "--max-steps", "5000"), "--max-steps"),
            (("--state-draws", "1000"), "--state-draws"),
            (("--exit-threshold", "1e-3"), "--exit-threshold applies to --exit kl"),
            (("--exit", "kl", "--state-draws", "2"), "--state-draws applies to --exit none"),
            (("--exit", "kl", "--steps", "1,2"), "--steps applies to --exit none")):
        res = cli("eval", run, *args)
        assert res.code == 2 and len(res.err_lines) == 1 and text in res.err, (args, res.err)
    res = cli("eval", run, "--steps", "8,2,2", "--json")
    assert res.code == 0 and json.loads(res.out)["steps"] == [2, 8]


def test_time_budget_is_a_duration_of_the_whole_run(cli, folder):
    res = cli("train", "recrnn", "--data", folder, "--steps", "100000", "--eval-every", "1000", "--time-budget", "3s",
              *FAST, "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["result"]["stopped"] == "time_budget" and 1 <= out["result"]["steps"] < 100000
    assert run_config(Path(out["run"]))["time_budget"] == 3.0
    assert json.loads(Path(out["run"], "run.json").read_text())["wall_time"] < 30


def test_patience_stops_a_run_that_does_not_improve(cli, folder):
    res = cli("train", "recrnn", "--data", folder, "--steps", "1000", "--eval-every", "2", "--patience", "1",
              "--lr", "1e-30", *FAST, "--json")  # the weights do not move: the second evaluation is no better
    assert res.code == 0, res.err
    out = json.loads(res.out)["result"]
    assert out["stopped"] == "early_stop" and out["steps"] == 4


def test_promotions_only_at_scheduled_evaluations():
    """The final evaluation of a run that stops between evaluations does not move the curriculum, so
    the run resumed from there promotes at the same steps as a straight run."""
    from textlab_recrnn.train import Curriculum

    class Engine:
        eval_every = 10
        meta = {"extra": {}}

        class state:
            step = 25
            train_time = 0.0

    cur = Curriculum(0, 2, 0.8, "sample")
    metrics = {"accuracy_d0": 0.9}
    cur.on_eval(Engine, metrics, scheduled=True)
    assert cur.level == 0 and metrics["level"] == 0
    Engine.state.step = 30
    cur.on_eval(Engine, {"accuracy_d0": 0.9, "accuracy_d1": 0.85}, scheduled=True)
    assert cur.level == 2 and cur.promotions == [[30, 1], [30, 2]] and Engine.meta["extra"]["level"] == 2


def test_a_0_1_record_of_a_fine_tuning_run_drops_its_ignored_preset():
    from textlab_recrnn.config import TrainOptions

    assert "preset" not in TrainOptions.upgrade({"init": "runs/x", "preset": "cpu", "dim": 64})
    assert TrainOptions.upgrade({"preset": "smoke"}) == {"preset": "smoke"}


def test_the_model_is_checked_on_the_meta_device_before_any_data_is_read(cli, tmp_path):
    missing = tmp_path / "never-read"
    res = cli("train", "recrnn", "--data", "sample", "--dim", "24", "--heads", "5", "--print-config")
    assert res.code == 2 and "must split into" in res.err and len(res.err_lines) == 1
    res = cli("train", "recrnn", "--data", missing)
    assert res.code == 2 and "no such file or folder" in res.err
