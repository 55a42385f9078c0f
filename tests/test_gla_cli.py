"""`textlab prep|vocab|train|eval|generate gla` end to end on the embedded sample (seconds)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

import textlab

TINY = ["--data", "sample", "--d-model", "32", "--layers", "1", "--heads", "2", "--seq-len", "64",
        "--batch-size", "8", "--warmup", "5", "--lr", "3e-3", "--eval-every", "20", "--eval-chars", "4000",
        "--threads", "1"]


def only_run(root: Path) -> Path:
    runs = sorted((root / "gla").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny GLA run on the sample (module-scoped: several tests read it)."""
    import os

    from textlab.cli import main

    root = tmp_path_factory.mktemp("gla-run")
    old = {k: os.environ.get(k) for k in ("TEXTLAB_HOME", "TEXTLAB_RUNS")}
    os.environ["TEXTLAB_HOME"], os.environ["TEXTLAB_RUNS"] = str(root / "home"), str(root / "runs")
    try:
        assert main(["train", "gla", *TINY, "--steps", "60"]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return only_run(root / "runs")


def test_prep_and_vocab_report(cli):
    res = cli("prep", "gla", "--data", "sample", "--json")
    assert res.code == 0, res.err
    meta = json.loads(res.out)
    assert meta["splits"]["train"]["chars"] > 150_000 and meta["splits"]["valid"]["unk"] > 0
    res = cli("vocab", "gla", "--data", "sample")
    assert res.code == 0 and "coverage" not in res.err and "⁇" in res.out
    res = cli("vocab", "gla", "--data", "sample", "--min-count", "1000", "--json")
    data = json.loads(res.out)
    assert data["splits"]["train"]["coverage"] < 1.0 and data["vocab_size"] < 40
    assert data["splits"]["train"]["unknown_top"]


def test_train_learns_and_writes_a_run(trained):
    info = json.loads((trained / "run.json").read_text())
    assert info["status"] == "finished" and info["model"] == "gla" and info["best"]["metric"] == "valid/bpc"
    assert info["gla_kernel"] == "textlab"  # the own chunk form: no fla, no GPU here
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    bpc = [r["value"] for r in records if r["split"] == "valid" and r["name"] == "bpc"]
    assert len(bpc) == 3 and bpc[-1] < bpc[0] < 6.0  # evaluated every 20 steps, and it learns
    ckpt = textlab.load_checkpoint(trained / "checkpoints" / "best.pt")
    assert ckpt["extra"]["seq_len"] == 64 and ckpt["extra"]["data"] == "sample"
    assert ckpt["vocab"]["itos"][0] == "⁇" and ckpt["config"]["d_model"] == 32


def test_eval_reports_bpc_on_valid_and_test(cli, trained):
    res = cli("eval", trained, "--json", "--threads", "1")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert set(out["splits"]) == {"valid", "test"}
    for split in out["splits"].values():
        assert split["chars"] > 15_000 and 1.0 < split["bpc"] < 6.0
    assert json.loads((trained / "eval" / "bpc.json").read_text())["splits"]["valid"]["bpc"] == out["splits"]["valid"]["bpc"]
    res = cli("eval", trained, "--split", "valid", "--context", "stream", "--json", "--threads", "1")
    assert res.code == 0, res.err
    assert abs(json.loads(res.out)["splits"]["valid"]["bpc"] - out["splits"]["valid"]["bpc"]) < 0.5


def test_generate_streams_text(cli, trained):
    res = cli("generate", trained, "The history of", "--max-new", "80", "--sampling-seed", "1", "--threads", "1")
    assert res.code == 0, res.err
    assert res.out.startswith("The history of") and len(res.out.rstrip("\n")) == len("The history of") + 80
    assert "characters/s" in res.err and "state" in res.err
    # d 32, 1 layer, 2 heads: a state of 2 x 8 x 16 float32 = 1,024 bytes, not "0 KiB"
    assert "state 1.0 KiB" in res.err, res.err
    a = json.loads(cli("generate", trained, "The", "--max-new", "30", "--sampling-seed", "4", "--json").out)
    b = json.loads(cli("generate", trained, "The", "--max-new", "30", "--sampling-seed", "4", "--json").out)
    assert a["text"] == b["text"] and len(a["text"]) == 30
    greedy = json.loads(cli("generate", trained, "", "--max-new", "10", "--temperature", "0", "--json").out)
    assert greedy["prompt"] == "\n" and len(greedy["text"]) == 10


def test_prompt_with_unknown_characters(cli, trained):
    res = cli("generate", trained, "Café ☃", "--max-new", "5")
    assert res.code == 2 and len(res.err_lines) == 1 and "Traceback" not in res.err
    assert "'é' (U+00E9)" in res.err and "--unknown" in res.err
    res = cli("generate", trained, "Café", "--max-new", "5", "--unknown", "unk", "--json")
    assert res.code == 0 and json.loads(res.out)["prompt"] == "Caf<unk>"
    res = cli("generate", trained, "Café", "--max-new", "5", "--unknown", "drop", "--json")
    assert res.code == 0 and json.loads(res.out)["prompt"] == "Caf"


def test_state_sizes_read_sensibly():
    from textlab_gla.generate import format_bytes

    assert format_bytes(0) == "0 bytes" and format_bytes(640) == "640 bytes"
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2 ** 20) == "3.0 MiB"


def test_transformer_trains_evaluates_and_generates(cli, tmp_path):
    # GLA's chunk options do not apply to the Transformer: refused in one line naming both options
    res = cli("train", "gla", *TINY, "--model", "transformer", "--steps", "20", "--chunk-size", "20", "--sub-chunk", "8")
    assert res.code == 2 and len(res.err_lines) == 1 and "--chunk-size applies to --model gla" in res.err
    assert not (tmp_path / "runs").exists()
    res = cli("train", "gla", *TINY, "--model", "transformer", "--steps", "20")
    assert res.code == 0, res.err
    run = only_run(tmp_path / "runs")
    assert run.name.endswith("-transformer")
    res = cli("generate", run, "The", "--max-new", "20", "--json")
    assert res.code == 0 and len(json.loads(res.out)["text"]) == 20 and "KV cache" in res.err
    res = cli("eval", run, "--context", "stream")
    assert res.code == 2 and len(res.err_lines) == 1 and "only for --model gla" in res.err


def test_time_budget_stops_training(cli, tmp_path, monkeypatch):
    import textlab

    seen = []

    class Spy(textlab.Engine):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["epochs"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(textlab, "Engine", Spy)
    res = cli("train", "gla", *TINY, "--time-budget", "2s", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["result"]["stopped"] == "time_budget" and out["result"]["steps"] >= 1
    assert seen == [None]  # no epoch limit (not 10**9 epochs, which gave the progress bar a bogus total)


@pytest.mark.parametrize("core", [["--precision", "fp32"], ["--precision", "bf16"], ["--compile"]])
def test_resume_continues_exactly(cli, tmp_path, core):
    # a schedule that does not depend on the planned length (warm-up, then constant), so that
    # "12 steps, then resume to 24" and "24 steps" must give the same weights bit for bit; under
    # --compile the operator stays one opaque call in the compiled model (model.opaque_to_compiler)
    flat = [*TINY, "--min-lr-ratio", "1", "--eval-every", "6", *core]
    assert cli("train", "gla", *flat, "--steps", "12", "--name", "split").code == 0
    first = only_run(tmp_path / "runs")
    assert cli("train", "--resume", first, "--steps", "24").code == 0
    assert cli("train", "gla", *flat, "--steps", "24", "--name", "straight").code == 0
    straight = next(p for p in (tmp_path / "runs" / "gla").iterdir() if p.name.endswith("straight"))
    a = textlab.load_checkpoint(first / "checkpoints" / "last.pt")
    b = textlab.load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["train_state"]["loop"]["step"] == b["train_state"]["loop"]["step"] == 24
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


def test_local_folder_data(cli, tmp_path):
    folder = tmp_path / "wiki"
    folder.mkdir()
    from textlab_gla.data import make_sample

    for split in ("train", "valid", "test"):
        with gzip.open(folder / f"wiki.{split}.tokens.gz", "wt", encoding="utf-8") as fh:
            fh.write(make_sample(split).replace("\n", "\r\n"))
    res = cli("train", "gla", *TINY, "--data", str(folder), "--steps", "3", "--json")
    assert res.code == 0, res.err
    run = only_run(tmp_path / "runs")
    extra = textlab.load_checkpoint(run / "checkpoints" / "last.pt")["extra"]
    assert extra["data"] == str(folder.resolve())
    assert cli("eval", run, "--split", "test", "--max-chars", "2000").code == 0


def test_bad_inputs_are_one_line_and_leave_nothing(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    for split in ("train", "valid", "test"):
        (broken / f"{split}.txt.gz").write_bytes(b"not gzip at all")
    cases = [
        (("train", "gla", *TINY, "--time-budget", "soon"), 2, "cannot read the duration"),
        (("train", "gla", *TINY, "--chunk-size", "60", "--sub-chunk", "16"), 2, "multiple of --sub-chunk"),
        (("train", "gla", *TINY, "--heads", "3"), 2, "does not split into 3 heads"),
        (("train", "gla", *TINY, "--seq-len", "100000"), 2, "one batch needs"),
        (("train", "gla", *TINY, "--model", "mamba"), 2, "mamba"),
        (("train", "gla", *TINY, "--data", str(empty)), 2, "no train text file"),
        (("train", "gla", *TINY, "--data", str(broken)), 2, "cannot read"),
        (("train", "gla", *TINY, "--data", "./nosuch/folder"), 2, "no such file"),
        (("prep", "gla", "--data", "wikitext:wikitext-103-raw-v1"), 2, "pass local files"),
        (("train", "gla", *TINY, "--data", "wikitext:wikitext-103-raw-v1"), 2, "pass local files"),
    ]
    for args, code, text in cases:
        res = cli(*args)
        assert res.code == code, (args, res.err)
        assert len(res.err_lines) == 1, (args, res.err)
        assert text in res.err, (args, res.err)
        assert "Traceback" not in res.err
    assert not (tmp_path / "runs" / "gla").exists() or not any((tmp_path / "runs" / "gla").iterdir())


def test_checkpoints_that_are_not_gla_models(cli, tmp_path):
    from textlab import save_checkpoint

    other = save_checkpoint(tmp_path / "other.pt", task="word2vec", model="sgns", config={}, state_dict={})
    res = cli("generate", other, "The")
    assert res.code != 0 and len(res.err_lines) == 1 and "word2vec" in res.err
    novocab = save_checkpoint(tmp_path / "novocab.pt", task="gla", model="gla", config={}, state_dict={})
    for verb in ("generate", "eval"):
        res = cli(verb, novocab)
        assert res.code == 1 and len(res.err_lines) == 1 and "no character vocabulary" in res.err, res.err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    res = cli("generate", garbage, "The")
    assert res.code == 1 and len(res.err_lines) == 1 and "Traceback" not in res.err
