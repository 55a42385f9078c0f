"""The data paths made to scale (issue #24) give the same results as the in-memory ones they replace.

word2vec: counting the vocabulary in sorted runs on disk (bounded memory) gives the vocabulary,
ids and negative-sampling table of one Counter over the whole corpus.
gla: preparing and counting the characters line by line gives the files and vocabulary of reading
each split whole; the memory-mapped ids are those of `encode`.
agnews: tokenising in batches of rows into flat arrays gives the cache of tokenising every row in
one list; counting the vocabulary in blocks gives the same vocabulary.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import textlab
from textlab_word2vec import data as W


def _words_corpus(path: Path, lines: int = 400, seed: int = 0) -> Path:
    """A corpus with a Zipf-like head, many rare words and ties between counts."""
    rng = random.Random(seed)
    head = ["и", "в", "не", "он", "на", "я", "что", "тот", "быть", "с"]
    rare = ["".join(rng.choice("абвгдежзиклмнопрстуфхцчшщэюя") for _ in range(rng.randint(2, 7))) for _ in range(900)]
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(lines):
            words = [head[int(len(head) ** rng.random()) - 1] if rng.random() < 0.5 else rng.choice(rare)
                     for _ in range(rng.randint(0, 40))]
            fh.write(" ".join(words) + "\n")
    return path


def _vocab_files(folder: Path) -> dict:
    return {name: (folder / name).read_bytes() for name in ("vocab.json", "ids.int32", "offsets.int64", "unigram.npz")}


@pytest.mark.parametrize("min_count,max_vocab", [(1, None), (3, None), (2, 150)])
def test_word2vec_vocab_counted_in_runs_on_disk_is_the_one_of_one_counter(tmp_path, monkeypatch, min_count, max_vocab):
    monkeypatch.setenv("TEXTLAB_HOME", str(tmp_path / "home"))
    src = _words_corpus(tmp_path / "corpus.txt")
    prepared, _ = W.prep(str(src))
    built = {}
    for spill in (10**9, 37):  # everything in memory; a run on disk every 37 distinct words
        monkeypatch.setattr(W, "SPILL_WORDS", spill)
        step, reused = W.build_vocab(prepared, min_count=min_count, max_vocab=max_vocab, max_sentence=15,
                                     out=str(tmp_path / f"v{spill}"))
        assert not reused and not list(step.dir.glob("*.tmp"))  # the runs are gone
        built[spill] = _vocab_files(step.dir)
    assert built[37] == built[10**9]
    # ... and both are what textlab.Vocab.build of one Counter gives (the former code)
    counts = Counter(w for line in open(prepared.path("corpus.txt"), encoding="utf-8") for w in line.split())
    ref = textlab.Vocab.build(counts, min_count=min_count, max_size=max_vocab)
    got = json.loads(built[37]["vocab.json"])
    assert got["itos"] == ref.itos and got["counts"] == ref.counts
    assert len(set(ref.counts)) < len(ref.counts)  # ties were there to be ordered


def test_word2vec_clean_checks_for_characters_beyond_the_bmp_as_before():
    assert W.clean("a\U0001D17Fb \U0001F600 ok") == "ab ok"  # an astral mark dropped, an emoji a space
    assert W.clean("Ёж") == "ёж"
    sample = "".join(random.Random(1).choice("аб в\u0301Г\U0001D167\U00010400-") for _ in range(2000))
    bmp, astral = W._marks()
    text = bmp.sub("", __import__("unicodedata").normalize("NFC", sample.lower()))
    assert W.clean(sample) == W._NON_LETTERS.sub(" ", astral.sub("", text)).strip()


def test_word2vec_vocab_ids_follow_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(W, "SPILL_WORDS", 20)
    src = _words_corpus(tmp_path / "corpus.txt", lines=120, seed=3)
    step, _ = W.build_vocab(W.prep(str(src))[0], min_count=2, max_sentence=7)
    itos = json.loads((step.dir / "vocab.json").read_text(encoding="utf-8"))["itos"]
    stoi = {w: i for i, w in enumerate(itos)}
    ids = np.fromfile(step.dir / "ids.int32", dtype="<i4")
    offs = np.fromfile(step.dir / "offsets.int64", dtype="<i8")
    want, starts = [], [0]
    for line in src.read_text(encoding="utf-8").splitlines():
        enc = [stoi[w] for w in line.split() if w in stoi]
        for a in range(0, len(enc), 7):
            want += enc[a:a + 7]
            starts.append(len(want))
    assert ids.tolist() == want and offs.tolist() == starts
    assert step.info["raw_tokens"] == sum(len(line.split()) for line in src.read_text(encoding="utf-8").splitlines())
