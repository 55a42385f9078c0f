"""ai4code end to end through the CLI: every model on the sample, eval, generate, analyze, bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

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


def plain(obj) -> bool:
    """Only tensors and plain values (what weights_only loading allows and our checkpoints promise)."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and plain(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(plain(v) for v in obj)
    return obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor))


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
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
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
    a = torch.load(first / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    assert a["train_state"]["loop"]["step"] == b["train_state"]["loop"]["step"] == 4
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


def test_analyze_reports_structure_and_plots(cli, tmp_path):
    res = cli("analyze", "ai4code", "--data", "sample", "--plot", tmp_path / "a.png", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["notebooks"] == 160 and 0.3 < out["markdown_share"] < 0.7
    assert out["markdown_position"]["before_first_code"] > 0.1  # titles and introductions
    assert out["languages"]["english"] > 0
    assert sum(out["length_buckets"].values()) == 160
    assert (tmp_path / "a.png").stat().st_size > 1000
    res = cli("analyze", "ai4code", "--data", "sample")
    assert res.code == 0 and "markdown share" in res.out and "cells per notebook" not in res.err


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
    ckpt = torch.load(sim / "checkpoints" / "best.pt", weights_only=True)
    ckpt["vocab"] = None
    torch.save(ckpt, tmp_path / "novocab.pt")
    one_line(cli("eval", tmp_path / "novocab.pt"), 1, "vocabulary")
