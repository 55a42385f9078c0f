"""ai4code's transformer ranker (a local Hugging Face encoder) and blends of runs, end to end on the sample.

The encoder is made here: a two-layer BERT-like config with random weights, saved with
`save_pretrained` into a temporary folder, with a WordPiece tokenizer trained on the sample's
cells. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import textlab

pytest.importorskip("transformers")

from conftest import plain
from textlab_ai4code import data as D  # noqa: E402
from textlab_ai4code.sample import load_sample  # noqa: E402

TINY_TF = ["--md-tokens", "16", "--code-tokens", "6", "--code-cells", "4", "--batch-size", "16", "--threads", "1"]


def make_encoder(folder: Path, *, hidden: int = 16) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    texts = [s for nb in D.load_notebooks(load_sample("train"))[:40] for s in nb.sources]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=[
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("enc") / "tiny-bert")


def runs_of(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs" / "ai4code"
    return sorted(root.iterdir()) if root.exists() else []



def one_line(res, code: int, text: str) -> None:
    assert res.code == code, (res.code, res.err)
    assert len(res.err_lines) == 1, res.err
    assert text in res.err, res.err


def interrupt_at_batch(monkeypatch, when: int) -> None:
    """SIGINT to this process (as a terminal's Ctrl-C) while the `when`-th batch is made."""
    import os
    import signal

    from textlab_ai4code import tformer

    real, calls = tformer.make_batch, []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == when:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(tformer, "make_batch", wrapped)


def test_transformer_trains_resumes_exactly_and_evaluates_without_its_folder(cli, tmp_path, encoder, monkeypatch):
    enc = tmp_path / "enc-copy"
    shutil.copytree(encoder, enc)
    args = ["--model", "transformer", "--encoder", enc, "--limit", "24", *TINY_TF, "--epochs", "2"]
    with monkeypatch.context() as m:
        interrupt_at_batch(m, 5)  # Ctrl-C in the first epoch: last.pt keeps step 5
        assert cli("train", "ai4code", *args, "--name", "split").code == 130
    split = runs_of(tmp_path)[0]
    assert textlab.load_checkpoint(split / "checkpoints" / "last.pt")["extra"]["step"] == 5
    res = cli("train", "--resume", split)
    assert res.code == 0, res.err
    assert cli("train", "ai4code", *args, "--name", "straight").code == 0
    straight = next(p for p in runs_of(tmp_path) if p.name.endswith("straight"))
    a = textlab.load_checkpoint(split / "checkpoints" / "last.pt")
    b = textlab.load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["extra"]["step"] == b["extra"]["step"] > 0
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k  # bit for bit
    assert any(k.startswith("encoder.") for k in b["state_dict"])  # the fine-tuned encoder itself
    # what the checkpoint holds: tensors and plain values, the tokenizer as its JSON, the config as JSON
    best = textlab.load_checkpoint(straight / "checkpoints" / "best.pt")
    assert plain(best) and json.loads(best["vocab"]["tokenizer"])["model"]["type"] == "WordPiece"
    assert json.loads(best["config"]["encoder_config"])["model_type"] == "bert"
    assert best["config"]["max_len"] == 64  # the encoder's positions (fewer than 512)
    # run.json: the folder and the sha256 of each of its files
    info = json.loads((straight / "run.json").read_text())
    files = info["encoder"]["files"]
    assert set(files) == {p.name for p in enc.iterdir()}
    assert files["model.safetensors"] == hashlib.sha256((enc / "model.safetensors").read_bytes()).hexdigest()
    # eval and generate need only the checkpoint: the folder is gone
    shutil.rmtree(enc)
    res = cli("eval", straight, "--json")
    assert res.code == 0, res.err
    metrics = json.loads(res.out)["metrics"]["all"]
    assert metrics["notebooks"] == 40 and -1 <= metrics["kendall_tau"] <= 1
    out = tmp_path / "sub.csv"
    assert cli("generate", straight, "--out", out).code == 0
    rows = list(csv.DictReader(open(out)))
    notebooks = {nb.id: nb for nb in D.load_notebooks(load_sample("test"))}
    assert sorted(r["id"] for r in rows) == sorted(notebooks)
    assert all(sorted(r["cell_order"].split()) == sorted(notebooks[r["id"]].cell_ids) for r in rows)


def test_a_resume_with_changed_encoder_files_is_refused(cli, tmp_path, encoder):
    enc = tmp_path / "enc"
    shutil.copytree(encoder, enc)
    assert cli("train", "ai4code", "--model", "transformer", "--encoder", enc, "--limit", "8", *TINY_TF,
               "--epochs", "1").code == 0
    run = runs_of(tmp_path)[0]
    before = (run / "run.json").read_text()
    from safetensors.torch import load_file, save_file

    weights = load_file(enc / "model.safetensors")
    weights = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, enc / "model.safetensors", metadata={"format": "pt"})
    one_line(cli("train", "--resume", run, "--epochs", "2"), 2, "model.safetensors differs")
    assert json.loads((run / "run.json").read_text())["status"] == json.loads(before)["status"]


def test_bad_encoder_folders_are_one_line_and_leave_nothing(cli, tmp_path, encoder, monkeypatch):
    train = ["train", "ai4code", "--model", "transformer", "--threads", "1", "--encoder"]
    one_line(cli(*train, tmp_path / "nowhere"), 2, "no such local folder")
    one_line(cli("train", "ai4code", "--model", "transformer"), 2, "needs --encoder DIR")
    one_line(cli("train", "ai4code", "--model", "ranker", "--encoder", encoder), 2, "--encoder applies to")
    partial = tmp_path / "partial"
    shutil.copytree(encoder, partial)
    (partial / "model.safetensors").unlink()
    one_line(cli(*train, partial), 2, "incomplete: no weights")
    broken = tmp_path / "broken"
    shutil.copytree(encoder, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    one_line(cli(*train, broken, "--limit", "4"), 2, "cannot load the encoder's weights")
    gpt = tmp_path / "gpt"
    shutil.copytree(encoder, gpt)
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(vocab_size=300, n_embd=16, n_layer=1, n_head=2, n_positions=64)).save_pretrained(gpt)
    one_line(cli(*train, gpt, "--limit", "4"), 2, "architecture 'gpt2' is not one textlab fine-tunes")
    one_line(cli(*train, encoder, "--max-len", "100", "--limit", "4"), 2, "more than the encoder's 64 positions")
    # a tokenizer that is not a fast one
    import transformers

    real = transformers.AutoTokenizer.from_pretrained

    class Slow:
        is_fast = False

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Slow())
    one_line(cli(*train, encoder, "--limit", "4"), 2, "not a 'fast' tokenizer")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", real)
    # without transformers: what to install, in one line
    monkeypatch.setitem(sys.modules, "transformers", None)
    one_line(cli(*train, encoder), 2, "pip install 'textlab[hf]'")
    assert runs_of(tmp_path) == []  # nothing half-written


# ============================================================================ blends
def test_blend_of_ranker_and_transformer_fits_weights_and_works_as_a_run(cli, tmp_path, encoder):
    assert cli("train", "ai4code", "--model", "ranker", "--trees", "10", "--leaves", "8", "--threads", "1",
               "--name", "rk").code == 0
    assert cli("train", "ai4code", "--model", "transformer", "--encoder", encoder, *TINY_TF, "--epochs", "1",
               "--name", "tf").code == 0
    rk, tf = runs_of(tmp_path)
    res = cli("train", "ai4code", "--model", "blend", "--member", rk, "--member", tf, "--name", "bl", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    blend = next(p for p in runs_of(tmp_path) if p.name.endswith("bl"))
    ckpt = textlab.load_checkpoint(blend / "checkpoints" / "best.pt")
    assert plain(ckpt)
    weights = ckpt["state_dict"]["weights"]
    assert weights.sum().item() == pytest.approx(1.0) and (weights >= 0).all()
    members = ckpt["config"]["members"]
    assert [m["model"] for m in members] == ["ranker", "transformer"]
    assert members[0]["sha256"] == hashlib.sha256((rk / "checkpoints" / "best.pt").read_bytes()).hexdigest()
    # the blend is at least as good on the validation notebooks as its best member (its weights are chosen there,
    # and weights (1, 0) and (0, 1) are on the grid)
    taus = [json.loads((r / "run.json").read_text())["best"]["value"] for r in (rk, tf)]
    assert out["best"]["value"] >= max(taus) - 1e-9
    assert "crossfit_kendall_tau" in {json.loads(line)["name"] for line in (blend / "metrics.jsonl").read_text().splitlines()}
    res = cli("eval", blend, "--json")
    assert res.code == 0, res.err and json.loads(res.out)["metrics"]["all"]["notebooks"] == 40
    assert cli("generate", blend, "--out", tmp_path / "b.csv").code == 0
    assert len(list(csv.DictReader(open(tmp_path / "b.csv")))) == 40
    # a member that changed, or moved: one line
    best = rk / "checkpoints" / "best.pt"
    saved = best.read_bytes()
    data = textlab.load_checkpoint(best)
    data["extra"]["note"] = "touched"
    torch.save(data, best)
    one_line(cli("eval", blend), 1, "changed since the blend was fitted")
    best.write_bytes(saved)
    assert cli("eval", blend).code == 0
    moved = tmp_path / "elsewhere"
    rk.rename(moved)
    one_line(cli("eval", blend), 1, "is missing (moved or deleted)")


def test_bad_blend_members_are_one_line_and_leave_nothing(cli, tmp_path, toy):
    assert cli("train", "ai4code", "--model", "similar", "--name", "a").code == 0
    assert cli("train", "ai4code", "--model", "appended", "--name", "b").code == 0
    a, b = runs_of(tmp_path)
    folder = tmp_path / "nb"
    D.write_layout(folder, D.load_notebooks(load_sample("train"))[:40])
    assert cli("train", "ai4code", "--model", "similar", "--data", folder, "--name", "c").code == 0
    c = next(p for p in runs_of(tmp_path) if p.name.endswith("-c"))
    assert cli("train", "toy", "--steps", "5").code == 0
    toy_run = next((tmp_path / "runs" / "toy").iterdir())
    count = len(runs_of(tmp_path))
    blend = ["train", "ai4code", "--model", "blend"]
    one_line(cli(*blend, "--member", a), 2, "two or more --member")
    one_line(cli(*blend, "--member", a, "--member", tmp_path / "nowhere"), 2, "--member")
    one_line(cli(*blend, "--member", a, "--member", toy_run), 2, "is a toy run, not an ai4code run")
    one_line(cli(*blend, "--member", a, "--member", c), 2, "was trained on")
    one_line(cli(*blend, "--member", a, "--member", a), 2, "given twice")
    one_line(cli(*blend, "--member", a, "--member", b, "--limit", "20"), 2, "another split")
    one_line(cli("train", "ai4code", "--model", "ranker", "--member", a), 2, "--member applies to")
    assert len(runs_of(tmp_path)) == count  # nothing half-written
    res = cli(*blend, "--member", a, "--member", b, "--name", "ok")
    assert res.code == 0, res.err
    blend_run = next(p for p in runs_of(tmp_path) if p.name.endswith("-ok"))
    one_line(cli(*blend, "--member", a, "--member", blend_run), 2, "is a blend")


def test_bundle_carries_the_encoder_folder_to_an_offline_node(cli, tmp_path, encoder, monkeypatch):
    res = cli("bundle", "--task", "ai4code", "--out", tmp_path / "bundle", "--include", encoder, "--no-wheels")
    assert res.code == 0, res.err
    carried = tmp_path / "bundle" / "extra" / encoder.name
    assert carried.is_dir()
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):  # what bundle/env.sh sets
        monkeypatch.setenv(var, "1")
    res = cli("train", "ai4code", "--model", "transformer", "--encoder", carried, "--limit", "8", *TINY_TF,
              "--epochs", "1", "--name", "offline")
    assert res.code == 0, res.err
    run = runs_of(tmp_path)[0]
    from textlab_ai4code.hf import folder_hashes

    assert json.loads((run / "run.json").read_text())["encoder"]["files"] == folder_hashes(encoder)  # the same files
