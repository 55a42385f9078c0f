"""recrnn through the command line: prep, analyze, train (both modes, baseline, resume, Ctrl-C), eval."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

import textlab

torch.set_num_threads(1)
FAST = ["--preset", "smoke", "--batch-size", "16", "--eval-every", "10", "--valid-max", "40", "--threads", "1"]


def runs_of(root: Path) -> list[Path]:
    return sorted((root / "recrnn").iterdir()) if (root / "recrnn").exists() else []


@pytest.fixture
def folder(cli, tmp_path) -> Path:
    out = tmp_path / "vc"
    res = cli("prep", "recrnn", "--task", "varchain", "--out", out, "--statements", "6", "--chains", "2",
              "--train-max", "2", "--n-train", "400", "--n-valid", "8", "--n-test", "12", "--seed", "5")
    assert res.code == 0, res.err
    return out


def test_prep_is_deterministic_and_writes_the_original_format(cli, tmp_path, folder):
    again = tmp_path / "again"
    res = cli("prep", "recrnn", "--out", again, "--statements", "6", "--chains", "2", "--train-max", "2",
              "--n-train", "400", "--n-valid", "8", "--n-test", "12", "--seed", "5", "--json")
    assert res.code == 0 and json.loads(res.out)["records"] == {"train": 400, "valid": 40, "test": 60}
    for name in ("train", "valid", "test", "vocab"):
        assert (folder / f"{name}.json").read_bytes() == (again / f"{name}.json").read_bytes(), name
    other = tmp_path / "other"
    assert cli("prep", "recrnn", "--out", other, "--statements", "6", "--chains", "2", "--train-max", "2",
               "--n-train", "400", "--n-valid", "8", "--n-test", "12", "--seed", "6").code == 0
    assert (folder / "train.json").read_bytes() != (other / "train.json").read_bytes()
    rec = json.loads((folder / "test.json").read_text())[0]
    assert set(rec) == {"input_text", "target_text", "type", "difficulty"}
    assert rec["target_text"].startswith(rec["input_text"]) and rec["target_text"].endswith("</a>")


def test_prep_grokked_style_and_analyze(cli, tmp_path):
    out = tmp_path / "comp"
    res = cli("prep", "recrnn", "--task", "composition", "--out", out, "--entities", "200", "--relations", "10",
              "--out-degree", "5", "--phi", "1.0", "--test-size", "20")
    assert res.code == 0, res.err
    assert len(json.loads((out / "vocab.json").read_text())) == 216
    res = cli("prep", "recrnn", "--task", "composition", "--out", tmp_path / "tiny", "--entities", "10",
              "--relations", "3", "--out-degree", "2")
    assert res.code == 2 and "no test_inferred_ood" in res.err
    res = cli("analyze", "recrnn", "--data", out, "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["splits"]["test"]["types"]["test_inferred_ood"] > 0
    assert report["splits"]["train"]["difficulty"] == {}
    res = cli("analyze", "recrnn", "--data", "sample")
    assert res.code == 0 and "difficulties" in res.out and "0:" in res.out and "chance" in res.out


def test_train_eval_single_mode_end_to_end(cli, tmp_path, folder):
    res = cli("train", "recrnn", "--data", folder, "--steps", "30", *FAST, "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    run = Path(out["run"])
    assert out["status"] == "finished" and out["result"]["steps"] == 30
    names = {(r["split"], r["name"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    for metric in ("answer_accuracy", "answer_loss", "loss", "recurrence"):
        assert ("train", metric) in names
    for metric in ("accuracy_id", "accuracy_ood", "accuracy_d0", "accuracy_d4", "level"):
        assert ("valid", metric) in names
    res = cli("eval", run, "--steps", "1,2,4,8", "--json")
    assert res.code == 0, res.err
    table = json.loads(res.out)
    assert table["steps"] == [1, 2, 4, 8]
    assert table["columns"] == ["d0", "d1", "d2", "d3", "d4", "id", "ood", "all"]
    assert table["counts"]["ood"] == 24 and table["chance"] == pytest.approx(0.1)
    assert all(0.0 <= v <= 1.0 for row in table["accuracy"].values() for v in row.values())
    files = [Path(f) for f in table["files"]]
    assert all(f.exists() for f in files)
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_rows = files[1].read_text().splitlines()
    assert csv_rows[0] == "steps,d0,d1,d2,d3,d4,id,ood,all" and len(csv_rows) == 5
    # the same seeds give the same table; the rich table marks the training mean
    again = json.loads(cli("eval", run, "--steps", "1,2,4,8", "--json").out)
    assert again["accuracy"] == table["accuracy"] and again["raw_correct"] == table["raw_correct"]
    shown = cli("eval", run, "--steps", "1,4")
    assert shown.code == 0 and "4 *" in shown.out and "chance 0.10" in shown.out
    # on other data (same vocabulary, other programs): its own folder, the run's own table stays
    other = tmp_path / "vc-other"
    assert cli("prep", "recrnn", "--task", "varchain", "--out", other, "--statements", "6", "--chains", "2",
               "--train-max", "2", "--n-train", "400", "--n-valid", "8", "--n-test", "12", "--seed", "9").code == 0
    before = files[0].read_bytes()
    res = cli("eval", run, "--data", other, "--steps", "1,2", "--json")
    assert res.code == 0, res.err
    theirs = [Path(f) for f in json.loads(res.out)["files"]]
    assert theirs[0].parent.parent == files[0].parent and theirs[0].parent.name.startswith("vc-other-")
    assert all(f.exists() for f in theirs) and files[0].read_bytes() == before
    # another split or --limit: files of their own, the test table stays
    res = cli("eval", run, "--split", "valid", "--limit", "2", "--steps", "1", "--json")
    assert res.code == 0, res.err
    assert Path(json.loads(res.out)["files"][0]).name == "recrnn_steps-valid-limit2.json"
    assert files[0].read_bytes() == before
    res = cli("eval", run, "--exit", "kl", "--exit-threshold", "5e-4", "--max-steps", "6", "--json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)["rows"]
    assert sum(rows["all"]["histogram"].values()) == 60
    assert all(1 <= int(k) <= 6 for k in rows["all"]["histogram"])
    assert rows["ood"]["n"] == 24 and "d3" in rows


def test_train_metrics_every_20_steps_of_the_global_count_and_at_evaluations(cli, folder):
    res = cli("train", "recrnn", "--data", folder, "--steps", "60", *FAST, "--eval-every", "25", "--json")
    assert res.code == 0, res.err
    records = [json.loads(line) for line in (Path(json.loads(res.out)["run"]) / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in records if r["split"] == "train"}) == [20, 25, 40, 50, 60]


def test_kl_exit_thresholds_bound_the_exit_step(cli, folder):
    assert cli("train", "recrnn", "--data", folder, "--steps", "10", *FAST).code == 0
    run = runs_of(Path("runs"))[0]
    never = json.loads(cli("eval", run, "--exit", "kl", "--exit-threshold", "0", "--max-steps", "5", "--json").out)
    always = json.loads(cli("eval", run, "--exit", "kl", "--exit-threshold", "1e9", "--max-steps", "5",
                            "--min-steps", "2", "--json").out)
    assert never["rows"]["all"]["histogram"] == {"5": 60}
    assert always["rows"]["all"]["histogram"] == {"2": 60}
    assert never["rows"]["all"]["accuracy"] == never["rows"]["all"]["accuracy_at_max"]


def test_full_mode_baseline_fixed_recurrence_and_aux(cli, folder):
    for i, extra in enumerate((["--mode", "full"], ["--model", "baseline"], ["--fixed-recurrence", "3"],
                               ["--aux", "statements"],
                               ["--no-curriculum", "--injection", "concat", "--coda-norm", "--token-mix", "0", "--norm",
                                "prenorm"])):
        res = cli("train", "recrnn", "--data", folder, "--steps", "10", *FAST, *extra, "--name", f"n{i}", "--json")
        assert res.code == 0, (extra, res.err)
    # in the order they were made (runs made within one second would sort by label)
    runs = sorted(runs_of(Path("runs")), key=lambda r: r.name.rsplit("-", 1)[1])
    assert [r.name.split("-", 2)[2].rsplit("-", 1)[0] for r in runs] == [
        "recurrent-full", "baseline-single", "recurrent-single-r3", "recurrent-single", "recurrent-single"]
    ckpt = textlab.load_checkpoint(runs[1] / "checkpoints" / "best.pt")
    looped = textlab.load_checkpoint(runs[0] / "checkpoints" / "best.pt")
    assert ckpt["model"] == "baseline" and not ckpt["extra"]["looped"]
    assert abs(ckpt["extra"]["parameters"] - looped["extra"]["parameters"]) / looped["extra"]["parameters"] < 0.01
    rec = [json.loads(x) for x in (runs[2] / "metrics.jsonl").read_text().splitlines()]
    assert {r["value"] for r in rec if r["name"] == "recurrence"} == {3.0}
    aux = [json.loads(x) for x in (runs[3] / "metrics.jsonl").read_text().splitlines()]
    assert any(r["name"] == "aux_accuracy" for r in aux)
    res = cli("eval", runs[1], "--steps", "1,8", "--json")
    acc = json.loads(res.out)["accuracy"]
    assert acc["1"] == acc["8"]  # the baseline does not loop
    # the CPU defaults (add injection, token mix 3, no norm before the coda) and Huginn's, reachable by options
    configs = [textlab.load_checkpoint(r / "checkpoints" / "best.pt")["config"] for r in (runs[0], runs[4])]
    assert [(c["injection"], c["token_mix"], c["coda_norm"], c["norm"]) for c in configs] == [
        ("add", 3, False, "sandwich"), ("concat", 0, True, "prenorm")]


def test_depth_sequence_is_reproducible(cli, folder):
    for _ in range(2):
        assert cli("train", "recrnn", "--data", folder, "--steps", "20", *FAST, "--seed", "3").code == 0
    a, b = runs_of(Path("runs"))

    def weights(run):
        return textlab.load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]

    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ra = [json.loads(x)["value"] for x in (a / "metrics.jsonl").read_text().splitlines() if '"recurrence"' in x]
    assert len(set(ra)) > 1  # the depth really varies between logging windows


def test_resume_continues_exactly(cli, folder):
    assert cli("train", "recrnn", "--data", folder, "--steps", "20", *FAST, "--name", "split").code == 0
    first = runs_of(Path("runs"))[0]
    res = cli("train", "--resume", first, "--steps", "40")
    assert res.code == 0, res.err
    assert cli("train", "recrnn", "--data", folder, "--steps", "40", *FAST, "--name", "straight").code == 0
    straight = next(r for r in runs_of(Path("runs")) if r.name.endswith("straight"))
    a = textlab.load_checkpoint(first / "checkpoints" / "last.pt")
    b = textlab.load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["train_state"]["loop"]["step"] == b["train_state"]["loop"]["step"] == 40
    assert a["train_state"]["callbacks"]["curriculum"] == b["train_state"]["callbacks"]["curriculum"]
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    info = json.loads((first / "run.json").read_text())
    assert info["status"] == "finished" and info["resumes"][0]["changed"] == {"steps": 40}


def test_resume_on_other_data_starts_best_over(cli, tmp_path, folder):
    other = tmp_path / "other"
    assert cli("prep", "recrnn", "--task", "varchain", "--out", other, "--statements", "6", "--chains", "2",
               "--train-max", "2", "--n-train", "400", "--n-valid", "8", "--n-test", "12", "--seed", "6").code == 0
    assert cli("train", "recrnn", "--data", folder, "--steps", "20", *FAST).code == 0
    run = runs_of(Path("runs"))[0]
    best = textlab.load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["extra"]["data"] == str(folder.resolve())
    res = cli("train", "--resume", run, "--data", other, "--steps", "30")
    assert res.code == 0, res.err
    assert "the data changed" in res.err
    best = textlab.load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["extra"]["data"] == str(other.resolve()) and best["extra"]["step"] == 30  # the first eval after
    same = cli("train", "--resume", run, "--steps", "40")  # the same data again: best carries on
    assert same.code == 0 and "the data changed" not in same.err, same.err


def test_init_fine_tunes_on_longer_programs_with_more_names(cli, tmp_path, folder):
    """--init: a new run starts from another run's weights; the embeddings of the tokens both
    vocabularies share are carried over by token, the new names (a-z past 26 statements) start fresh."""
    long = tmp_path / "long"
    assert cli("prep", "recrnn", "--task", "pchase", "--out", long, "--statements", "30", "--chains", "2",
               "--train-max", "2", "--order", "topological", "--n-train", "60", "--n-valid", "2",
               "--n-test", "2").code == 0
    assert cli("train", "recrnn", "--data", folder, "--steps", "10", *FAST, "--name", "short").code == 0
    short = runs_of(Path("runs"))[0]
    # the sizes are the --init model's (--preset does not apply); lr 1e-30 leaves its weights as they were
    res = cli("train", "recrnn", "--data", long, "--init", short, "--steps", "2", *FAST[2:], "--lr", "1e-30",
              "--aux", "statements", "--aux-max-hops", "2", "--name", "long")
    assert res.code == 0, res.err
    assert "58 of 62 tokens' embeddings carried over" in res.err
    tuned = next(r for r in runs_of(Path("runs")) if r.name.endswith("long"))
    a = textlab.load_checkpoint(short / "checkpoints" / "best.pt")
    b = textlab.load_checkpoint(tuned / "checkpoints" / "last.pt")
    assert b["config"]["vocab_size"] == 62 and b["extra"]["aux_max_hops"] == 2
    rows = {t: i for i, t in enumerate(b["vocab"])}
    def same(x, y):
        return torch.allclose(x, y, rtol=0, atol=1e-20)

    for i, token in enumerate(a["vocab"]):  # the weights are the init's, row for row by token
        assert same(a["state_dict"]["emb.weight"][i], b["state_dict"]["emb.weight"][rows[token]]), token
    for k in a["state_dict"]:
        if k != "emb.weight":
            assert same(a["state_dict"][k], b["state_dict"][k]), k
    moved = tmp_path / "moved"
    short.rename(moved)  # a resumed fine-tuning run needs only its own last.pt, not the run it started from
    again = cli("train", "--resume", tuned, "--steps", "4")
    assert again.code == 0 and "carried over" not in again.err and "resuming" in again.err, again.err
    moved.rename(short)
    for args, text in (
            (("train", "--resume", short, "--data", long), "vocabulary differs"),
            (("train", "recrnn", "--data", long, "--init", short, "--dim", "48", "--heads", "2"), "differs from"),
            (("train", "recrnn", "--data", long, "--init", short, "--injection", "concat"), "differs from"),
            (("train", "recrnn", "--data", long, "--init", short, "--preset", "cpu"), "does not apply with --init"),
            (("train", "recrnn", "--data", long, "--init", short, "--model", "baseline"), "not a recrnn 'baseline'"),
            (("train", "recrnn", "--data", long, "--init", tmp_path / "nosuch"), "no such run"),
            (("train", "recrnn", "--data", long, "--aux-max-hops", "2"), "--aux-max-hops applies"),
            (("train", "recrnn", "--data", long, "--init", short, "--aux-max-hops", "2"), "--aux-max-hops applies")):
        res = cli(*args)
        assert res.code != 0 and len(res.err_lines) == 1 and text in res.err, (args, res.err)


def test_ctrl_c_saves_and_resume_finishes(cli, folder):
    """SIGINT in the middle of training (sent to this process, as a terminal would): last.pt is saved,
    the run is marked interrupted, exit code 130, and --resume finishes it."""
    runs = Path("runs")

    def interrupt_after_first_eval():
        deadline = time.time() + 120
        while time.time() < deadline:
            metrics = list(runs.glob("recrnn/*/metrics.jsonl"))
            if metrics and '"valid"' in metrics[0].read_text():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_after_first_eval, daemon=True)
    watcher.start()
    res = cli("train", "recrnn", "--data", folder, "--steps", "100000", *FAST, "--eval-every", "5")
    watcher.join()
    assert res.code == 130, res.err
    assert "Traceback" not in res.err and "--resume" in res.err
    run = runs_of(runs)[0]
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    step = textlab.load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["loop"]["step"]
    assert 5 <= step < 100000
    done = cli("train", "--resume", run, "--steps", str(step + 3))
    assert done.code == 0, done.err
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert textlab.load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]["loop"]["step"] == step + 3


def test_bad_input_is_one_line(cli, tmp_path, folder):
    (tmp_path / "file.json").write_text("[]")
    comp = tmp_path / "comp"
    assert cli("prep", "recrnn", "--task", "comparison", "--out", comp, "--entities", "20", "--attributes", "2",
               "--phi", "1.0", "--test-size", "5").code == 0
    other = tmp_path / "other"
    assert cli("prep", "recrnn", "--out", other, "--statements", "5", "--chains", "2", "--train-max", "1",
               "--n-train", "50", "--n-valid", "2", "--n-test", "2").code == 0
    (other / "vocab.json").write_text(json.dumps(json.loads((other / "vocab.json").read_text()) + ["<extra>"]))
    cases = [
        (("train", "recrnn", "--data", "./nosuch/folder"), 2, "no such file or folder"),
        (("train", "recrnn", "--data", tmp_path / "file.json"), 2, "is not a folder"),
        (("train", "recrnn", "--data", "wikitext"), 2, "recrnn reads a data folder"),
        (("train", "recrnn", "--mode", "full", "--aux", "statements"), 2, "--aux applies to --mode single"),
        (("train", "recrnn", "--data", comp, "--aux", "statements", *FAST), 2, "needs varchain or pchase data"),
        (("train", "recrnn", "--start-difficulty", "7"), 2, "above the largest training difficulty"),
        (("train", "recrnn", "--dim", "30", "--heads", "4"), 2, "must split into"),
        (("train", "recrnn", "--mode", "lm"), 2, "--mode"),
        (("prep", "recrnn", "--out", folder), 2, "already holds data"),
        (("prep", "recrnn", "--out", tmp_path / "x", "--statements", "5", "--chains", "4", "--train-max", "3"), 2,
         "needs at least 7 statements"),
        (("analyze", "recrnn", "--data", tmp_path / "missing"), 2, "no such file or folder"),
        (("train", "recrnn", "--model", "baseline", "--fixed-recurrence", "3"), 2, "applies to --model recurrent"),
    ]
    for args, code, text in cases:
        res = cli(*args)
        assert res.code == code, (args, res.err)
        assert len(res.err_lines) == 1, (args, res.err)
        assert text in res.err, (args, res.err)
    assert not runs_of(Path("runs")), "a failed train left a run directory behind"
    assert cli("train", "recrnn", "--data", folder, "--steps", "2", *FAST).code == 0
    run = runs_of(Path("runs"))[0]
    for args, text in (((run, "--steps", "1,x"), "--steps"), ((run, "--steps", "0"), "--steps"),
                       ((run, "--steps", "1,,2"), "--steps"), ((run, "--steps", "1,2,"), "--steps"),
                       ((run, "--exit", "kl", "--min-steps", "10", "--max-steps", "4"), "above --max-steps"),
                       ((run, "--data", other), "vocabulary"), ((run, "--split", "dev"), "--split")):
        res = cli("eval", *args)
        assert res.code == 2 and len(res.err_lines) == 1 and text in res.err, (args, res.err)
