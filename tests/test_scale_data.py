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



@pytest.mark.parametrize("vocab_size,dim,seed", [(1000, 100, 1), (37, 7, -1), (5, 300, 12345)])
def test_word2vec_vectors_start_as_before_without_temporary_matrices(vocab_size, dim, seed):
    from textlab_word2vec.model import init_vectors

    rng = np.random.default_rng(seed % 2**64)
    former = ((rng.random((vocab_size, dim), dtype=np.float32) - np.float32(0.5)) / np.float32(dim)).astype(np.float32)
    syn0, syn1 = init_vectors(vocab_size, dim, seed)
    assert syn0.dtype == np.float32 and syn0.tobytes() == former.tobytes()
    assert syn1.shape == (vocab_size, dim) and not syn1.any()


# ============================================================================ gla
def _gla_old_read_split(source, split):
    """The former read_split: each file read whole, a folder's files joined by a line end, one
    file cut 90/5/5 at line boundaries."""
    from textlab_gla import data as G

    def read_file(path):
        name = path.name.lower().removesuffix(".gz")
        if name.endswith(G.TABLE_SUFFIXES):
            texts = textlab.read_table(path, ["text"]).column("text").to_pylist()
            return "".join(t if t.endswith("\n") or not t else t + "\n" for t in texts if t is not None)
        return "".join(line + "\n" for line in textlab.iter_lines(path))

    def cut(text):  # one text -> train / valid / test = 90 / 5 / 5 % at line boundaries
        n = len(text)
        a, b = (n if (i := text.find("\n", int(n * f))) < 0 else i + 1 for f in (0.90, 0.95))
        return text[:a], text[a:b], text[b:]

    path = source.path
    if path.is_dir():
        return "\n".join(read_file(f) for f in G.split_files(path, split))
    return cut(read_file(path))[G.SPLITS.index(split)]


def _gla_text(rng: random.Random, lines: int) -> str:
    """Lines with CRLF and CR ends, <unk>, decomposed letters (a combining mark first on a line
    too), characters beyond the BMP, empty lines."""
    parts = ["ab", "Cé", "e\u0301", "\u0301x", " <unk> ", "\U0001F600", "ё", "  ", "= T =", "z"]
    out = []
    for _ in range(lines):
        out.append("".join(rng.choice(parts) for _ in range(rng.randint(0, 12))) + rng.choice(["\n", "\r\n", "\r"]))
    return "".join(out)


@pytest.fixture()
def gla_home(tmp_path, monkeypatch):
    from textlab_gla import data as G

    monkeypatch.setenv("TEXTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(G, "BLOCK", 64)  # many blocks on small data
    return G


def test_gla_prepare_streamed_is_the_normalised_whole_split(tmp_path, gla_home):
    import pyarrow as pa
    import pyarrow.parquet as pq

    G = gla_home
    rng = random.Random(0)
    folder = tmp_path / "wt"
    folder.mkdir()
    (folder / "train.txt").write_bytes(_gla_text(rng, 300).encode("utf-8"))
    (folder / "valid.txt").write_bytes(_gla_text(rng, 40).encode("utf-8"))
    rows = [_gla_text(rng, 1).rstrip("\r\n") for _ in range(50)] + ["", "line\n"]
    pq.write_table(pa.table({"text": rows}), folder / "test.parquet", row_group_size=7)
    one = tmp_path / "one.txt"
    one.write_bytes(_gla_text(rng, 500).encode("utf-8"))
    for data in (folder, one):
        source = textlab.resolve("gla", str(data))
        meta = G.prepare(str(data))
        for split in G.SPLITS:
            want = G.normalize(_gla_old_read_split(source, split))
            got = (Path(meta["dir"]) / f"{split}.txt").read_bytes().decode("utf-8")
            assert got == want and G.read_split(source, split) == _gla_old_read_split(source, split)
            assert meta["splits"][split] == {"chars": len(want), "lines": want.count("\n"),
                                             "distinct": len(set(want)), "unk": want.count(G.UNK)}


def test_gla_vocab_counted_by_blocks_is_the_one_of_the_whole_text(tmp_path, gla_home):
    G = gla_home
    folder = tmp_path / "wt"
    folder.mkdir()
    rng = random.Random(1)
    for split, n in (("train", 400), ("valid", 60), ("test", 60)):
        (folder / f"{split}.txt").write_text(_gla_text(rng, n) + ("Ω∑ unseen" if split == "test" else ""),
                                             encoding="utf-8")
    for min_count in (1, 5):
        voc, report = G.vocab_for(str(folder), min_count)
        texts = G.load_texts(str(folder))
        ref = G.build_vocab(texts["train"], min_count)
        assert voc.itos == ref.itos and voc.counts == ref.counts
        assert report == json.loads(json.dumps(G.coverage(ref, texts)))
        assert report["splits"]["test"]["unknown_distinct"] >= 2
        for split in G.SPLITS:
            ids = G.load_ids(str(folder), voc, split)
            assert ids.dtype == G.encode(texts[split], voc).dtype and ids.tolist() == G.encode(texts[split], voc).tolist()
        files = sorted(Path(G.prepare(str(folder))["dir"]).glob("train.*.int16"))
        stamp = [f.stat().st_mtime_ns for f in files]
        assert G.load_ids(str(folder), voc, "train").tolist() == G.encode(texts["train"], voc).tolist()
        assert [f.stat().st_mtime_ns for f in files] == stamp  # the ids file is reused, not written again


def test_gla_encode_by_blocks_is_the_former_encode(gla_home):
    import torch

    G = gla_home
    text = _gla_text(random.Random(2), 200)
    voc = G.build_vocab(text[: len(text) // 3], min_count=2)

    def old_encode(text, vocab):
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        dtype = np.int16 if len(vocab) < 2 ** 15 else np.int32
        table = np.full(int(max(cps.max(), max(ord(c) for c in vocab.itos))) + 1, vocab.unk_id, dtype=dtype)
        for ch, i in vocab.stoi.items():
            table[ord(ch)] = i
        return torch.from_numpy(table[cps])

    got, want = G.encode(text, voc), old_encode(text, voc)
    assert got.dtype == want.dtype == torch.int16 and torch.equal(got, want)
    assert G.encode("", voc).dtype == torch.int16 and len(G.encode("", voc)) == 0


def test_gla_prepared_data_is_not_read_again(gla_home, monkeypatch):
    G = gla_home
    meta = G.prepare("sample")
    monkeypatch.setattr(G, "split_pieces", lambda *a: pytest.fail("read the source again"))
    assert G.prepare("sample")["splits"] == meta["splits"]


# ============================================================================ agnews
def _agnews_old_prepare(source, split, tokenizer, path):
    """The former prepare: every row loaded, checked, tokenised into one list, saved with torch."""
    import torch
    from textlab_agnews import data as A

    rows = A.load_rows(source, split)
    index, ids, offsets = {}, [], [0]
    for text in rows["text"]:
        toks = A.tokenize(text, tokenizer) or ["<unk>"]
        ids.extend(index.setdefault(t, len(index)) for t in toks)
        offsets.append(len(ids))
    with open(path, "wb") as fh:
        torch.save({"words": json.dumps(list(index), ensure_ascii=False), "ids": torch.tensor(ids, dtype=torch.int32),
                    "offsets": torch.tensor(offsets, dtype=torch.int64),
                    "labels": torch.tensor(rows["label"], dtype=torch.int64)}, fh)


@pytest.fixture()
def agnews_data(tmp_path, monkeypatch):
    """A folder: train as two parquet files of several row groups (some rows of punctuation
    only), test as a classic CSV; the batches and blocks made small."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from textlab_agnews import data as A

    monkeypatch.setenv("TEXTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(A, "BATCH_ROWS", 13)
    monkeypatch.setattr(A, "BLOCK_ROWS", 17)
    sample = A.make_sample("train")
    texts = [t if i % 50 else "... !!" for i, t in enumerate(sample["text"])]
    folder = tmp_path / "ag"
    folder.mkdir()
    half = len(texts) // 2
    for name, a, b in (("train-00000-of-00002.parquet", 0, half), ("train-00001-of-00002.parquet", half, len(texts))):
        pq.write_table(pa.table({"text": texts[a:b], "label": sample["label"][a:b]}), folder / name, row_group_size=29)
    test = A.make_sample("test")
    (folder / "test.csv").write_text("".join(f'"{y + 1}","{t[:20]}","{t[20:]}"\n' for t, y in zip(test["text"], test["label"])),
                                     encoding="utf-8")
    return A, folder


@pytest.mark.parametrize("tokenizer", ["builtin", "nltk"])
def test_agnews_prepare_by_batches_writes_the_cache_of_one_list(agnews_data, tmp_path, tokenizer):
    A, folder = agnews_data
    for data, split in ((str(folder), "train"), (str(folder), "test"), ("sample", "train")):
        source = A.resolve(data)
        prep = A.prepare(source, split, tokenizer=tokenizer)
        key = source.fingerprint(split, A.CLEANING, A.SAMPLE_VERSION, tokenizer)
        cached = textlab.cache_dir("agnews", "prepared", key) / f"{split}-v2.pt"
        _agnews_old_prepare(source, split, tokenizer, tmp_path / "old.pt")
        assert cached.read_bytes() == (tmp_path / "old.pt").read_bytes()
        assert not list(cached.parent.glob("*.tmp"))
        again = A.prepare(source, split, tokenizer=tokenizer)  # from the cache, memory-mapped
        assert again.words == prep.words and again.ids.tolist() == prep.ids.tolist()


def test_agnews_counts_coverage_encode_and_text_by_blocks_are_the_former_ones(agnews_data, tmp_path):
    import torch

    A, folder = agnews_data
    prep = A.prepare(A.resolve(str(folder)), "train")
    train_idx, valid_idx = A.split_valid(prep.labels, 0.1)
    # the former formulas, on the whole split at once
    keep = torch.zeros(len(prep), dtype=torch.bool)
    keep[train_idx] = True
    counts = torch.bincount(prep.ids[torch.repeat_interleave(keep, prep.lengths)], minlength=len(prep.words))
    assert torch.equal(prep.counts(train_idx), counts) and torch.equal(prep.counts(), torch.bincount(prep.ids))
    vocab = A.build_vocab(prep, train_idx, 2)
    lut = torch.tensor([vocab.stoi.get(w, A.UNK) for w in prep.words], dtype=torch.int64)
    assert torch.equal(A.encode(prep, vocab).ids, lut[prep.ids.long()])
    token_rows = torch.repeat_interleave(torch.arange(len(prep)), prep.lengths)
    in_valid = torch.zeros(len(prep), dtype=torch.bool)
    in_valid[valid_idx] = True
    for cov in A.coverage(prep, train_idx, valid_idx, [1, 2, 5]):
        known = counts >= cov["min_count"]
        unknown = torch.zeros(len(prep), dtype=torch.bool)
        unknown[token_rows[in_valid[token_rows] & ~known[prep.ids.long()]]] = True
        assert cov["valid_rows_known"] == 1.0 - float(unknown[valid_idx].float().mean())
    assert 0 < A.coverage(prep, train_idx, valid_idx, [5])[0]["valid_rows_known"] < 1
    A.write_text(prep, train_idx, tmp_path / "t.txt")
    ids, offs = prep.ids.tolist(), prep.offsets.tolist()
    want = "".join(" ".join(prep.words[j] for j in ids[offs[i]:offs[i + 1]]) + "\n" for i in sorted(train_idx.tolist()))
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == want


def test_agnews_bad_rows_are_found_in_any_batch(agnews_data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    A, _ = agnews_data
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"text": ["fine text"] * 40 + [""], "label": [1] * 41}), bad / "train.parquet", row_group_size=7)
    with pytest.raises(textlab.DataError, match="row 41 has an empty text"):
        A.prepare(A.resolve(str(bad)), "train")
    pq.write_table(pa.table({"text": ["fine"] * 30, "label": [0] * 29 + [7]}), bad / "train.parquet", row_group_size=7)
    with pytest.raises(textlab.DataError, match="row 30 has label 7"):
        A.prepare(A.resolve(str(bad)), "train")
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}), bad / "train.parquet")
    with pytest.raises(textlab.DataError, match="has no rows"):
        A.prepare(A.resolve(str(bad)), "train")
    assert not [p for p in (tmp_path / "home").rglob("*") if p.is_file()]  # nothing cached, no spill left


# ============================================================================ core: textlab.iter_parquet
def test_iter_parquet_reads_every_row_in_batches_and_fails_in_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(95)], "n": list(range(95)), "x": [0.5] * 95}), path,
                   row_group_size=20)
    batches = list(textlab.iter_parquet(path, ["n", "text"], batch_size=7))
    assert max(b.num_rows for b in batches) <= 7 and batches[0].schema.names == ["n", "text"]
    assert [v for b in batches for v in b.column(0).to_pylist()] == list(range(95))
    with pytest.raises(textlab.DataError, match="has no column 'label'") as err:
        list(textlab.iter_parquet(path, ["text", "label"]))
    assert "its columns: text, n, x" in err.value.hint
    with pytest.raises(textlab.DataError, match="has no column 'label'") as err:
        list(textlab.iter_parquet(path, ["label"], hint="choose one with --column"))
    assert err.value.hint == "its columns: text, n, x; choose one with --column"
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(textlab.DataError, match="cannot read"):
        list(textlab.iter_parquet(tmp_path / "bad.parquet", ["text"]))
