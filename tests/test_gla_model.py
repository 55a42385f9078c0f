"""The models, generation, the data path and the training helpers of the gla plugin."""

from __future__ import annotations

import math

import pytest
import torch

import textlab
from textlab_gla import data as gdata
from textlab_gla.config import GLAConfig, TransformerConfig
from textlab_gla.generate import generate_ids, sample_next
from textlab_gla.model import GLALayer, build_gla, build_transformer, cache_nbytes
from textlab_gla.evaluate import evaluate_ids

torch.set_num_threads(1)
VOCAB = 37


def tiny_gla(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    cfg = GLAConfig(vocab_size=VOCAB, d_model=32, layers=2, heads=2, chunk_size=16, sub_chunk=4, **kw)
    return build_gla(cfg, None).to(dtype).eval()


def tiny_transformer(dtype=torch.float64):
    torch.manual_seed(0)
    return build_transformer(TransformerConfig(vocab_size=VOCAB, d_model=32, layers=2, heads=2), None).to(dtype).eval()


def ids(B=2, T=45, seed=1):
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ============================================================================ models
def test_gate_at_init_forgets_slowly():
    torch.manual_seed(0)
    layer = build_gla(GLAConfig(vocab_size=10), None).blocks[0].mixer  # the model's own init
    assert isinstance(layer, GLALayer) and not layer.gate_up.bias.any()
    x = torch.nn.functional.rms_norm(torch.randn(4, 64, 256), (256,))
    z = layer.proj(x).split(layer.splits, -1)[-1]
    alpha = layer.log_gate(z).exp()
    assert abs(alpha.mean().item() - 0.5 ** (1 / 16)) < 2e-3  # ≈ 0.958: half-life of about 16 steps
    assert 0.93 < alpha.min().item() and alpha.max().item() < 0.98


def test_the_two_models_have_the_same_size():
    gla = build_gla(GLAConfig(vocab_size=283), None)
    tf = build_transformer(TransformerConfig(vocab_size=283), None)
    assert abs(gla.num_parameters() - tf.num_parameters()) / tf.num_parameters() < 0.02
    assert 3.3e6 < gla.num_parameters() < 3.7e6  # d 256, 4 layers, SwiGLU 768, tied head
    assert gla.head.weight is gla.embed.weight


@pytest.mark.parametrize("T", [1, 16, 45])
def test_chunk_recurrent_and_parallel_logits_agree(T):
    model = tiny_gla()
    x = ids(T=T)
    chunk = model(x, form="chunk")
    assert rel(model(x, form="recurrent"), chunk) < 1e-10
    assert rel(model(x, form="parallel"), chunk) < 1e-10


def test_strong_gates_take_the_sub_chunk_path_with_the_same_logits():
    model = tiny_gla()
    for block in model.blocks:
        torch.nn.init.constant_(block.mixer.gate_up.bias, -400.0)  # g ≈ -25 per step
    x = ids(T=40)
    assert rel(model(x, form="recurrent"), model(x, form="chunk")) < 1e-10


@pytest.mark.parametrize("build", [tiny_gla, tiny_transformer])
def test_token_by_token_decoding_equals_one_forward(build):
    model = build()
    x = ids(B=2, T=37)
    full = model(x)
    with torch.no_grad():
        logits, cache = model.prefill(x[:, :5], max_len=20)  # a cache too small must grow
        steps = [logits]
        for t in range(5, 37):
            logits, cache = model.step(x[:, t], cache)
            steps.append(logits)
    assert rel(torch.stack(steps, 1), full[:, 4:]) < 1e-10  # positions 4 .. 36


def test_gla_state_is_constant_in_length_and_the_kv_cache_grows():
    sizes = {}
    for name, build in (("gla", tiny_gla), ("transformer", tiny_transformer)):
        model = build(torch.float32)
        for n in (10, 100):
            _, stats = generate_ids(model, ids(B=1, T=5)[0], n, temperature=1.0, top_k=0,
                                    generator=torch.Generator().manual_seed(0))
            assert stats.new_chars == n and len(stats.step_times) == n
            sizes[name, n] = stats.cache_bytes
    assert sizes["gla", 10] == sizes["gla", 100] == 2 * 2 * 8 * 16 * 4  # layers x heads x dk x dv x 4 bytes
    assert sizes["transformer", 100] > 5 * sizes["transformer", 10]


def test_training_after_generation_in_the_same_process():
    model = tiny_transformer(torch.float32)
    generate_ids(model, ids(B=1, T=5)[0], 3000)  # tables made under inference mode, beyond 1024 positions
    model.train()
    model(ids(B=1, T=2100)).sum().backward()
    assert model.embed.weight.grad is not None


def test_sampling():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0]])
    assert sample_next(logits, 0.0, 0, None).item() == 1
    gen = torch.Generator().manual_seed(0)
    drawn = {sample_next(logits, 1.0, 2, gen).item() for _ in range(200)}
    assert drawn == {1, 3}  # top-2 only


def test_generation_is_reproducible_with_a_seed():
    model = tiny_gla(torch.float32)
    prompt = ids(B=1, T=6)[0]
    a, _ = generate_ids(model, prompt, 30, generator=torch.Generator().manual_seed(5))
    b, _ = generate_ids(model, prompt, 30, generator=torch.Generator().manual_seed(5))
    assert a == b and len(a) == 30


# ============================================================================ data
def test_normalize_maps_unk_crlf_and_nfc():
    assert gdata.normalize("a <unk> b\r\nc\rd") == f"a {gdata.UNK} b\nc\nd"
    assert gdata.normalize("e\u0301") == "\u00e9"


def test_sample_is_deterministic_and_wikitext_like():
    a, b = gdata.make_sample("train"), gdata.make_sample("train")
    assert a == b and len(a) == 160_000
    assert " = = " in a and "<unk>" in a and " @,@ " in a
    assert gdata.make_sample("valid") != gdata.make_sample("test")
    with pytest.raises(textlab.DataError):
        gdata.make_sample("dev")


def test_vocabulary_encode_decode_and_unknown_characters():
    voc = gdata.build_vocab("aab" + gdata.UNK + "c")
    assert voc.itos[0] == gdata.UNK and voc.unk_id == 0 and voc.itos[1] == "a"
    enc = gdata.encode("abz" + gdata.UNK, voc)
    assert enc.dtype == torch.int16 and enc.tolist() == [voc["a"], voc["b"], 0, 0]
    assert gdata.decode(enc.tolist(), voc) == "ab<unk><unk>"
    assert gdata.unknown_chars("abzé", voc) == ["z", "é"]
    rare = gdata.build_vocab("aaab", min_count=2)
    assert "b" not in rare and gdata.encode("b", rare).tolist() == [0]


def test_folder_split_files_prefer_the_train_files_sibling(tmp_path):
    import gzip

    for name, text in [("wikitext-2-v1.train.txt.gz", "train text\n"), ("wikitext-2-v1.valid.txt.gz", "valid\n"),
                       ("wikitext-2-v1.test.txt.gz", "test v1 <unk>\n"),
                       ("wikitext-2-raw-v1.test.hfjoined.raw.gz", "raw test\r\n")]:
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as fh:
            fh.write(text)
    source = textlab.resolve("gla", str(tmp_path))
    assert gdata.read_split(source, "test") == "test v1 <unk>\n"
    (tmp_path / "wikitext-2-v1.test.txt.gz").unlink()
    assert gdata.read_split(source, "test") == "raw test\n"  # the only test file left; CRLF read as LF


def test_a_single_file_is_cut_90_5_5(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i}\n" for i in range(1000)), encoding="utf-8")
    source = textlab.resolve("gla", str(path))
    parts = [gdata.read_split(source, s) for s in gdata.SPLITS]
    assert "".join(parts) == path.read_text()
    assert all(p.endswith("\n") for p in parts)
    assert 0.89 < len(parts[0]) / len(path.read_text()) < 0.91


def test_prepare_caches_and_reuses(monkeypatch):
    meta = gdata.prepare("sample")
    assert meta["splits"]["train"]["unk"] > 0
    monkeypatch.setattr(gdata, "read_split", lambda *a: pytest.fail("read the source again"))
    assert gdata.prepare("sample")["splits"] == meta["splits"]
    assert gdata.load_texts("sample", ("valid",))["valid"].startswith(" = ")


def test_training_windows_depend_only_on_seed_and_epoch_and_are_sharded(monkeypatch):
    a = gdata.window_starts(10_000, 100, seed=3, epoch=1)
    assert torch.equal(a, gdata.window_starts(10_000, 100, seed=3, epoch=1))
    assert not torch.equal(a, gdata.window_starts(10_000, 100, seed=3, epoch=2))
    assert int(a.max()) + 101 <= 10_000 and len(set(a.tolist())) == len(a)
    monkeypatch.setenv("WORLD_SIZE", "2")
    shards = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        shards.append(gdata.window_starts(10_000, 100, seed=3, epoch=1))
    assert len(shards[0]) == len(shards[1]) and not set(shards[0].tolist()) & set(shards[1].tolist())


# ============================================================================ training helpers
def test_evaluation_scores_every_character_once():
    model = tiny_gla(torch.float32)
    text = torch.randint(0, VOCAB, (1000,), generator=torch.Generator().manual_seed(0)).to(torch.int16)
    res = evaluate_ids(model, text, 64, batch_size=4)
    assert res["chars"] == 999 and res["bpc"] == pytest.approx(res["loss"] / math.log(2))
    # by hand: the same windows one at a time
    total = 0.0
    for s in range(0, 999, 64):
        w = text[s:min(s + 65, 1000)].long()[None]
        logits = model(w[:, :-1])
        total += torch.nn.functional.cross_entropy(logits[0], w[0, 1:], reduction="sum").item()
    assert res["loss"] == pytest.approx(total / 999, rel=1e-5)
    stream = evaluate_ids(model, text, 64, batch_size=4, context="stream")
    assert stream["chars"] == 996 and math.isfinite(stream["bpc"])
