"""Data sources, readers, cache fingerprints, atomic writes, vocabulary and tokenizer."""

from __future__ import annotations

import gzip
import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import textlab
from textlab.data import atomic_write, fingerprint, iter_lines, load_hub, read_table, resolve, split_files
from textlab.errors import DataError, UsageError
from textlab.text import Vocab, words


def test_resolve_kinds(toy, tmp_path):
    assert resolve("toy", "sample").kind == "registered"
    (tmp_path / "d.csv").write_text("text,label\na,0\n")
    src = resolve("toy", "d.csv")
    assert src.kind == "local" and src.path.name == "d.csv"
    hub = resolve("toy", "wikitext:wikitext-103-raw-v1")
    assert (hub.kind, hub.ref, hub.config) == ("hub", "wikitext", "wikitext-103-raw-v1")
    assert resolve("toy", "ag_news").kind == "hub"
    assert resolve("toy", "stanfordnlp/imdb").kind == "hub"  # org/name is a hub name...
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="no such file or folder"):
        resolve("toy", "data/varchain")  # ...unless its first part is a local folder
    with pytest.raises(DataError, match="no such file or folder"):
        resolve("toy", "./missing/folder")
    with pytest.raises(DataError, match="no such file"):
        resolve("toy", "missing.parquet")


def test_load_hub_offline_fails_fast_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(DataError) as err:
        load_hub("someone/surely_not_cached_dataset_xyz", split="train")
    assert time.time() - t0 < 60
    line = err.value.line()
    assert "offline" in line and "--data" in line and "\n" not in line


def test_read_table_formats_and_errors(tmp_path):
    rows = [{"text": "привет мир", "label": 1}, {"text": "hello", "label": 0}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "a.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write('text,label\n"привет мир",1\nhello,0\n')
    (tmp_path / "a.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    for name in ("a.parquet", "a.jsonl", "a.csv.gz", "a.json"):
        t = read_table(tmp_path / name, columns=["text", "label"])
        assert t.column("text").to_pylist() == ["привет мир", "hello"], name
    with pytest.raises(DataError, match="has no column 'text', 'label'") as err:
        (tmp_path / "b.csv").write_text("title,body\nx,y\n")
        read_table(tmp_path / "b.csv", columns=["text", "label"])
    assert "its columns: title, body" in err.value.line()
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="cannot read"):
        read_table(tmp_path / "bad.parquet")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"\n')
    with pytest.raises(DataError, match="cannot read"):
        read_table(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="expected .parquet"):
        (tmp_path / "x.xlsx").write_text("")
        read_table(tmp_path / "x.xlsx")


def test_iter_lines_streams_files_and_folders(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("один\nдва\n", encoding="utf-8")
    with gzip.open(folder / "b.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("три\n")
    (folder / "notes.md").write_text("ignored\n")
    assert list(iter_lines(folder)) == ["один", "два", "три"]
    assert list(iter_lines(folder / "b.txt.gz")) == ["три"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        list(iter_lines(tmp_path / "latin1.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no text files"):
        list(iter_lines(tmp_path / "empty"))


def test_split_files(tmp_path):
    for name in ("train.parquet", "test.parquet", "validation-00000-of-00001.parquet", "wiki.valid.txt.gz",
                 "README.md", "wikitext-2-v1.train.txt.gz"):
        (tmp_path / name).write_text("")
    assert [p.name for p in split_files(tmp_path, "train")] == ["train.parquet", "wikitext-2-v1.train.txt.gz"]
    assert [p.name for p in split_files(tmp_path, "valid")] == ["validation-00000-of-00001.parquet", "wiki.valid.txt.gz"]
    assert [p.name for p in split_files(tmp_path, "test")] == ["test.parquet"]


def test_fingerprint_follows_content_and_options(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("a")
    a = fingerprint(f, {"min_count": 5})
    assert fingerprint(f, {"min_count": 5}) == a
    assert fingerprint(f, {"min_count": 6}) != a
    time.sleep(0.01)
    f.write_text("ab")
    assert fingerprint(f, {"min_count": 5}) != a
    assert textlab.cache_dir("toy", "vocab", a).is_dir()
    assert str(textlab.cache_dir("toy", "vocab")).startswith(os.environ["TEXTLAB_HOME"])


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with atomic_write(path) as fh:
        fh.write("new")
    assert path.read_text() == "new"


def test_words_handles_cyrillic_and_yo():
    assert words("Москва — столица! Ёлка, don't 2024") == ["москва", "столица", "ёлка", "don't", "2024"]
    assert words("e\u0301") == words("é")  # NFC: one character typed two ways


def test_vocab_build_encode_suggest(tmp_path):
    from collections import Counter

    counts = Counter("the cat sat on the mat the end москва москва".split())
    v = Vocab.build(counts, min_count=2, specials=["<pad>", "<unk>"], unk="<unk>")
    assert v.itos == ["<pad>", "<unk>", "the", "москва"]
    assert v.encode(["the", "dog", "москва"]) == [2, 1, 3]
    assert v.counts == [0, 0, 3, 2]
    with pytest.raises(UsageError) as err:
        v.index("москве")
    assert "not in the vocabulary" in err.value.line() and "москва" in err.value.line()
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == v.itos
    (tmp_path / "map.json").write_text(json.dumps({"a": 1, "b": 0}))
    assert Vocab.load(tmp_path / "map.json").itos == ["b", "a"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        Vocab.load(tmp_path / "bad.json")
    assert len(Vocab.build(counts, min_count=2, max_size=3, specials=["<unk>"])) == 3


def test_written_files_get_the_umask_permissions_not_0600(tmp_path):
    import os
    import stat

    from textlab.data import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


def test_non_finite_metrics_are_valid_json_and_read_back_as_nan(tmp_path):
    import json
    import math

    from textlab.runs import Run, read_metrics

    run = Run.create("toy", "m", {}, runs_dir=str(tmp_path))
    run.log("valid", {"a": float("nan"), "b": float("inf"), "c": 0.5}, step=1)
    for line in (run.dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    values = {r["name"]: r["value"] for r in read_metrics(run.dir)}
    assert math.isnan(values["a"]) and math.isnan(values["b"]) and values["c"] == 0.5

    class Seen:  # a logger (tensorboard, csv, a plugin's) gets the float, not None
        got: list = []

        def log(self, rec):
            self.got.append(rec["value"])

    run._loggers = [Seen()]
    run.log("valid", {"a": float("nan")}, step=2)
    assert len(Seen.got) == 1 and isinstance(Seen.got[0], float) and math.isnan(Seen.got[0])


def test_first_line_cuts_long_messages_at_a_word_with_an_ellipsis():
    from textlab.errors import first_line

    text = "failed reading zip archive: failed finding central directory " * 5
    line = first_line(ValueError(text + "\nsecond"), 100)
    assert len(line) <= 100 and line.endswith("…") and not line.endswith(" …")
    assert first_line(ValueError("short\nmore")) == "short"


def test_fit_without_an_epoch_limit_runs_to_max_steps(tmp_path):
    import torch

    from textlab.engine import fit
    from textlab.runs import Run

    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    net = torch.nn.Linear(3, 2)
    run = Run.create("toy", "lin", {}, runs_dir=str(tmp_path))

    def step(model, idx):
        return {"loss": torch.nn.functional.cross_entropy(model(x[idx]), y[idx])}

    kwargs = dict(batches=lambda epoch: [torch.arange(i, i + 16) for i in range(0, 64, 16)], step=step,
                  meta={"model": "lin", "config": None, "vocab": None}, monitor="train/loss")
    with run:
        result = fit(run, net, torch.optim.SGD(net.parameters(), lr=0.1), epochs=None, max_steps=10, **kwargs)
    assert result.step == 10 and result.epoch == 2  # 4 batches an epoch: past the first two epochs
    with pytest.raises(ValueError, match="needs max_steps or time_budget"):
        fit(run, net, torch.optim.SGD(net.parameters(), lr=0.1), epochs=None, **kwargs)
    # an epoch with no batches and no epoch limit would loop for ever: one clear error instead
    from textlab.errors import DataError

    empty = Run.create("toy", "lin", {}, runs_dir=str(tmp_path))
    with pytest.raises(DataError, match="yielded no batches"):
        fit(empty, net, torch.optim.SGD(net.parameters(), lr=0.1), epochs=None, max_steps=10,
            **{**kwargs, "batches": lambda epoch: []})


def test_compare_never_picks_nan_as_best_and_gives_lr_no_direction(tmp_path):
    from textlab.compare import _fmt, summarize
    from textlab.runs import Run

    run = Run.create("toy", "m", {}, runs_dir=str(tmp_path))
    run.log("train", {"loss": 0.5, "lr": 3e-5}, step=1)
    run.log("train", {"loss": float("nan"), "lr": 1e-5}, step=2)
    rows = {r["metric"]: r for r in summarize([run.dir])}
    assert rows["loss"]["best"] == 0.5 and rows["loss"]["best_step"] == 1
    assert rows["lr"]["higher_is_better"] is None and rows["lr"]["best"] == 1e-5
    assert _fmt(3e-5) == "3.00e-05" and _fmt(0.25) == "0.2500"
