"""Checkpoints: round trip, and every kind of bad file refused in one line without running code."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest

from conftest import run_config
import torch

from textlab import Vocab
from textlab.checkpoint import load_checkpoint, open_artifact, save_checkpoint
from textlab.errors import CheckpointError


def make_ckpt(path, **kw):
    args = dict(task="toy", model="linear", config={"vocab_size": 21, "dim": 8},
                state_dict={"w": torch.arange(6.0).reshape(2, 3)}, vocab=Vocab(["<pad>", "a", "б"]).to_dict(),
                extra={"note": "x"}, train_state={"step": 3, "rng": torch.get_rng_state()})
    args.update(kw)
    return save_checkpoint(path, **args)


def test_round_trip(tmp_path):
    path = make_ckpt(tmp_path / "c.pt")
    data = load_checkpoint(path)
    assert data["format"] == "textlab.checkpoint" and data["task"] == "toy"
    assert torch.equal(data["state_dict"]["w"], torch.arange(6.0).reshape(2, 3))
    assert Vocab.from_dict(data["vocab"]).itos == ["<pad>", "a", "б"]
    assert data["train_state"]["step"] == 3
    assert not list(tmp_path.glob(".c.pt.*"))  # no temporary file left behind


def test_the_vocabulary_is_stored_as_json_text_and_read_back_as_it_was(tmp_path):
    vocab = {"itos": ["<pad>", "слово", "a b"], "counts": [0, 7, 2], "specials": ["<pad>"], "unk": None, "x": 0.5}
    path = make_ckpt(tmp_path / "c.pt", vocab=vocab)
    raw = torch.load(path, weights_only=True)  # one string in the file, not thousands of pickled objects
    assert raw["version"] == 2 and raw["vocab_format"] == "json" and isinstance(raw["vocab"], str)
    data = load_checkpoint(path)
    assert data["vocab"] == vocab and "vocab_format" not in data
    # what JSON would change is pickled as before: tuples, int keys, NaN
    for odd in ({"itos": ("a", "b")}, {1: "a"}, ["a", 1, (2,)]):
        assert load_checkpoint(make_ckpt(tmp_path / "odd.pt", vocab=odd))["vocab"] == odd
        assert torch.load(tmp_path / "odd.pt", weights_only=True).get("vocab_format") is None
    back = load_checkpoint(make_ckpt(tmp_path / "nan.pt", vocab={"x": float("nan")}))["vocab"]
    assert back["x"] != back["x"]  # NaN, pickled
    # a file of format version 1 (the vocabulary pickled) still loads
    torch.save({**raw, "version": 1, "vocab": vocab, "vocab_format": None}, tmp_path / "v1.pt")
    assert load_checkpoint(tmp_path / "v1.pt")["vocab"] == vocab
    torch.save({**raw, "vocab": "{not json"}, tmp_path / "torn.pt")
    with pytest.raises(CheckpointError, match="not JSON"):
        load_checkpoint(tmp_path / "torn.pt")


def test_checkpoints_are_written_without_crc32_and_torchs_setting_is_left_as_it_was(tmp_path):
    import zipfile

    torch.serialization.set_crc32_options(True)
    path = make_ckpt(tmp_path / "c.pt", state_dict={"w": torch.arange(1000.0)})
    assert torch.serialization.get_crc32_options() is True
    with zipfile.ZipFile(path) as z:  # torch.load never checks them: computing them was half the write
        crcs = [i.CRC for i in z.infolist() if i.file_size > 0 and "/data/" in i.filename]
    assert crcs and not any(crcs)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.arange(1000.0))


class Evil:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/textlab-evil-marker"


def test_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    import os

    if os.path.exists(MARKER):
        os.unlink(MARKER)
    path = tmp_path / "evil.pt"
    torch.save({"format": "textlab.checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not os.path.exists(MARKER)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not os.path.exists(MARKER)


def test_corrupt_truncated_foreign(tmp_path):
    good = make_ckpt(tmp_path / "good.pt")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(trunc)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(garbage)
    assert "could run code" not in str(info.value)  # corrupt, not dangerous
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4000)))
    with pytest.raises(CheckpointError, match="not a textlab checkpoint") as info:
        load_checkpoint(noise)
    assert "could run code" not in str(info.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)  # a plain torch file, not ours
    with pytest.raises(CheckpointError, match="not a textlab checkpoint"):
        load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "textlab.checkpoint", "version": 99, "task": "t", "model": "m", "state_dict": {}}, newer)
    with pytest.raises(CheckpointError, match="newer textlab"):
        load_checkpoint(newer)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_bad_checkpoints_on_the_cli(cli, toy, tmp_path):
    good = make_ckpt(tmp_path / "good.pt")
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:100])
    torch.save({"format": "textlab.checkpoint", "payload": Evil()}, tmp_path / "evil.pt")
    make_ckpt(tmp_path / "other.pt", task="othertask")
    make_ckpt(tmp_path / "wrongmodel.pt", model="nosuchmodel")
    make_ckpt(tmp_path / "wrongshape.pt", state_dict={"w": torch.zeros(1)})
    cases = {
        "trunc.pt": "corrupt or truncated",
        "evil.pt": "could run code",
        "other.pt": "unknown task 'othertask'",
        "wrongmodel.pt": "needs model 'nosuchmodel'",
        "wrongshape.pt": "weights do not fit",
    }
    for name, text in cases.items():
        res = cli("eval", tmp_path / name)
        assert res.code != 0, name
        assert len(res.err_lines) == 1 and text in res.err, (name, res.err)


def test_open_artifact_resolves_run_dirs(tmp_path):
    run = tmp_path / "runs" / "toy" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        open_artifact(run)
    make_ckpt(run / "checkpoints" / "last.pt", extra={"which": "last"})
    assert open_artifact(run).extra["which"] == "last"
    make_ckpt(run / "checkpoints" / "best.pt", extra={"which": "best"})
    assert open_artifact(run).extra["which"] == "best"
    assert open_artifact(run, which="last").extra["which"] == "last"
    art = open_artifact(run / "checkpoints" / "best.pt")
    assert art.run_dir == run and art.output_dir("eval") == run / "eval"
    bare = make_ckpt(tmp_path / "model.pt")
    assert open_artifact(bare).output_dir("eval") == tmp_path / "model-eval"
    with pytest.raises(CheckpointError, match="not a run directory"):
        open_artifact(tmp_path / "runs")


def test_results_on_other_data_go_to_their_own_folder(tmp_path, monkeypatch):
    own, other = tmp_path / "own", tmp_path / "data" / "long one"
    own.mkdir()
    other.mkdir(parents=True)
    run = tmp_path / "runs" / "toy" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    make_ckpt(run / "checkpoints" / "best.pt", extra={"data": str(own.resolve())})
    art = open_artifact(run)
    assert art.output_dir("eval") == run / "eval"
    monkeypatch.chdir(tmp_path)
    assert art.output_dir("eval", data="own") == run / "eval"  # the same folder, spelled relative
    theirs = art.output_dir("eval", data=other)
    assert theirs.parent == run / "eval" and theirs.name.startswith("long_one-") and theirs.is_dir()
    assert art.output_dir("eval", data=str(other) + "/") == theirs
    assert art.output_dir("eval", data="ag_news").name.startswith("ag_news-")  # a registered name, not a path
    twin = tmp_path / "elsewhere" / "long one"
    twin.mkdir(parents=True)
    assert art.output_dir("eval", data=twin) != theirs  # same last name, other data: another folder


def test_run_create_at_a_given_path_even_under_a_fixed_run_dir(tmp_path, monkeypatch):
    import textlab

    # a step inside another run (an embedder's vectors): exactly there, whatever TEXTLAB_RUN_DIR says
    monkeypatch.setenv("TEXTLAB_RUN_DIR", str(tmp_path / "outer"))
    inner = tmp_path / "outer" / "embeddings" / "run"
    run = textlab.Run.create("word2vec", "sgns-8d", {"dim": 8}, seed=3, path=inner)
    assert run.dir == inner and (inner / "run.json").exists() and run.seed == 3
    assert run_config(inner) == {"dim": 8}
    with pytest.raises(textlab.UsageError, match="not empty"):
        textlab.Run.create("word2vec", "sgns-8d", {}, path=inner)


def test_the_signal_handler_only_sets_a_flag_and_the_loop_says_it_once(tmp_path, capsys):
    import signal

    import textlab

    run = textlab.Run.create("toy", "linear", {}, path=tmp_path / "run")
    capsys.readouterr()
    run._on_signal(signal.SIGINT, None)  # may land half-way through a write or an import: prints nothing
    assert run.stop_requested == "SIGINT" and capsys.readouterr().err == ""
    assert run.should_stop() and run.should_stop()
    assert capsys.readouterr().err.count("SIGINT: saving last.pt and stopping") == 1
    with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C stops at once
        run._on_signal(signal.SIGINT, None)


def test_config_fields_added_later_say_what_older_checkpoints_meant():
    from dataclasses import dataclass, field

    from textlab import MISSING_MEANS, config_from_dict

    @dataclass
    class Config:
        width: int = 8
        scheme: str = field(default="new", metadata={MISSING_MEANS: "old"})
        extra: int = 3  # added later too, with no say: older checkpoints get the default

    old = config_from_dict(Config, {"width": 4, "gone": 1})  # "gone": a field the config no longer has
    assert (old.width, old.scheme, old.extra) == (4, "old", 3)
    assert config_from_dict(Config, {"scheme": "new"}).scheme == "new"
    assert Config().scheme == "new"


def test_a_full_disk_is_one_line_and_the_run_resumes(cli, toy, tmp_path, monkeypatch):
    import errno

    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):  # the third checkpoint write finds the disk full
        calls.append(f)
        if len(calls) == 3:
            Path(f).write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 191539840 vs 191539728")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    res = cli("train", "toy", "--steps", "60")  # evaluates (and may write best.pt) every 10 steps
    assert res.code == 1 and "Traceback" not in res.err, res.err
    assert res.err_lines[-1].startswith("error: could not write") and len(res.err_lines) == 2  # "run directory: ..." first
    assert "could not write" in res.err and "the disk is full" in res.err and "MiB free" in res.err
    run = next((tmp_path / "runs").glob("toy/*"))
    assert f"--resume {run}" in res.err.replace("\n", "")
    ckpts = run / "checkpoints"
    assert not list(ckpts.glob(".*.tmp"))  # the partial file is gone; what was written before stays
    assert load_checkpoint(next(ckpts.glob("*.pt")))["task"] == "toy"
    monkeypatch.setattr(torch, "save", real_save)
    res = cli("train", "--resume", run)
    assert res.code == 0, res.err
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(full))
    with pytest.raises(CheckpointError, match="c.pt: the disk is full") as info:  # not in a run: no resume hint
        make_ckpt(tmp_path / "c.pt")
    assert "--resume" not in info.value.line() and not (tmp_path / "c.pt").exists()
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(CheckpointError, match="could not write .*Permission denied"):
        make_ckpt(tmp_path / "c.pt")


def test_a_full_disk_anywhere_else_is_one_line_too(cli, toy, tmp_path, monkeypatch):
    import errno

    from textlab import runs

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.dir / "metrics.jsonl"))

    monkeypatch.setattr(runs.Run, "log", full)
    res = cli("train", "toy", "--steps", "20")
    assert res.code == 1 and "Traceback" not in res.err and "internal error" not in res.err, res.err
    assert res.err_lines[-1].startswith("error: No space left on device: ") and "metrics.jsonl" in res.err
    assert "textlab train --resume" in res.err
