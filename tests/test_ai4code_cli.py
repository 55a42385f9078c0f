"""ai4code end to end through the CLI: every model on the sample, eval, generate, analyze, bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import textlab

from conftest import plain
from textlab_ai4code import data as D
from textlab_ai4code.sample import load_sample

TINY = {
    "appended": [],
    "similar": [],
    "pointwise": [],
    "ranker": ["--trees", "20", "--leaves", "8"],
    "neural": ["--epochs", "2", "--dim", "16", "--buckets", "4096", "--batch-size", "16"],
}


def only_run(root: Path) -> Path:
    runs = sorted((root / "ai4code").iterdir())
    assert len(runs) == 1, runs
    return runs[0]



@pytest.mark.parametrize("model", list(TINY))
def test_each_model_trains_evaluates_and_writes_a_submission(cli, tmp_path, model):
    res = cli("train", "ai4code", "--data", "sample", "--model", model, "--threads", "1", *TINY[model], "--json")
    assert res.code == 0, res.err
    run = only_run(tmp_path / "runs")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["model"] == model
    assert info["best"]["metric"] == "valid/kendall_tau"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "valid"} <= {r["split"] for r in records}
    ckpt = textlab.load_checkpoint(run / "checkpoints" / "best.pt")
    assert ckpt["task"] == "ai4code" and ckpt["model"] == model and plain(ckpt)

    res = cli("eval", run, "--data", "sample", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    metrics = out["metrics"]["all"]
    assert metrics["notebooks"] == 40
    assert -1 <= metrics["kendall_tau"] <= 1 and 0 <= metrics["gap_accuracy"] <= 1 and metrics["position_mae"] >= 0
    assert Path(out["path"]).exists() and Path(out["path"]).parent == run / "eval"
    if model == "appended":
        assert metrics["kendall_tau"] < 0.4  # markdown at the end is far from right
    elif model in ("ranker", "pointwise"):
        assert metrics["kendall_tau"] > 0.8  # the sample is easy for a real model

    sub = tmp_path / "submission.csv"
    res = cli("generate", run, "--data", "sample", "--out", sub)
    assert res.code == 0, res.err
    rows = list(csv.DictReader(open(sub)))
    notebooks = {nb.id: nb for nb in D.load_notebooks(load_sample("test"))}
    assert [r["id"] for r in rows] == sorted(notebooks)
    for r in rows:
        assert sorted(r["cell_order"].split()) == sorted(notebooks[r["id"]].cell_ids)
    assert open(sub).readline().strip() == "id,cell_order"


def test_ranker_beats_the_baselines_on_a_local_folder_and_eval_reuses_its_split(cli, tmp_path):
    # a local folder in Kaggle layout: train + valid of the sample together, split by ancestor by train
    notebooks = D.load_notebooks(load_sample("train")) + D.load_notebooks(load_sample("valid"))
    D.write_layout(tmp_path / "nb", notebooks)
    taus = {}
    for model in ("similar", "ranker"):
        res = cli("train", "ai4code", "--data", tmp_path / "nb", "--model", model, "--threads", "1", *TINY[model],
                  "--name", model, "--json")
        assert res.code == 0, res.err
        taus[model] = json.loads(res.out)["best"]["value"]
    assert taus["ranker"] > taus["similar"]
    run = next((tmp_path / "runs" / "ai4code").glob("*-ranker-ranker"))
    res = cli("eval", run, "--data", tmp_path / "nb", "--split", "valid", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["metrics"]["all"]["kendall_tau"] == pytest.approx(taus["ranker"])  # the same 20% as in training
    valid_ids = {nb.id for nb in D.grouped_split(notebooks, 0.2, 42)[1]}
    assert out["metrics"]["all"]["notebooks"] == len(valid_ids)
    # generate reads test/ when a folder has one, and needs no orders
    test = D.load_notebooks(load_sample("test"))
    D.write_layout(tmp_path / "kaggle", test, folder="test")
    (tmp_path / "kaggle" / "test_orders.csv").unlink()
    res = cli("generate", run, "--data", tmp_path / "kaggle", "--out", tmp_path / "s.csv", "--json")
    assert res.code == 0, res.err and json.loads(res.out)["notebooks"] == len(test)
    # eval of that folder needs the orders: one line
    res = cli("eval", run, "--data", tmp_path / "kaggle")
    assert res.code == 2 and len(res.err_lines) == 1 and "orders" in res.err


def test_resume_of_a_fitted_model_does_nothing(cli, tmp_path):
    assert cli("train", "ai4code", "--model", "similar", "--threads", "1").code == 0
    run = only_run(tmp_path / "runs")
    before = (run / "checkpoints" / "best.pt").stat().st_mtime_ns
    res = cli("train", "--resume", run)
    assert res.code == 0, res.err and "nothing to resume" in res.err
    assert (run / "checkpoints" / "best.pt").stat().st_mtime_ns == before


def test_neural_resume_continues_exactly(cli, tmp_path):
    args = ["--model", "neural", "--threads", "1", "--dim", "8", "--buckets", "1024", "--batch-size", "32", "--limit", "64"]
    assert cli("train", "ai4code", *args, "--epochs", "1", "--name", "split").code == 0
    first = only_run(tmp_path / "runs")
    assert cli("train", "--resume", first, "--epochs", "2").code == 0
    assert cli("train", "ai4code", *args, "--epochs", "2", "--name", "straight").code == 0
    straight = next(p for p in (tmp_path / "runs" / "ai4code").iterdir() if p.name.endswith("straight"))
    a = textlab.load_checkpoint(first / "checkpoints" / "last.pt")
    b = textlab.load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["train_state"]["loop"]["step"] == b["train_state"]["loop"]["step"] == 4
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


def test_analyze_reports_structure_and_plots(cli, tmp_path):
    res = cli("analyze", "ai4code", "--data", "sample", "--out", tmp_path / "plots", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["notebooks"] == 160 and 0.3 < out["markdown_share"] < 0.7
    assert out["markdown_position"]["before_first_code"] > 0.1  # titles and introductions
    assert out["languages"]["english"] > 0
    assert sum(out["length_buckets"].values()) == 160
    assert (tmp_path / "plots" / "ai4code-analysis.png").stat().st_size > 1000  # --out is a folder, as in agnews
    assert json.loads((tmp_path / "plots" / "analysis.json").read_text())["notebooks"] == 160
    assert sorted(out["files"]) == sorted(str(p) for p in (tmp_path / "plots").iterdir())
    res = cli("analyze", "ai4code", "--data", "sample")
    assert res.code == 0 and "markdown share" in res.out and "cells per notebook" not in res.err


def test_analyze_plot_is_now_out_a_folder(cli, tmp_path):
    # 0.1.0: --plot FILE; now --out DIR (the old spelling is refused in one line naming the new one)
    res = cli("analyze", "ai4code", "--data", "sample", "--plot", tmp_path / "a.png")
    assert res.code == 2 and len(res.err_lines) == 1 and "--plot is now --out" in res.err, res.err
    (tmp_path / "a.png").write_text("a file")
    res = cli("analyze", "ai4code", "--data", "sample", "--out", tmp_path / "a.png")
    assert res.code == 2 and len(res.err_lines) == 1 and "give a folder" in res.err, res.err
    assert (tmp_path / "a.png").read_text() == "a file"


def test_language_guess():
    from textlab_ai4code.analysis import guess_language

    assert guess_language("This is the part where we look at the data and the model") == "english"
    assert guess_language("Dans cette partie nous allons voir les données et le modèle") == "french"
    assert guess_language("Загрузим данные и посмотрим на них") == "cyrillic"
    assert guess_language("データを読み込みます") == "chinese/japanese"
    assert guess_language("## 1") == "none"


def test_bad_inputs_are_one_line(cli, tmp_path):
    def one_line(res, code, text):
        assert res.code == code, (res.code, res.err)
        assert len(res.err_lines) == 1, res.err
        assert text in res.err, res.err

    one_line(cli("train", "ai4code", "--data", tmp_path / "nowhere"), 2, "no such")
    (tmp_path / "nbs").mkdir()
    (tmp_path / "nbs" / "a.ipynb").write_text("{}")
    one_line(cli("train", "ai4code", "--data", tmp_path / "nbs"), 2, "textlab prep ai4code --from-notebooks")
    one_line(cli("train", "ai4code", "--model", "nosuch"), 2, "nosuch")
    one_line(cli("train", "ai4code", "--data", "sample", "--valid-share", "1.5", "--model", "appended"), 2, "valid-share")
    assert not (tmp_path / "runs" / "ai4code").exists() or not any((tmp_path / "runs" / "ai4code").iterdir())
    one_line(cli("train", "ai4code", "--model", "neural", "--tokenizer", tmp_path / "no-tok"), 2, "no such local folder")
    (tmp_path / "tok").mkdir()
    res = cli("train", "ai4code", "--model", "neural", "--tokenizer", tmp_path / "tok")
    try:
        import transformers  # noqa: F401
    except ImportError:
        one_line(res, 2, "transformers")
    else:  # an empty folder has no tokenizer in it
        one_line(res, 2, "cannot load a tokenizer")
    # artifacts
    assert cli("train", "ai4code", "--model", "appended").code == 0
    run = only_run(tmp_path / "runs")
    one_line(cli("eval", run, "--data", tmp_path / "nowhere"), 2, "no such")
    one_line(cli("generate", run, "--out", tmp_path), 2, "is a folder")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    one_line(cli("eval", bad), 1, "not a textlab checkpoint")
    # an ai4code checkpoint whose vocabulary was lost
    assert cli("train", "ai4code", "--model", "similar", "--name", "sim").code == 0
    sim = next((tmp_path / "runs" / "ai4code").glob("*-sim"))
    ckpt = textlab.load_checkpoint(sim / "checkpoints" / "best.pt")
    ckpt["vocab"] = None
    torch.save(ckpt, tmp_path / "novocab.pt")
    one_line(cli("eval", tmp_path / "novocab.pt"), 1, "vocabulary")


# ============================================================================ review fixes
def interrupt_at(monkeypatch, name: str, when: int = 1, after: bool = False):
    """SIGINT to this process (as a terminal's Ctrl-C) at the `when`-th call of train.<name> (or rankfit.<name>)."""
    import os
    import signal

    from textlab_ai4code import rankfit, train

    T = rankfit if hasattr(rankfit, name) else train

    real, calls = getattr(T, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == when and not after:
            os.kill(os.getpid(), signal.SIGINT)
        out = real(*args, **kwargs)
        if len(calls) == when and after:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(T, name, wrapped)
    return lambda: monkeypatch.setattr(T, name, real)  # no more interrupts (monkeypatch.undo would undo the isolation)


@pytest.mark.parametrize("model, name, when, after", [
    ("ranker", "fit_booster", 2, False),  # stage 1: half 2 starts with the stop flag set (was an AttributeError)
    ("ranker", "fit_booster", 3, False),  # stage 2
    ("pointwise", "fit_pointwise", 1, True),  # no stop check inside: the fit ends, then stops
])
def test_ctrl_c_during_a_fit_stops_cleanly_and_resume_fits_again(cli, tmp_path, monkeypatch, model, name, when, after):
    stop_interrupting = interrupt_at(monkeypatch, name, when, after)
    res = cli("train", "ai4code", "--model", model, "--threads", "1", "--limit", "40", *TINY[model])
    assert res.code == 130, res.err
    assert "internal error" not in res.err and "nothing saved" not in res.err
    said = [line for line in res.err_lines if "interrupted" in line]
    assert len(said) == 1 and "last.pt is saved" in said[0] and "textlab train --resume" in said[0], res.err
    run = only_run(tmp_path / "runs")
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert not (run / "checkpoints" / "best.pt").exists()
    assert textlab.load_checkpoint(run / "checkpoints" / "last.pt")["extra"]["fitted"] is False
    res = cli("eval", run)  # nothing to evaluate yet: one line that says how to get it
    assert res.code == 1 and len(res.err_lines) == 1 and "fit was interrupted" in res.err and "--resume" in res.err
    stop_interrupting()
    res = cli("train", "--resume", run)  # fits again from the start, into the same run
    assert res.code == 0, res.err
    assert "fitting it again from the start" in res.err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["best"]["metric"] == "valid/kendall_tau"
    assert textlab.load_checkpoint(run / "checkpoints" / "best.pt")["extra"]["fitted"] is True
    assert cli("eval", run, "--limit", "3").code == 0


def test_fit_ranker_stopped_keeps_nothing(tmp_path, monkeypatch):
    import tempfile

    from textlab_ai4code import rankfit as R
    from textlab_ai4code.config import RankerConfig

    shards = tmp_path / "tmp"
    shards.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shards))  # where the shards go
    notebooks = D.load_notebooks(load_sample("train"))[:12]
    config = lambda: RankerConfig(trees=10, leaves=4, min_leaf=2)  # noqa: E731
    asked = []
    model, _, _ = R.fit_ranker(notebooks, config(), should_stop=lambda: asked.append(1) and False, log=lambda _: None)
    # asked after each notebook of each pass, before each fit and between its trees
    total = len(asked)
    assert model is not None and total >= 2 * 12 + 3 * 10
    assert not list(shards.iterdir())  # the shards are gone
    for answered in sorted({0, 5, 12, 13, 20, total // 2, total - 2, total - 1}):
        calls = []

        def should_stop():
            calls.append(1)
            return len(calls) > answered

        model, vocab, _ = R.fit_ranker(notebooks, config(), should_stop=should_stop, log=lambda _: None)
        assert model is None and vocab is None, answered
        assert len(calls) == answered + 1  # stopped at the first yes
        assert not list(shards.iterdir())


def tiny_folder(path: Path, n: int, *, extra: list | None = None) -> Path:
    """n notebooks whose markdown shares no word with another notebook's (so no n-gram is in two cells)."""
    nbs = []
    for k in range(n):
        w = f"word{k}"
        cells = [("markdown", f"# {w}title"), ("code", f"import {w}lib"), ("markdown", f"{w}plot {w}shows"),
                 ("code", f"{w}lib.plot()"), ("code", f"print({w}lib)")]
        nbs.append(D.kaggle_notebook(f"{k + 1:014x}", cells, ancestor=f"{k:08x}"))
    D.write_layout(path, nbs + (extra or []))
    return path


@pytest.mark.parametrize("n", [1, 3])
def test_ranker_and_pointwise_fit_tiny_data(cli, tmp_path, n):
    data = tiny_folder(tmp_path / "tiny", n)
    for model in ("ranker", "pointwise"):
        res = cli("train", "ai4code", "--data", data, "--model", model, "--valid-share", "0", "--threads", "1",
                  *TINY[model], "--name", model, "--json")
        assert res.code == 0, res.err
        assert "internal error" not in res.err
        run = next((tmp_path / "runs" / "ai4code").glob(f"*-{model}"))
        assert cli("eval", run, "--data", data).code == 0


def test_notebooks_without_code_or_markdown_are_skipped_in_training(cli, tmp_path):
    notebooks = D.load_notebooks(load_sample("train"))[:30]
    only_md = D.kaggle_notebook("ffffffffffff01", [("markdown", "# Just words"), ("markdown", "nothing to run")])
    only_code = D.kaggle_notebook("ffffffffffff02", [("code", "x = 1"), ("code", "print(x)")])
    D.write_layout(tmp_path / "mixed", notebooks + [only_md, only_code])
    for model in ("similar", "pointwise", "ranker"):
        res = cli("train", "ai4code", "--data", tmp_path / "mixed", "--model", model, "--valid-share", "0",
                  "--threads", "1", *TINY[model], "--name", model)
        assert res.code == 0, (model, res.err)
    run = next((tmp_path / "runs" / "ai4code").glob("*-pointwise"))
    res = cli("eval", run, "--json")  # trained on all of it: eval scores all of it (with the two it skipped)
    assert res.code == 0 and json.loads(res.out)["metrics"]["all"]["notebooks"] == 32, res.err
    res = cli("eval", run, "--split", "valid")
    assert res.code == 2 and len(res.err_lines) == 1 and "no validation part" in res.err, res.err
    # only notebooks with nothing to place: one line, and no run directory left
    D.write_layout(tmp_path / "none", [only_md, only_code])
    res = cli("train", "ai4code", "--data", tmp_path / "none", "--model", "pointwise", "--valid-share", "0")
    assert res.code == 2 and len(res.err_lines) == 1 and "both code and markdown" in res.err, res.err
    assert len(list((tmp_path / "runs" / "ai4code").iterdir())) == 3


def test_fitted_models_report_the_valid_score_and_the_split(cli, tmp_path):
    res = cli("train", "ai4code", "--model", "similar", "--threads", "1")
    assert res.code == 0, res.err
    assert "similar: valid/kendall_tau = 0." in res.err and "40 validation notebooks" in res.err
    assert "the sample's own train/valid splits" in res.err
    # the sample has its own splits: a folder's split options are refused there (0.1.0 ignored them)
    for args in (["--valid-share", "0.5"], ["--split-seed", "3"]):
        res = cli("train", "ai4code", "--model", "similar", *args)
        assert res.code == 2 and len(res.err_lines) == 1 and "applies to a folder" in res.err, res.err
    assert len(list((tmp_path / "runs" / "ai4code").iterdir())) == 1
    run = only_run(tmp_path / "runs")
    assert "valid_share" not in (run / "config.toml").read_text().replace("# valid_share", "")


def test_eval_and_generate_default_to_the_runs_own_data_and_keep_results_apart(cli, tmp_path):
    notebooks = D.load_notebooks(load_sample("train")) + D.load_notebooks(load_sample("valid"))
    D.write_layout(tmp_path / "a" / "nb", notebooks)
    D.write_layout(tmp_path / "b" / "nb", notebooks[:20])
    D.write_layout(tmp_path / "c" / "nb", notebooks[20:50])
    assert cli("train", "ai4code", "--data", tmp_path / "a" / "nb", "--model", "similar", "--threads", "1").code == 0
    run = only_run(tmp_path / "runs")
    best = json.loads((run / "run.json").read_text())["best"]["value"]
    res = cli("eval", run, "--json")  # the run's own folder, its validation part
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert "(the run's own data)" in res.err and out["split"] == "valid"
    assert out["metrics"]["all"]["kendall_tau"] == pytest.approx(best)
    assert Path(out["path"]) == run / "eval" / "metrics-valid.json"
    paths = set()
    for other in ("b", "c"):  # two folders both named nb: two result files
        res = cli("eval", run, "--data", tmp_path / other / "nb", "--json")
        assert res.code == 0, res.err
        out = json.loads(res.out)
        assert out["split"] == "all" and out["metrics"]["all"]["notebooks"] == (20 if other == "b" else 30)
        path = Path(out["path"])
        assert path.parent.parent == run / "eval" and path.parent.name.startswith("nb-")
        paths.add(path)
    assert len(paths) == 2 and all(p.exists() for p in paths)
    res = cli("generate", run, "--out", tmp_path / "sub.csv", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["notebooks"] == len(notebooks) and "(the run's own data)" in res.err
    # --out a folder: refused before any data is read or predicted
    res = cli("generate", run, "--out", tmp_path, "--data", tmp_path / "nowhere")
    assert res.code == 2 and len(res.err_lines) == 1 and "is a folder" in res.err


# ============================================================================ the new core (issue #22, #27)
def no_runs(root: Path) -> bool:
    return not (root / "ai4code").exists() or not any((root / "ai4code").iterdir())


def one_line(res, code, *texts):
    assert res.code == code, (res.code, res.err)
    assert len(res.err_lines) == 1, res.err
    for text in texts:
        assert text in res.err, res.err


@pytest.mark.parametrize("args, text", [
    (["--model", "ranker", "--epochs", "3"], "--epochs applies to --model neural or --model transformer, not --model ranker"),  # 0.1: ignored
    (["--model", "neural", "--trees", "5"], "--trees applies to --model ranker, not --model neural"),
    (["--model", "similar", "--lr", "0.1"], "--lr applies to --model ranker or --model neural"),
    (["--model", "pointwise", "--time-budget", "20m"], "--time-budget applies to --model neural"),
])
def test_an_option_of_another_model_is_refused(cli, tmp_path, args, text):
    one_line(cli("train", "ai4code", *args), 2, text)
    assert no_runs(tmp_path / "runs")


@pytest.mark.parametrize("args, text", [
    (["--lr", "0"], "--lr: 0 is not in the range"),  # 0.1: --learning-rate 0 crashed and left its run directory
    (["--lr", "-0.1", "--model", "neural"], "--lr: -0.1 is not in the range"),
    (["--negatives", "0"], "--negatives: 0 is not in the range 0<x<=1"),  # 0.1: silently meant every wrong gap
    (["--trees", "0"], "--trees"),
    (["--leaves", "1"], "--leaves"),
    (["--stages", "3"], "--stages"),
    (["--valid-share", "0.95", "--model", "appended"], "--valid-share"),
    (["--limit", "-1"], "--limit"),
    (["--model", "neural", "--warmup", "-1"], "--warmup"),
    (["--model", "neural", "--time-budget", "soon"], "--time-budget"),
    (["--model", "neural", "--hub"], "--hub"),
])
def test_a_value_that_cannot_work_is_refused_before_anything_runs(cli, tmp_path, args, text):
    one_line(cli("train", "ai4code", "--threads", "1", *args), 2, text)
    assert no_runs(tmp_path / "runs")


def test_learning_rate_is_now_lr_with_a_default_per_model(cli, tmp_path):
    one_line(cli("train", "ai4code", "--learning-rate", "0.05"), 2, "--learning-rate is now --lr")
    assert no_runs(tmp_path / "runs")
    ranker = cli("train", "ai4code", "--model", "ranker", "--print-config").out
    neural = cli("train", "ai4code", "--model", "neural", "--print-config").out
    assert "lr = 0.1\n" in ranker and "lr = 0.003\n" in neural
    similar = cli("train", "ai4code", "--model", "similar", "--print-config").out
    assert "lr =" not in similar and "trees =" not in similar and "epochs =" not in similar  # they do not apply
    res = cli("train", "ai4code", "--model", "ranker", "--lr", "0.3", "--limit", "30", "--trees", "10", "--threads", "1")
    assert res.code == 0, res.err
    run = only_run(tmp_path / "runs")
    assert textlab.load_checkpoint(run / "checkpoints" / "best.pt")["config"]["lr"] == 0.3


def test_a_ranker_checkpoint_of_0_1_reads_its_learning_rate():
    from textlab import config_from_dict
    from textlab_ai4code.config import RankerConfig

    assert config_from_dict(RankerConfig, {"learning_rate": 0.05, "trees": 7}).lr == 0.05


def test_sample_defaults_are_small_and_a_folder_keeps_the_real_ones(cli, tmp_path):
    def value(args, key):
        res = cli("train", "ai4code", *args, "--print-config")
        assert res.code == 0, res.err
        return next(line.split(" = ")[1] for line in res.out.splitlines() if line.startswith(f"{key} = "))

    D.write_layout(tmp_path / "nb", D.load_notebooks(load_sample("train"))[:20])
    assert value(["--model", "ranker"], "trees") == "50"  # 0.1: 200 trees, 83 s on the sample
    assert value(["--model", "ranker", "--data", str(tmp_path / "nb")], "trees") == "200"
    assert value(["--model", "neural"], "epochs") == "4"
    assert value(["--model", "neural", "--data", str(tmp_path / "nb")], "epochs") == "8"
    assert value(["--model", "ranker", "--trees", "7"], "trees") == "7"


def test_time_budget_is_a_duration(cli, tmp_path):
    # 0.1: minutes as a number ("20m" was refused); now 90s, 20m, 1h30m or seconds
    res = cli("train", "ai4code", "--model", "neural", "--time-budget", "20m", "--print-config")
    assert res.code == 0 and "time_budget = 1200.0" in res.out, res.err
    res = cli("train", "ai4code", "--model", "neural", "--time-budget", "30", "--print-config")
    assert res.code == 0 and "time_budget = 30.0" in res.out
    assert "a bare number is now seconds" in res.err  # the unit changed: said when a bare number is given
    res = cli("train", "ai4code", "--model", "neural", "--time-budget", "0", "--print-config")
    assert res.code == 0 and "time_budget = " not in res.out.replace("# time_budget", "")
    res = cli("train", "ai4code", "--model", "neural", "--time-budget", "1s", "--epochs", "50", "--dim", "8",
              "--buckets", "256", "--limit", "20", "--threads", "1", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["result"]["stopped"] == "time_budget"


def test_a_run_of_0_1_gets_its_options_in_todays_names_and_units(cli, tmp_path):
    assert cli("train", "ai4code", "--model", "appended", "--name", "old").code == 0
    run = only_run(tmp_path / "runs")
    (run / "config.toml").unlink()
    base = {"data": "sample", "valid_share": 0.2, "split_seed": 42, "limit": 12, "trees": 10, "leaves": 63,
            "learning_rate": 0.05, "negatives": 0.15, "stages": 2, "epochs": 1, "lr": 0.003, "batch_size": 8,
            "dim": 16, "buckets": 1024, "time_budget": 0.5, "tokenizer": "hash", "hub": False, "seed": 0,
            "device": "auto", "threads": None, "logger": []}

    def resolved(model, **changes):
        (run / "config.json").write_text(json.dumps({**base, "model": model, **changes}))
        res = cli("train", "--resume", run, "--print-config")
        assert res.code == 0, res.err
        return res.out

    out = resolved("ranker")
    assert "lr = 0.05\n" in out  # the ranker's --learning-rate is --lr now
    assert "\nvalid_share =" not in out and "\nsplit_seed =" not in out  # stored by 0.1 for the sample too
    assert "valid_share = 0.2" in resolved("ranker", data=str(run.parent.parent.parent))  # a folder: kept
    assert "lr = 0.1\n" in resolved("ranker", learning_rate=None)  # its default, not the neural --lr of 0.1
    out = resolved("neural")
    assert "lr = 0.003\n" in out and "time_budget = 30.0" in out  # minutes then, seconds now
    assert "time_budget = " not in resolved("neural", time_budget=0.0).replace("# time_budget", "")  # 0: none
