"""word2vec: cleaning, the cached pipeline, kernels, training, neighbours, evaluation, export, errors.

Everything runs on the embedded `sample` corpus or on tiny corpora written here (Cyrillic and
ё included). One trained checkpoint is shared by the tests that only read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_config

import textlab
from textlab_word2vec import data as D
from textlab_word2vec import kernels as K
from textlab_word2vec.evaluate import Vectors, _ranks, parse_queries


def _cli(*args):
    from textlab.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """prep -> vocab -> train on the sample corpus once: (checkpoint path, home folder)."""
    base = tmp_path_factory.mktemp("w2v")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTLAB_HOME", str(base / "home"))
        mp.setenv("TEXTLAB_RUNS", str(base / "runs"))
        mp.chdir(base)
        assert _cli("prep", "word2vec", "--data", "sample") == 0
        assert _cli("vocab", "word2vec", "--min-count", "3") == 0
        assert _cli("train", "word2vec", "--dim", "24", "--epochs", "4", "--threads", "1", "--out", base / "w.pt") == 0
    return base / "w.pt", base / "home"


# ============================================================================ cleaning
def test_clean_keeps_letters_of_every_script_and_drops_the_rest():
    assert D.clean("Москва — столица!  В 2024 году…") == "москва столица в году"
    assert D.clean("Ёлка, ЁЖ и берёза") == "ёлка ёж и берёза"
    assert D.clean("Ёлка, ЁЖ и берёза", fold_yo=True) == "елка еж и береза"
    assert D.clean("замо́к") == "замок"  # a stress mark is dropped, not a word break
    assert D.clean("кто-то don't café_au-lait x2y") == "кто то don t café au lait x y"
    assert D.clean("  \t1234 ... ") == ""
    # NFC: a decomposed й (и + combining breve) is the same word as the composed one
    assert D.clean("и\u0306од") == D.clean("йод") == "йод"


def test_fast_clean_gives_what_one_class_of_every_mark_gave():
    """clean() drops combining marks with two range patterns (fast); the output is the one of the
    former single class of every Mn character from U+0300 to U+1FFFF."""
    import random
    import re
    import unicodedata

    marks = re.compile("[" + "".join(re.escape(chr(c)) for c in range(0x300, 0x20000)
                                     if unicodedata.category(chr(c)) == "Mn") + "]")

    def reference(text: str, fold_yo: bool = False) -> str:
        text = text.lower()
        if not text.isascii():
            text = marks.sub("", unicodedata.normalize("NFC", text))
            if fold_yo:
                text = text.replace("ё", "е")
        return D._NON_LETTERS.sub(" ", text).strip()

    tricky = [
        "Замо́к и за́мок", "е\u0308лка, Ёж, ЁЛКА", "и\u0306од, йод, ЙОД", "Café, cafe\u0301, naïve, nai\u0308ve, Ærø, Łódź",
        "Ŝtono ĉe ŝi", "a\u0301\u0323\u0300b", "\u0301\u0301leading marks", "ᾅ Ἀθῆναι ἀλήθεια",
        "देवनागरी हिन्दी", "עִבְרִית", "مُحَمَّد", "ğüşıöç İstanbul", "x\U0001D167y \U00011001z",  # musical and Brahmi marks
        "emoji 👍🏽 ❤\ufe0f end", "𝐀𝐁𝐂 bold", "tag\U000E0100x", "кто-то, don't, 2024г., №5", "\u00a0\u2003tabs\tand\nlines",
    ]
    for text in tricky:
        for fold in (False, True):
            assert D.clean(text, fold) == reference(text, fold), text
    pool = "aéёйЁЙzЖ e\u0301\u0308\u0306\u0300\u0483\u05b0\u0951\U0001D167\U00011001\U0001F44D\ufe0f\U000E0100-,1_'"
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))
        assert D.clean(text) == reference(text), ascii(text)


def test_query_words_are_cleaned_like_the_corpus(trained):
    ckpt, _ = trained
    vec = Vectors.from_artifact(textlab.open_artifact(ckpt))
    assert vec.get("МОСКВА") == vec.get("москва") is not None
    assert vec.get("Ёлка") == vec.get("ёлка") is not None


# ============================================================================ pipeline through the CLI
def test_pipeline_steps_find_each_other_and_write_documented_files(cli, tmp_path):
    res = cli("prep", "word2vec", "--data", "sample", "--json")
    assert res.code == 0, res.err
    prep = json.loads(res.out)
    assert prep["lines"] == 3000 and prep["tokens"] > 30_000 and not prep["reused"]
    text = (Path(prep["dir"]) / "corpus.txt").read_text(encoding="utf-8")
    assert "ёлка" in text and "москва" in text and "," not in text and not any(ch.isdigit() for ch in text)
    assert json.loads(cli("prep", "word2vec", "--data", "sample", "--json").out)["reused"] is True

    res = cli("vocab", "word2vec", "--min-count", "3", "--json")  # no --data: the corpus just prepared
    assert res.code == 0, res.err
    voc = json.loads(res.out)
    folder = Path(voc["dir"])
    words = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert voc["source"] == "sample" and len(words["itos"]) == voc["vocab_size"]
    assert words["counts"] == sorted(words["counts"], reverse=True) and min(words["counts"]) >= 3
    ids = np.fromfile(folder / "ids.int32", dtype="<i4")
    offsets = np.fromfile(folder / "offsets.int64", dtype="<i8")
    assert len(ids) == voc["tokens"] and offsets[0] == 0 and offsets[-1] == len(ids) and len(offsets) == voc["sentences"] + 1
    assert ids.min() >= 0 and ids.max() < voc["vocab_size"]
    first_line = text.splitlines()[0].split()
    stoi = {w: i for i, w in enumerate(words["itos"])}
    assert list(ids[offsets[0]:offsets[1]]) == [stoi[w] for w in first_line if w in stoi]

    res = cli("pairs", "word2vec", "--window", "3", "--shard-size", "20000", "--json")
    assert res.code == 0, res.err
    pairs = json.loads(res.out)
    assert len(pairs["shards"]) >= 2 and sum(pairs["shard_pairs"]) == pairs["pairs"]
    assert pairs["shard_pairs"][:-1] == [20000] * (len(pairs["shards"]) - 1)
    shard = textlab.read_table(Path(pairs["dir"]) / pairs["shards"][0])
    assert shard.column_names == ["target", "context"] and str(shard.schema.field("target").type) == "int32"
    t = shard.column("target").to_numpy()
    assert 0 <= t.min() and t.max() < voc["vocab_size"]

    # train without --data: the last corpus; window and sample from the last 'pairs'
    res = cli("train", "word2vec", "--dim", "16", "--threads", "1", "--out", tmp_path / "w.pt", "--json")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    run = Path(out["run"])
    assert run_config(run)["dim"] == 16
    ckpt = textlab.load_checkpoint(tmp_path / "w.pt")
    assert ckpt["task"] == "word2vec" and ckpt["extra"]["train"]["window"] == 3
    assert ckpt["vocab"]["itos"] == words["itos"] and ckpt["vocab"]["counts"] == words["counts"]
    assert tuple(ckpt["state_dict"]["in_vectors"].shape) == (voc["vocab_size"], 16)
    assert (run / "checkpoints" / "last.pt").exists() and (run / "checkpoints" / "best.pt").exists()
    names = {json.loads(line)["name"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert {"loss", "lr", "pairs_per_s", "words_per_s"} <= names


def test_later_steps_build_what_is_missing_and_honour_prep_options(cli):
    assert cli("prep", "word2vec", "--data", "sample", "--fold-yo").code == 0
    res = cli("train", "word2vec", "--data", "sample", "--min-count", "2", "--dim", "8", "--threads", "1", "--json")
    assert res.code == 0, res.err  # the vocabulary did not exist: train built it from the ё-folded corpus
    ckpt = textlab.load_checkpoint(Path(json.loads(res.out)["result"]["checkpoint"]))
    assert "елка" in ckpt["vocab"]["itos"] and "ёлка" not in ckpt["vocab"]["itos"]
    assert ckpt["extra"]["normalize"]["fold_yo"] is True
    res = cli("neighbors", json.loads(res.out)["result"]["checkpoint"], "Ёлка", "-k", "3", "--json")
    assert res.code == 0 and json.loads(res.out)["positive"] == ["Ёлка"]  # looked up as елка


def test_explicit_out_folders(cli, tmp_path):
    work = tmp_path / "work"
    assert cli("prep", "word2vec", "--data", "sample", "--out", work).code == 0
    assert cli("vocab", "word2vec", "--data", work, "--out", work, "--min-count", "3").code == 0
    assert cli("pairs", "word2vec", "--data", work, "--out", work).code == 0
    assert {p.name for p in work.iterdir()} >= {"corpus.txt", "prep-info.json", "vocab.json", "ids.int32", "offsets.int64",
                                                "unigram.npz", "vocab-info.json", "pairs-00000.parquet", "pairs-info.json"}
    res = cli("train", "word2vec", "--data", work, "--pairs", "shards", "--dim", "8", "--threads", "1", "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)["result"]["summary"]
    info = json.loads((work / "pairs-info.json").read_text())
    assert summary["pairs"] == info["pairs"]  # one epoch over the shards: every pair once


def test_moved_cache_and_out_folders_still_chain(cli, tmp_path, monkeypatch):
    """Steps find their parents by fingerprint, not by the absolute folder they recorded
    (`textlab bundle` copies TEXTLAB_HOME to another machine)."""
    import shutil

    home = Path(os.environ["TEXTLAB_HOME"])
    assert cli("pairs", "word2vec", "--data", "sample", "--min-count", "3").code == 0  # builds prep and vocab too
    moved = tmp_path / "moved-home"
    shutil.move(str(home), str(moved))
    monkeypatch.setenv("TEXTLAB_HOME", str(moved))
    res = cli("train", "word2vec", "--data", "sample", "--min-count", "3", "--pairs", "shards", "--dim", "8",
              "--threads", "1", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["result"]["summary"]["pairs"] > 0
    assert not home.exists()  # nothing was rebuilt in the old place

    work = tmp_path / "work"
    assert cli("prep", "word2vec", "--data", "sample", "--out", work).code == 0
    assert cli("vocab", "word2vec", "--data", work, "--out", work, "--min-count", "3").code == 0
    assert cli("pairs", "word2vec", "--data", work, "--out", work).code == 0
    shutil.move(str(work), str(tmp_path / "work2"))
    res = cli("train", "word2vec", "--data", tmp_path / "work2", "--pairs", "shards", "--dim", "8", "--threads", "1")
    assert res.code == 0, res.err


# ============================================================================ kernels
def test_pairs_stay_inside_windows_and_sentences():
    ids = np.arange(40, dtype=np.int32)  # id = position: distances can be checked
    offsets = np.array([0, 15, 16, 40], dtype=np.int64)  # a one-word sentence in the middle
    keep = np.full(40, 2**32 - 1, dtype=np.uint32)  # no subsampling
    out_t, out_c = np.empty(1000, np.int32), np.empty(1000, np.int32)
    n, kept = K.make_pairs(ids, offsets, 0, 3, keep, 1, 7, out_t, out_c)
    assert kept == 40 and n == 2 * (15 - 1) + 2 * (24 - 1)  # window 1: each neighbour, exactly
    n, _ = K.make_pairs(ids, offsets, 0, 3, keep, 4, 7, out_t, out_c)
    t, c = out_t[:n], out_c[:n]
    sent = np.searchsorted(offsets, np.arange(40), side="right") - 1
    assert np.all(np.abs(t - c) <= 4) and np.all(t != c) and np.all(sent[t] == sent[c])
    assert 15 not in set(t.tolist()) | set(c.tolist())  # the one-word sentence has no pairs
    # shrunk windows: 2 * sum over words of E[min(window', distance to the ends)] pairs on average
    many = [K.make_pairs(ids, offsets, 0, 3, keep, 4, s, out_t, out_c)[0] for s in range(1, 400)]
    assert 2 * (14 + 23) < np.mean(many) < 2 * 4 * (14 + 23)


def test_subsampling_keeps_frequent_words_at_the_word2vec_rate():
    counts = np.array([90_000, 10_000], dtype=np.int64)
    keep = D.keep_thresholds(counts, 1e-3)
    t = 1e-3 * counts.sum()
    expected = np.minimum(1, (np.sqrt(counts / t) + 1) * t / counts)
    assert np.allclose(keep / 2**32, expected, atol=1e-6)
    ids = np.zeros(200_000, dtype=np.int32)
    buf = np.empty(len(ids), np.int32)
    n, _ = K._subsample(ids, 0, len(ids), keep, buf, np.uint64(12345))
    assert abs(n / len(ids) - expected[0]) < 0.01
    assert np.all(D.keep_thresholds(counts, 0) == 2**32 - 1)


def test_alias_table_draws_the_unigram_distribution_to_the_power_075():
    counts = np.array([5000, 1200, 300, 40, 7, 1], dtype=np.float64)
    threshold, alias = D.alias_table(counts ** 0.75)
    rng = np.random.default_rng(0)
    j = rng.integers(0, len(counts), 400_000)
    u = rng.integers(0, 2**32, 400_000, dtype=np.uint64)
    draws = np.where(threshold[j] >= u, j, alias[j])
    freq = np.bincount(draws, minlength=len(counts)) / len(draws)
    target = counts ** 0.75 / (counts ** 0.75).sum()
    assert np.allclose(freq, target, atol=0.004)


def test_shared_negatives_with_one_context_is_the_classic_update():
    rng = np.random.default_rng(1)
    syn0 = rng.normal(size=(6, 8)).astype(np.float32)
    syn1 = rng.normal(size=(6, 8)).astype(np.float32)
    a0, a1 = syn0.copy(), syn1.copy()
    ctxs, tg = np.array([2], np.int32), np.array([1, 4, 5], np.int32)
    g = np.empty((1, 3), np.float32)
    K._update(syn0, syn1, ctxs, 1, tg, 3, np.float32(0.1), g, np.empty((1, 8), np.float32), False)
    # word2vec.c: for each target, g = (label - sigmoid(v.u)) * alpha; neu1e += g u; u += g v; then v += neu1e
    v = a0[2].astype(np.float64)
    neu = np.zeros(8)
    for k, (row, label) in enumerate(zip((1, 4, 5), (1, 0, 0))):
        gk = (label - 1 / (1 + np.exp(-v @ a1[row]))) * 0.1
        neu += gk * a1[row]
        a1[row] += gk * v
    assert np.allclose(syn1, a1, atol=1e-5) and np.allclose(syn0[2], v + neu, atol=1e-5)


def test_prefetching_changes_no_number_and_looks_ahead_at_the_next_draws():
    """The kernels' prefetch hints (the next centre's rows) leave every value as it was, in both
    loops; and the rows hinted are the ones the next centre draws (the generator is deterministic)."""
    rng = np.random.default_rng(3)
    vocab, dim = 50, 24  # 24: a row spans two cache lines, the second one partly
    counts = np.sort(rng.integers(1, 500, vocab))[::-1].astype(np.float64)
    threshold, alias = D.alias_table(counts ** 0.75)
    keep = D.keep_thresholds(counts, 1e-2)
    ids = rng.integers(0, vocab, 3000).astype(np.int32)
    offsets = np.array([0, 1, 700, 701, 1900, 3000], dtype=np.int64)  # one-word sentences too
    start0 = rng.normal(size=(vocab, dim)).astype(np.float32)
    for shared in (True, False):
        out = []
        for prefetch in (False, True):
            syn0, syn1 = start0.copy(), np.zeros_like(start0)
            res = K.train_window(ids, offsets, 0, 5, keep, threshold, alias, syn0, syn1, 3, 4, 0.05, 0.001, 11,
                                 shared, 4, prefetch)
            out.append((res, syn0, syn1))
        assert out[0][0] == out[1][0]
        assert np.array_equal(out[0][1], out[1][1]) and np.array_equal(out[0][2], out[1][2])
        assert not np.array_equal(out[0][1], start0)  # it trained
    t, c = ids[:-1].copy(), ids[1:].copy()
    mats = []
    for prefetch in (False, True):
        syn0 = np.random.default_rng(5).normal(size=(vocab, dim)).astype(np.float32)
        syn1 = np.zeros_like(syn0)
        res = K.train_pairs(t, c, 0, len(t), threshold, alias, syn0, syn1, 4, 0.05, 0.001, 11, True, 4, 6, prefetch)
        mats.append((res, syn0, syn1))
    assert mats[0][0] == mats[1][0] and np.array_equal(mats[0][1], mats[1][1]) and np.array_equal(mats[0][2], mats[1][2])
    # the draws looked ahead at: after a centre's negatives, one step for the next window, then its negatives
    rnd = np.uint64(987654321)
    tg, ahead = np.empty(5, np.int32), np.empty(5, np.int32)
    rnd, _ = K._negatives(rnd, threshold, alias, 7, 4, tg)
    _, n_ahead = K._negatives(K._next(rnd), threshold, alias, 9, 4, ahead)
    _, n_next = K._negatives(K._next(rnd), threshold, alias, 9, 4, tg)
    assert n_ahead == n_next and np.array_equal(ahead[:n_ahead], tg[:n_next])


def test_vectors_start_as_word2vec_starts_them():
    from textlab_word2vec.model import init_vectors

    syn0, syn1 = init_vectors(300, 10, 4)
    assert syn0.shape == syn1.shape == (300, 10) and syn0.dtype == np.float32 and syn0.flags.writeable
    assert np.all(np.abs(syn0) <= 0.5 / 10) and syn0.std() > 0.01 and not syn1.any()
    assert np.array_equal(syn0, init_vectors(300, 10, 4)[0]) and not np.array_equal(syn0, init_vectors(300, 10, 5)[0])


# ============================================================================ training
def test_training_puts_words_of_a_group_together(trained, cli):
    ckpt, _ = trained
    res = cli("neighbors", ckpt, "москва", "-k", "5", "--json")
    assert res.code == 0, res.err
    found = [n["word"] for n in json.loads(res.out)["neighbors"]]
    assert len(set(found[:3]) & {"петербург", "казань", "новгород", "самара", "тверь"}) >= 2
    res = cli("neighbors", ckpt, "ёлка", "cat", "-k", "4")
    assert res.code == 0 and "neighbours of ёлка" in res.out and "neighbours of cat" in res.out
    assert "cosine" in res.out and "count" in res.out


def test_resume_continues_to_the_same_vectors(cli, tmp_path):
    import torch

    assert cli("prep", "word2vec", "--data", "sample").code == 0
    common = ["--dim", "8", "--epochs", "3", "--threads", "1", "--seed", "5", "--min-count", "3"]
    res = cli("train", "word2vec", *common, "--json")
    assert res.code == 0, res.err
    whole = textlab.load_checkpoint(Path(json.loads(res.out)["result"]["checkpoint"]))
    res = cli("train", "word2vec", *common, "--time-budget", "0.000001", "--name", "cut", "--json")
    assert res.code == 0, res.err
    cut = json.loads(res.out)
    assert cut["result"]["summary"]["stopped"] == "time_budget"
    state = textlab.load_checkpoint(Path(cut["run"]) / "checkpoints" / "last.pt")["train_state"]
    assert 0 < state["work"] < 3 * whole["extra"]["corpus"]["tokens"]
    res = cli("train", "--resume", cut["run"], "--time-budget", "0", "--json")
    assert res.code == 0, res.err
    resumed = textlab.load_checkpoint(Path(cut["run"]) / "checkpoints" / "best.pt")
    assert torch.equal(resumed["state_dict"]["in_vectors"], whole["state_dict"]["in_vectors"])
    assert torch.equal(resumed["state_dict"]["out_vectors"], whole["state_dict"]["out_vectors"])


def test_resume_without_data_trains_on_the_runs_own_corpus(cli, tmp_path):
    """A run started without --data resumes on its own vocabulary, not on whatever was prepared since."""
    text = tmp_path / "own.txt"
    text.write_text("".join(line + "\n" for line in D.sample_lines("valid")), encoding="utf-8")
    assert cli("prep", "word2vec", "--data", text).code == 0
    assert cli("vocab", "word2vec", "--min-count", "2").code == 0
    res = cli("train", "word2vec", "--dim", "8", "--epochs", "2", "--threads", "1", "--time-budget", "0.000001",
              "--name", "cut", "--json")
    assert res.code == 0, res.err
    cut = json.loads(res.out)
    assert cut["result"]["summary"]["stopped"] == "time_budget"
    assert "textlab train --resume" in res.err and "--time-budget 0" in res.err  # how to go on
    assert not (Path(cut["run"]) / "checkpoints" / "best.pt").exists()  # best.pt: only complete vectors
    own = textlab.load_checkpoint(Path(cut["run"]) / "checkpoints" / "last.pt")["extra"]["corpus"]
    assert cli("train", "word2vec", "--data", "sample", "--min-count", "3", "--dim", "8", "--threads", "1").code == 0
    # the stored budget is spent: one line saying how to continue, and the run is left as it was
    _one_line(cli("train", "--resume", cut["run"]), 2, "time-budget", "--time-budget 0")
    res = cli("train", "--resume", cut["run"], "--time-budget", "0", "--json")
    assert res.code == 0, res.err
    best = textlab.load_checkpoint(Path(cut["run"]) / "checkpoints" / "best.pt")
    assert best["extra"]["corpus"]["vocab_fingerprint"] == own["vocab_fingerprint"]
    assert best["extra"]["corpus"]["source"] == str(text)


def test_an_unreadable_latest_step_does_not_stop_steps_that_do_not_need_it(cli, tmp_path):
    out = tmp_path / "work"
    assert cli("prep", "word2vec", "--data", "sample", "--out", out).code == 0
    assert cli("vocab", "word2vec", "--data", out, "--out", out, "--min-count", "3").code == 0
    (out / "vocab-info.json").write_text("{", encoding="utf-8")  # latest.json names this folder
    res = cli("train", "word2vec", "--data", "sample", "--min-count", "3", "--dim", "8", "--threads", "1")
    assert res.code == 0, res.err
    assert sum("ignoring the last vocab step" in line for line in res.err_lines) == 1
    res = cli("vocab", "word2vec", "--json")  # no --data: the last prep step, readable, is what it needs
    assert res.code == 0, res.err
    (out / "prep-info.json").write_text("[]", encoding="utf-8")
    res = cli("vocab", "word2vec", "--json")  # now the step it needs is unreadable: one line
    assert res.code == 2 and len(res.err_lines) == 1 and "the last prep step cannot be read" in res.err, res.err
    assert cli("vocab", "word2vec", "--data", "sample", "--min-count", "3").code == 0


def test_ctrl_c_saves_last_pt_and_marks_the_run_interrupted(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "textlab", "train", "word2vec", "--data", "sample", "--min-count", "3",
                             "--dim", "8", "--epochs", "1000", "--threads", "1", "--save-every", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs" / "word2vec"
    deadline = time.time() + 120
    found: list = []
    while not found and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        found = list(runs.glob("*/metrics.jsonl")) if runs.exists() else []  # training is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; last.pt is saved" in err and "textlab train --resume" in err
    run = found[0].parent
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    state = textlab.load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]
    assert not state["finished"] and 0 < state["work"]


def test_torch_backend_and_per_pair_negatives_also_learn(cli):
    assert cli("prep", "word2vec", "--data", "sample").code == 0
    for extra in (["--backend", "torch", "--batch", "1024"], ["--negatives", "per-pair"]):
        res = cli("train", "word2vec", "--dim", "16", "--epochs", "3", "--threads", "1", "--min-count", "3", *extra, "--json")
        assert res.code == 0, res.err
        ckpt = json.loads(res.out)["result"]["checkpoint"]
        found = [n["word"] for n in json.loads(cli("neighbors", ckpt, "dog", "-k", "3", "--json").out)["neighbors"]]
        assert set(found) & {"cat", "horse", "cow", "goat", "sheep"}, (extra, found)


def test_torch_backend_honours_shared_negatives():
    import torch

    from textlab_word2vec.model import window_groups

    # a centre word's window shares one draw; a repeated centre and long runs are cut as the kernels cut them
    assert window_groups(torch.tensor([3, 3, 3, 5, 5, 3, 3, 3, 3]), 2).tolist() == [0, 0, 1, 2, 2, 3, 3, 4, 4]
    assert window_groups(torch.tensor([3, 3, 3, 5, 5, 3]), 10).tolist() == [0, 0, 0, 1, 1, 2]
    assert window_groups(torch.tensor([], dtype=torch.long), 4).tolist() == []


def test_torch_backend_trains_differently_with_shared_and_per_pair_negatives(cli):
    import torch

    vectors = {}
    for mode in ("shared", "per-pair"):
        res = cli("train", "word2vec", "--data", "sample", "--min-count", "3", "--dim", "8", "--threads", "1",
                  "--backend", "torch", "--negatives", mode, "--json")
        assert res.code == 0, res.err
        assert f"5 negatives ({mode})" in res.err
        vectors[mode] = textlab.load_checkpoint(json.loads(res.out)["result"]["checkpoint"])["state_dict"]["in_vectors"]
    assert not torch.equal(vectors["shared"], vectors["per-pair"])  # the option is not ignored


# ============================================================================ neighbours, eval, export
def test_analogy_syntax():
    assert parse_queries(["москва"]) == [(["москва"], [])]
    assert parse_queries(["москва", "казань"]) == [(["москва"], []), (["казань"], [])]
    want = [(["king", "woman"], ["man"])]
    assert parse_queries(["king", "-man", "+woman"]) == want
    assert parse_queries(["king - man + woman"]) == want
    assert parse_queries(["king-man+woman"]) == want
    with pytest.raises(textlab.UsageError):
        parse_queries(["-man"])
    with pytest.raises(textlab.UsageError):
        parse_queries([" "])


def test_analogy_on_the_command_line(trained, cli):
    ckpt, _ = trained
    res = cli("neighbors", ckpt, "king", "-k", "3", "--json", "--", "-man", "+woman")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["positive"] == ["king", "woman"] and data["negative"] == ["man"]
    assert not {"king", "man", "woman"} & {n["word"] for n in data["neighbors"]}


def test_neighbors_restrict_counts_only_the_restricted_pool(trained, cli):
    ckpt, _ = trained
    vec = Vectors.from_artifact(textlab.open_artifact(ckpt))
    outside, inside = vec.itos[20], vec.itos[0]
    res = cli("neighbors", ckpt, outside, "-k", "10", "--restrict", "10", "--json")
    assert res.code == 0, res.err
    found = [n["word"] for n in json.loads(res.out)["neighbors"]]
    assert sorted(found) == sorted(vec.itos[:10])  # a query word outside the pool takes no place in it
    res = cli("neighbors", ckpt, inside, "-k", "10", "--restrict", "10", "--json")
    found = [n["word"] for n in json.loads(res.out)["neighbors"]]
    assert sorted(found) == sorted(vec.itos[1:10])
    title = " ".join(cli("neighbors", ckpt, outside, "-k", "3", "--restrict", "10").out.split())  # rich wraps titles
    assert f"among the 10 most frequent of {len(vec):,})" in title
    assert f"among {len(vec):,} words" in " ".join(cli("neighbors", ckpt, outside, "-k", "3").out.split())
    _one_line(cli("neighbors", ckpt, inside, "--restrict", "1"), 2, "--restrict 1 leaves no word to search")


def test_out_of_vocabulary_word_is_one_line_with_the_closest_words(trained, cli):
    ckpt, _ = trained
    res = cli("neighbors", ckpt, "масква")
    assert res.code == 2 and len(res.err_lines) == 1
    assert "'масква' is not in the vocabulary" in res.err and "москва" in res.err
    res = cli("neighbors", ckpt, "king", "--", "-qqqqqq")
    assert res.code == 2 and len(res.err_lines) == 1 and "qqqqqq" in res.err


def test_eval_matches_gensim(trained, cli, tmp_path):
    gensim = pytest.importorskip("gensim")
    ckpt, _ = trained
    (tmp_path / "q.txt").write_text(
        ": capitals\nмосква казань петербург новгород\nlondon paris berlin madrid\n"
        ": gram-animals\ncat dog horse cow\nкошка собака лошадь корова\ncat dog unknownword cow\n", encoding="utf-8")
    (tmp_path / "sim.tsv").write_text(
        "# word1\tword2\tscore\ncat\tdog\t8\ncat\tred\t1\nмосква\tказань\t7\nмосква\tкошка\t2\nred\tgreen\t6\n"
        "paris\tlondon\t7\nёлка\tберёза\t7\nкошка\tnosuchword\t5\ngoat\tsheep\t8\n", encoding="utf-8")
    res = cli("eval", ckpt, "--analogies", tmp_path / "q.txt", "--similarity", tmp_path / "sim.tsv", "--json")
    assert res.code == 0, res.err
    ours = json.loads(res.out)
    assert cli("export", ckpt, "--output", tmp_path / "v.txt").code == 0
    kv = gensim.models.KeyedVectors.load_word2vec_format(str(tmp_path / "v.txt"), binary=False)
    score, sections = kv.evaluate_word_analogies(str(tmp_path / "q.txt"), restrict_vocab=30000)
    assert ours["analogies"]["accuracy"] == pytest.approx(score, abs=1e-4)
    assert ours["analogies"]["evaluated"] == 4 and ours["analogies"]["skipped_oov"] == 1
    (pearson, _), (spearman, _), oov = kv.evaluate_word_pairs(str(tmp_path / "sim.tsv"))
    sim = ours["similarity"][0]
    assert sim["spearman"] == pytest.approx(spearman, abs=1e-3) and sim["pearson"] == pytest.approx(pearson, abs=1e-3)
    assert sim["oov_pct"] == pytest.approx(oov, abs=0.01) and sim["pairs"] == 8
    assert (ckpt.parent / "w-eval" / "word2vec-eval.json").exists()


def test_spearman_ranks_handle_ties_like_scipy():
    import torch
    from scipy.stats import rankdata

    x = torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0, 0.5], dtype=torch.float64)
    assert _ranks(x).tolist() == rankdata(x.numpy()).tolist()


@pytest.mark.parametrize("fmt,binary", [("word2vec-text", False), ("word2vec-binary", True)])
def test_export_round_trip_through_gensim(trained, cli, tmp_path, fmt, binary):
    gensim = pytest.importorskip("gensim")
    ckpt, _ = trained
    out = tmp_path / f"vectors.{fmt}"
    res = cli("export", ckpt, "--format", fmt, "--output", out, "--json")
    assert res.code == 0, res.err
    kv = gensim.models.KeyedVectors.load_word2vec_format(str(out), binary=binary)
    data = textlab.load_checkpoint(ckpt)
    itos, matrix = data["vocab"]["itos"], data["state_dict"]["in_vectors"].numpy()
    assert kv.index_to_key == itos and "ёлка" in kv.key_to_index
    assert np.allclose(kv.vectors, matrix, rtol=1e-5, atol=1e-6) if not binary else np.array_equal(kv.vectors, matrix)
    res = cli("export", ckpt, "--format", fmt, "--output", tmp_path / "top.txt", "--limit", "10", "--json")
    assert json.loads(res.out)["words"] == 10


# ============================================================================ bad inputs: one line, non-zero exit
def _one_line(res, code, *needles):
    assert res.code == code, (res.code, res.err)
    assert len(res.err_lines) == 1, res.err
    for n in needles:
        assert n in res.err, res.err


def test_missing_steps_and_sources(cli, tmp_path):
    _one_line(cli("vocab", "word2vec"), 2, "no prepared corpus yet", "textlab prep word2vec --data")
    _one_line(cli("train", "word2vec"), 2, "no prepared corpus yet")
    assert not (tmp_path / "runs" / "word2vec").exists()  # the failed train left no run directory
    _one_line(cli("prep", "word2vec", "--data", "nosuch.txt"), 2, "no such file or folder: nosuch.txt")
    _one_line(cli("prep", "word2vec"), 2, "--data")
    (tmp_path / "empty.txt").write_text("123 ... !!!\n\n", encoding="utf-8")
    _one_line(cli("prep", "word2vec", "--data", tmp_path / "empty.txt"), 2, "holds no words")
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip at all")
    _one_line(cli("prep", "word2vec", "--data", tmp_path / "bad.txt.gz"), 2, "bad.txt.gz")
    (tmp_path / "t.csv").write_text("a,b\nx,y\n", encoding="utf-8")
    _one_line(cli("prep", "word2vec", "--data", tmp_path / "t.csv"), 2, "no column 'text'")
    assert cli("prep", "word2vec", "--data", tmp_path / "t.csv", "--column", "b").code == 0
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["Привет, мир!", None, "Ёж 42"]}), tmp_path / "t.parquet", row_group_size=1)
    _one_line(cli("prep", "word2vec", "--data", tmp_path / "t.parquet"), 2, "no column 'text'", "body")
    res = cli("prep", "word2vec", "--data", tmp_path / "t.parquet", "--column", "body", "--json")
    assert res.code == 0 and json.loads(res.out)["lines"] == 2
    assert (Path(json.loads(res.out)["dir"]) / "corpus.txt").read_text(encoding="utf-8") == "привет мир\nёж\n"
    # a Hugging Face name without network (the tests run offline): one line saying to pass local files
    _one_line(cli("prep", "word2vec", "--data", "no_such_corpus_xyz"), 2, "no_such_corpus_xyz", "local")


def test_bad_options(cli, tmp_path):
    assert cli("prep", "word2vec", "--data", "sample").code == 0
    _one_line(cli("vocab", "word2vec", "--min-count", "100000"), 2, "no word occurs 100000 times")
    _one_line(cli("vocab", "word2vec", "--min-count", "0"), 2, "--min-count")
    _one_line(cli("pairs", "word2vec", "--sample", "2"), 2, "--sample", "0<=x<1")
    _one_line(cli("train", "word2vec", "--lr", "0.01", "--min-lr", "0.1"), 2, "--min-lr")
    _one_line(cli("train", "word2vec", "--pairs", "sometimes"), 2, "sometimes")
    _one_line(cli("train", "word2vec", "--out", tmp_path), 2, "is a folder")
    assert not (tmp_path / "runs" / "word2vec").exists()


def test_bad_eval_export_and_checkpoints(trained, cli, tmp_path):
    ckpt, _ = trained
    _one_line(cli("eval", ckpt), 2, "nothing to evaluate")
    _one_line(cli("eval", ckpt, "--analogies", tmp_path / "nope.txt"), 2, "no such file")
    (tmp_path / "bad.txt").write_text(": sec\nonly three words\n", encoding="utf-8")
    _one_line(cli("eval", ckpt, "--analogies", tmp_path / "bad.txt"), 2, "expected 4 words")
    (tmp_path / "bad.tsv").write_text("cat dog\n", encoding="utf-8")
    _one_line(cli("eval", ckpt, "--similarity", tmp_path / "bad.tsv"), 2, "word1 word2 score")
    _one_line(cli("export", ckpt, "--output", tmp_path), 2, "is a folder")
    _one_line(cli("export", ckpt, "--format", "glove"), 2, "glove")
    _one_line(cli("neighbors", ckpt, "москва", "-k", "0"), 2, "-k")
    hollow = textlab.save_checkpoint(tmp_path / "hollow.pt", task="word2vec", model="sgns", config={}, state_dict={})
    _one_line(cli("neighbors", hollow, "москва"), 1, "holds no word vectors")
    _one_line(cli("neighbors", tmp_path / "nothing.pt", "москва"), 2, "no such run directory or checkpoint")


def test_neighbors_of_a_missing_checkpoint_says_how_to_make_one(cli):
    """Issue #27 (c): the README's first command without word2vec.pt is a usage error (exit 2) whose
    hint is the task's quickstart, and those commands do make word2vec.pt."""
    from textlab_word2vec.task import QUICKSTART

    res = cli("neighbors", "word2vec.pt", "москва", "-k", "10")
    _one_line(res, 2, "no such run directory or checkpoint: word2vec.pt",
              "make one: textlab prep word2vec --data sample && textlab vocab word2vec && "
              "textlab train word2vec --out word2vec.pt")
    for command in QUICKSTART.split(" && "):
        words = command.split()[1:]
        assert cli(*words, *(["--threads", "1"] if words[0] == "train" else [])).code == 0, command
    assert cli("neighbors", "word2vec.pt", "москва", "-k", "10").code == 0


TRAIN_SMALL = ["--data", "sample", "--min-count", "3", "--dim", "8", "--threads", "1"]


@pytest.mark.parametrize("args,needle", [
    (["--lr", "0", "--min-lr", "0"], "--lr: 0 is not in the range x>0"),  # 0.1.0 trained nothing
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "inf"], "--lr: 'inf' is not a finite number"),  # 0.1.0 trained to nan
    (["--min-lr", "0.1"], "--min-lr 0.1 is above --lr 0.025"),
    (["--sample", "-0.1"], "--sample"),
    (["--sample", "1"], "--sample: 1 is not in the range 0<=x<1"),
    (["--window", "0"], "--window"),
    (["--window", "1001"], "--window"),  # 0.1.0 ran out of memory making the pair buffers
    (["--negative", "0"], "--negative"),
    (["--epochs", "0"], "--epochs"),
    (["--time-budget", "-1"], "--time-budget"),
    (["--save-every", "-5"], "--save-every"),
    (["--backend", "numba", "--batch", "64"], "--batch applies to --backend auto or --backend torch"),  # 0.1.0 ignored it
])
def test_every_train_option_takes_only_values_that_work(cli, tmp_path, args, needle):
    """Issue #27 (d): a value outside an option's working range is one line, exit 2, and no run."""
    _one_line(cli("train", "word2vec", *TRAIN_SMALL, *args), 2, needle)
    assert not (tmp_path / "runs" / "word2vec").exists()


def test_step_options_take_only_values_that_work(cli, tmp_path):
    assert cli("prep", "word2vec", "--data", "sample").code == 0
    _one_line(cli("pairs", "word2vec", "--window", "0"), 2, "--window")
    _one_line(cli("pairs", "word2vec", "--sample", "1"), 2, "--sample")
    _one_line(cli("pairs", "word2vec", "--shard-size", "999"), 2, "--shard-size")
    _one_line(cli("vocab", "word2vec", "--max-sentence", "1"), 2, "--max-sentence")
    _one_line(cli("vocab", "word2vec", "--max-vocab", "0"), 2, "--max-vocab")


def test_a_negative_seed_is_a_seed(cli):
    res = cli("train", "word2vec", *TRAIN_SMALL, "--seed", "-1", "--json")  # 0.1.0: internal error (numpy's rng)
    assert res.code == 0, res.err


def test_a_learning_rate_that_diverges_fails_the_run_and_keeps_no_nan(cli, tmp_path):
    """Issue #27 (a): vectors that become nan stop the run, marked failed with the step; no nan is
    saved, neither as best.pt nor over a good last.pt."""
    import torch

    def failed(res, *needles):  # the error is the last line (after the lines that say how training started)
        assert res.code == 1, res.err
        error = [line for line in res.err_lines if line.startswith("error:")]
        assert error == res.err_lines[-1:] and all(n in error[0] for n in needles), res.err

    failed(cli("train", "word2vec", *TRAIN_SMALL, "--lr", "1", "--json"), "non-finite", "by step", "try a lower --lr")
    run = next((tmp_path / "runs" / "word2vec").iterdir())
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "by step" in info["error"]
    assert not list(run.glob("checkpoints/*.pt"))

    res = cli("train", "word2vec", *TRAIN_SMALL, "--epochs", "3", "--time-budget", "0.000001", "--name", "cut", "--json")
    assert res.code == 0, res.err
    cut = Path(json.loads(res.out)["run"])
    last = cut / "checkpoints" / "last.pt"
    good = last.read_bytes()
    assert torch.isfinite(textlab.load_checkpoint(last)["state_dict"]["in_vectors"]).all()
    failed(cli("train", "--resume", cut, "--lr", "1", "--time-budget", "0"), "non-finite", f"{last} keeps step")
    assert last.read_bytes() == good and not (cut / "checkpoints" / "best.pt").exists()
    assert json.loads((cut / "run.json").read_text())["status"] == "failed"


def _metric_keys(run: Path) -> list[tuple]:
    return [(r["step"], r["split"], r["name"]) for r in textlab.read_metrics(run)]


def test_resuming_a_finished_run_logs_no_step_twice(cli):
    """Issue #27 (b): a finished run resumed says there is nothing to do and writes nothing; with
    more epochs it logs the new steps only."""
    import shutil

    res = cli("train", "word2vec", *TRAIN_SMALL, "--json")
    assert res.code == 0, res.err
    run = Path(json.loads(res.out)["run"])
    before = {p.name: p.read_bytes() for p in run.glob("checkpoints/*.pt")}
    log = (run / "metrics.jsonl").read_bytes()
    shutil.rmtree(textlab.textlab_home())  # it reads no data either (its corpus is gone: no matter)
    res = cli("train", "--resume", run, "--json")
    assert res.code == 0, res.err
    assert "nothing to do" in res.err and json.loads(res.out)["result"]["stopped"] == "nothing to do"
    assert (run / "metrics.jsonl").read_bytes() == log
    assert {p.name: p.read_bytes() for p in run.glob("checkpoints/*.pt")} == before
    assert not textlab.textlab_home().exists()
    res = cli("train", "--resume", run, "--epochs", "2", "--json")  # its corpus (sample) made again
    assert res.code == 0, res.err
    keys = _metric_keys(run)
    assert len(keys) == len(set(keys)) and max(k[0] for k in keys) == 2 * min(k[0] for k in keys)
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_a_resume_refuses_another_vocabulary_in_one_line(cli):
    res = cli("train", "word2vec", *TRAIN_SMALL, "--epochs", "2", "--time-budget", "0.000001", "--json")
    assert res.code == 0, res.err
    run = Path(json.loads(res.out)["run"])
    last = (run / "checkpoints" / "last.pt").read_bytes()
    info = (run / "run.json").read_text()
    res = cli("train", "--resume", run, "--data", "sample", "--min-count", "200", "--time-budget", "0")
    _one_line(res, 2, "trained on another vocabulary", "--min-count")
    assert (run / "checkpoints" / "last.pt").read_bytes() == last and (run / "run.json").read_text() == info


def test_truncated_ids_are_reported(cli, tmp_path):
    assert cli("prep", "word2vec", "--data", "sample").code == 0
    res = cli("vocab", "word2vec", "--json")
    ids = Path(json.loads(res.out)["dir"]) / "ids.int32"
    with open(ids, "r+b") as fh:
        fh.truncate(ids.stat().st_size - 8)
    _one_line(cli("train", "word2vec"), 2, "wrong size", "--force")
    assert not (tmp_path / "runs" / "word2vec").exists()


# ============================================================================ as an embedder for other tasks
def test_embedder_learns_vectors_in_its_folder_and_leaves_the_users_steps_alone(cli, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # one Hogwild worker: reproducible
    text = tmp_path / "task.txt"
    text.write_text("".join(line + "\n" for line in D.sample_lines("train")), encoding="utf-8")
    spec = textlab.registry().embedder("word2vec")
    got = spec.train(text, tmp_path / "emb", dim=16, seed=5)
    vectors = Path(got["vectors"])
    lines = vectors.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{got['words']} 16" and len(lines) == got["words"] + 1 and len(lines[1].split()) == 17
    counts = {}
    for line in text.read_text(encoding="utf-8").splitlines():
        for w in D.clean(line).split():
            counts[w] = counts.get(w, 0) + 1
    assert got["words"] == sum(c >= 2 for c in counts.values())  # words seen twice or more
    # the word2vec run inside the folder is a normal one: neighbours work on it, and it learned
    res = cli("neighbors", got["run"], "москва", "-k", "5", "--json")
    assert res.code == 0, res.err
    found = [n["word"] for n in json.loads(res.out)["neighbors"]]
    assert len(set(found) & {"петербург", "казань", "новгород", "самара", "тверь"}) >= 2, found
    assert not (textlab.textlab_home() / "word2vec" / "latest.json").exists()  # the user's own steps are untouched
    again = spec.train(text, tmp_path / "emb2", dim=16, seed=5)
    assert Path(again["vectors"]).read_text(encoding="utf-8") == vectors.read_text(encoding="utf-8")
    (tmp_path / "one.txt").write_text("each word once\n", encoding="utf-8")
    with pytest.raises(textlab.DataError, match="twice|2 times"):
        spec.train(tmp_path / "one.txt", tmp_path / "emb3", dim=8)
