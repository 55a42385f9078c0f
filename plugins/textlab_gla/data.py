"""Character data: sources, normalisation, the prepared-text cache, the vocabulary, batches.

`--data` is one of
  * `sample`: a small generated WikiText-like corpus (train/valid/test), made by this module;
  * a local folder with the files of each split, found by name (`wiki.train.tokens`,
    `wikitext-2-v1.valid.txt.gz`, `test.txt`, `train-00000-of-00002.parquet`...): text files,
    or tables (parquet, jsonl, csv) with a `text` column; or a single text file (then cut
    90/5/5 into train/valid/test at line boundaries);
  * a Hugging Face dataset `name:config` with a `text` column (default
    `wikitext:wikitext-103-raw-v1`; offline it fails in one line that says how to pass files).

Normalisation (the same for data and prompts): CRLF -> LF, Unicode NFC, and the WikiText token
`<unk>` -> one reserved character, `⁇` (U+2047), so that an unknown word costs one character,
not five. The vocabulary is every character of the train split (optionally those seen at least
`min_count` times) plus that reserved character, which is also the id of every character the
vocabulary does not know.
"""

from __future__ import annotations

import random
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

import textlab

from .config import DEFAULT_DATA  # noqa: F401  (the default --data)

UNK = "\u2047"  # ⁇: the reserved character for `<unk>` and for characters outside the vocabulary
UNK_TOKEN = "<unk>"
SPLITS = ("train", "valid", "test")
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
PREP_VERSION = 1
TEXT_SUFFIXES = (".txt", ".text", ".raw", ".tokens")
TABLE_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".tsv")
SUFFIXES = TEXT_SUFFIXES + TABLE_SUFFIXES


def normalize(text: str) -> str:
    """CRLF -> LF, NFC, `<unk>` -> the reserved character."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text).replace(UNK_TOKEN, UNK)


# ============================================================================ the sample corpus
_NAMES = ["Valkyria", "Tower", "Boulter", "Nebraska", "Kiss", "Ise", "Dick", "Aldwych", "Orbital", "Ashdown",
          "Meridian", "Calder", "Hollis", "Brennan", "Elm", "Fairfax", "Greystone", "Harrow", "Juniper", "Kestrel"]
_KINDS = ["album", "battleship", "railway station", "film", "hurricane", "novel", "church", "river", "song", "bridge"]
_PLACES = ["London", "Japan", "the United States", "Ireland", "Canada", "Scotland", "Texas", "Australia", "Paris"]
_VERBS = ["was released", "was completed", "was opened", "was recorded", "was built", "was first described",
          "was rebuilt", "was announced"]
_PEOPLE = ["the composer", "the director", "the architect", "the crew", "the critics", "the band", "the government"]
_ACTS = ["praised", "criticised", "described", "rebuilt", "recorded", "promoted", "defended", "visited"]
_ADJ = ["large", "small", "early", "modern", "famous", "difficult", "popular", "heavy", "northern", "final"]
_NOUNS = ["design", "season", "station", "version", "campaign", "tour", "structure", "record", "storm", "line"]
_SECTIONS = ["History", "Background", "Design", "Reception", "Legacy", "Release", "Construction", "Aftermath"]


def _sentence(rng: random.Random, name: str, kind: str) -> str:
    year = rng.randint(1850, 2015)
    forms = [
        lambda: f"The {name} {kind} {rng.choice(_VERBS)} in {rng.choice(_PLACES)} in {year} .",
        lambda: f"In {year} , {rng.choice(_PEOPLE)} {rng.choice(_ACTS)} the {rng.choice(_ADJ)} {rng.choice(_NOUNS)} .",
        lambda: f"It had a {rng.choice(_ADJ)} {rng.choice(_NOUNS)} of {rng.randint(2, 900)} @,@ "
                f"{rng.randint(100, 999)} , the {rng.choice(['first', 'second', 'third', 'last'])} in {rng.choice(_PLACES)} .",
        lambda: f"{rng.choice(_PEOPLE).capitalize()} {rng.choice(_ACTS)} it as \" {rng.choice(_ADJ)} \" and "
                f"{rng.choice(_ADJ)} , with a <unk> {rng.choice(_NOUNS)} .",
        lambda: f"The {rng.choice(_NOUNS)} was {rng.randint(2, 99)} @.@ {rng.randint(0, 9)} km "
                f"( {rng.randint(2, 60)} mi ) long and {rng.choice(_ADJ)} .",
    ]
    return rng.choice(forms)()


def make_sample(split: str, chars: int | None = None) -> str:
    """A deterministic WikiText-like corpus: articles with headings, numbers and `<unk>`."""
    sizes = {"train": 160_000, "valid": 16_000, "test": 16_000}
    if split not in sizes:
        raise textlab.DataError(f"the sample has no split {split!r} (it has train, valid, test)")
    rng = random.Random({"train": 11, "valid": 22, "test": 33}[split])
    target = chars or sizes[split]
    parts: list[str] = []
    size = 0
    while size < target:
        name, kind = rng.choice(_NAMES), rng.choice(_KINDS)
        article = [f" = {name} ( {kind} ) = \n", "\n"]
        for section in rng.sample(_SECTIONS, rng.randint(2, 4)):
            article += [f" = = {section} = = \n", "\n"]
            for _ in range(rng.randint(1, 3)):
                article.append(" " + " ".join(_sentence(rng, name, kind) for _ in range(rng.randint(2, 5))) + " \n")
        text = "".join(article)
        parts.append(text)
        size += len(text)
    return "".join(parts)[:target]


def load_sample(split: str) -> str:
    return make_sample(split)


# ============================================================================ reading a source
BLOCK = 1 << 22  # characters normalised, counted and written at a time (memory does not grow with the data)


def read_split(source: textlab.Source, split: str) -> str:
    """The raw text of one split of a source (not yet normalised)."""
    return "".join(split_pieces(source, split))


def split_pieces(source: textlab.Source, split: str) -> Iterator[str]:
    """The raw text of one split in pieces (their concatenation is the split), each ending at a line
    end: a local file is streamed, never read whole. Normalising piece by piece gives the
    normalised whole (no CRLF, NFC composition or `<unk>` crosses a line end)."""
    if source.kind == "registered":
        yield source.spec.load(split)
        return
    if source.kind == "hub":
        table = textlab.load_hub(source.ref, source.config, split=HUB_SPLITS[split])
        if "text" not in table.column_names:
            raise textlab.DataError(f"hub dataset {source.describe()} has no 'text' column",
                                    hint=f"its columns: {', '.join(table.column_names)}")
        yield from _rows(table["text"])
        return
    path = source.path
    if path.is_dir():
        for i, f in enumerate(split_files(path, split)):
            if i:
                yield "\n"
            yield from _file_pieces(f)
        return
    yield from _cut_pieces(path, SPLITS.index(split))


def _rows(texts: Iterable) -> Iterator[str]:
    """Rows of a `text` column, each ending with a line end (as the Hugging Face exports store them)."""
    for t in texts:
        if t:
            yield t if t.endswith("\n") else t + "\n"


def split_files(folder: Path, split: str) -> list[Path]:
    """The text files of one split in a folder. When several files match (for example
    `wikitext-2-v1.test.txt.gz` and `wikitext-2-raw-v1.test.raw.gz`), the one named like the
    train file (same name with the split changed) wins."""
    found = textlab.split_files(folder, split, SUFFIXES)
    if not found:
        names = ", ".join(sorted(f.name for f in folder.iterdir() if f.is_file())[:8]) or "nothing"
        raise textlab.DataError(f"no {split} text file in {folder}",
                                hint=f"name files like train.txt, valid.txt, test.txt (.gz allowed); it has: {names}")
    if len(found) > 1 and split != "train":
        siblings = [f for f in found
                    if any(t.name.replace("train", split) == f.name or t.name.replace("train", "validation") == f.name
                           for t in textlab.split_files(folder, "train", SUFFIXES))]
        if siblings:
            found = siblings
    return found


def _file_pieces(path: Path) -> Iterator[str]:
    """A text file line by line (each with its line end), or a table file's `text` column row by
    row (parquet by row groups)."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet") and not path.name.lower().endswith(".gz"):
        for batch in textlab.iter_parquet(path, ["text"]):
            yield from _rows(t for t in batch.column(0).to_pylist() if t is not None)
    elif name.endswith(TABLE_SUFFIXES):
        yield from _rows(t for t in textlab.read_table(path, ["text"]).column("text").to_pylist() if t is not None)
    else:
        for line in textlab.iter_lines(path):
            yield line + "\n"


def _cut_pieces(path: Path, part: int) -> Iterator[str]:
    """One file cut into train / valid / test = 90 / 5 / 5 % of its characters at line boundaries:
    the lines of part `part` (0, 1, 2). Two passes over the file (its length, then the lines)."""
    n = sum(len(line) + 1 for line in textlab.iter_lines(path))
    cuts = [int(n * 0.90), int(n * 0.95)]  # each part ends after the first line end at or after its cut
    which = pos = 0
    for line in textlab.iter_lines(path):
        end = pos + len(line)  # where this line's "\n" is
        if which == part:
            yield line + "\n"
        while which < 2 and end >= cuts[which]:
            which += 1
        if which > part:
            return
        pos = end + 1


def blocks(pieces: Iterable[str], size: int | None = None) -> Iterator[str]:
    """Pieces joined into blocks of about `size` characters (BLOCK; each ends where a piece ends)."""
    size = size or BLOCK
    buf: list[str] = []
    n = 0
    for piece in pieces:
        buf.append(piece)
        n += len(piece)
        if n >= size:
            yield "".join(buf)
            buf, n = [], 0
    if buf:
        yield "".join(buf)


# ============================================================================ prepared text (cached)
def prepare(data: str, *, force: bool = False, quiet: bool = False) -> dict:
    """Read, normalise and cache the three splits of `data`. Returns
    `{"source", "dir", "splits": {split: {"chars", "lines", "distinct", "unk"}}}`.

    Streamed: a block of text at a time is normalised, counted and written, so memory does not
    grow with the data (WikiText-103's 540M characters are prepared in a few hundred MB)."""
    source = textlab.resolve("gla", data)
    folder = textlab.cache_dir("gla", "text", source.fingerprint(PREP_VERSION))
    meta_path = folder / "meta.json"
    if meta_path.exists() and not force and all((folder / f"{s}.txt").exists() for s in SPLITS):
        meta = textlab.read_json(meta_path, "prepared data")
        meta["dir"] = str(folder)
        return meta
    splits = {}
    for split in SPLITS:  # (no status line before this succeeds: a bad source is one error line)
        stats = {"chars": 0, "lines": 0, "distinct": set(), "unk": 0}
        with textlab.atomic_write(folder / f"{split}.txt", "w", encoding="utf-8", newline="") as fh:
            for block in blocks(split_pieces(source, split)):
                text = normalize(block)
                fh.write(text)
                stats["chars"] += len(text)
                stats["lines"] += text.count("\n")
                stats["distinct"].update(set(text))
                stats["unk"] += text.count(UNK)
            if not stats["chars"]:
                raise textlab.DataError(f"the {split} split of {source.describe()} is empty")
        splits[split] = {**stats, "distinct": len(stats["distinct"])}
    meta = {"source": source.reference(), "version": PREP_VERSION, "splits": splits}
    textlab.write_json(meta_path, meta)
    meta["dir"] = str(folder)
    if not quiet:
        textlab.status(f"prepared {source.describe()}: " + ", ".join(f"{s} {v['chars']:,}" for s, v in splits.items())
                       + f" characters, cached in {folder}")
    return meta


def load_texts(data: str, splits=SPLITS) -> dict[str, str]:
    """The normalised text of each split (prepared on first use, then read from the cache)."""
    meta = prepare(data, quiet=True)
    folder = Path(meta["dir"])
    return {s: (folder / f"{s}.txt").read_text(encoding="utf-8") for s in splits}


def text_blocks(data: str, split: str, size: int | None = None) -> Iterator[str]:
    """The normalised text of one split, read from the cache in blocks of `size` characters (BLOCK)."""
    size = size or BLOCK
    meta = prepare(data, quiet=True)
    with open(Path(meta["dir"]) / f"{split}.txt", encoding="utf-8", newline="") as fh:
        while True:
            block = fh.read(size)
            if not block:
                return
            yield block


# ============================================================================ vocabulary
def build_vocab(train_text: str, min_count: int = 1) -> textlab.Vocab:
    """Characters of the train split seen at least `min_count` times, after the reserved `⁇`."""
    return vocab_from_counts(Counter(train_text), min_count)


def vocab_from_counts(counts: Counter, min_count: int = 1) -> textlab.Vocab:
    """`build_vocab` from the character counts of the train split (ties: first seen first)."""
    vocab = textlab.Vocab.build(counts, min_count=min_count, specials=[UNK], unk=UNK)
    vocab.counts[0] = counts.get(UNK, 0)
    return vocab


def char_counts(data: str, split: str) -> Counter:
    """The characters of one prepared split, counted a block at a time (first-seen order kept)."""
    counts: Counter = Counter()
    for block in text_blocks(data, split):
        counts.update(block)
    return counts


def vocab_for(data: str, min_count: int = 1) -> tuple[textlab.Vocab, dict]:
    """The cached vocabulary of a source (built from its train split on first use), and the
    coverage report. The splits are counted block by block, never held whole."""
    source = textlab.resolve("gla", data)
    folder = textlab.cache_dir("gla", "vocab", source.fingerprint(PREP_VERSION, min_count))
    path, report_path = folder / "vocab.json", folder / "coverage.json"
    if path.exists() and report_path.exists():
        return textlab.Vocab.load(path), textlab.read_json(report_path, "coverage report")
    counts = {split: char_counts(data, split) for split in SPLITS}
    vocab = vocab_from_counts(counts["train"], min_count)
    report = coverage_of_counts(vocab, counts)
    vocab.save(path)
    textlab.write_json(report_path, report)
    return vocab, report


def coverage(vocab: textlab.Vocab, texts: dict[str, str]) -> dict:
    """Per split: characters, share the vocabulary knows, `<unk>` share, unknown characters."""
    return coverage_of_counts(vocab, {split: Counter(text) for split, text in texts.items()})


def coverage_of_counts(vocab: textlab.Vocab, counts: dict[str, Counter]) -> dict:
    """`coverage` from the character counts of each split."""
    out = {}
    for split, c in counts.items():
        n = sum(c.values())
        unknown = {ch: k for ch, k in c.items() if ch not in vocab.stoi}
        n_unknown = sum(unknown.values())
        out[split] = {
            "chars": n,
            "coverage": 1.0 - n_unknown / max(n, 1),
            "unk_share": c.get(UNK, 0) / max(n, 1),
            "unknown_distinct": len(unknown),
            "unknown_top": [[ch, k] for ch, k in sorted(unknown.items(), key=lambda kv: -kv[1])[:10]],
        }
    return {"vocab_size": len(vocab), "splits": out}


def _lookup(vocab: textlab.Vocab):
    """Code point -> id table (numpy); its last entry, for every code point past the vocabulary's
    largest, is the unknown id."""
    import numpy as np

    dtype = np.int16 if len(vocab) < 2 ** 15 else np.int32
    table = np.full(max(ord(c) for c in vocab.itos) + 2, vocab.unk_id, dtype=dtype)
    for ch, i in vocab.stoi.items():
        table[ord(ch)] = i
    return table


def _encode_block(text: str, table):
    import numpy as np

    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return table[np.minimum(cps, len(table) - 1)]


def encode(text: str, vocab: textlab.Vocab):
    """Character ids as an int16 tensor (int32 for vocabularies over 32k); unknown -> `⁇`.
    Encoded a block at a time: besides the result, memory holds one block's code points."""
    import numpy as np
    import torch

    if not text:
        return torch.zeros(0, dtype=torch.int16)
    table = _lookup(vocab)
    out = np.empty(len(text), dtype=table.dtype)
    step = BLOCK
    for i in range(0, len(text), step):
        out[i:i + step] = _encode_block(text[i:i + step], table)
    return torch.from_numpy(out)


def load_ids(data: str, vocab: textlab.Vocab, split: str = "train"):
    """The ids of one prepared split as a tensor on a memory-mapped file (int16, or int32 for
    vocabularies over 32k), written once beside the prepared text, a block at a time: memory holds
    no copy of the text, and the pages of the file are read as windows touch them (the same ids as
    `encode(load_texts(data)[split], vocab)`)."""
    import numpy as np
    import torch

    meta = prepare(data, quiet=True)
    table = _lookup(vocab)
    key = textlab.fingerprint(vocab.itos, vocab.unk)
    path = Path(meta["dir"]) / f"{split}.{key}.{np.dtype(table.dtype).name}"
    n = meta["splits"][split]["chars"]
    if not path.exists() or path.stat().st_size != n * table.itemsize:
        with textlab.atomic_write(path, "wb") as fh:
            for block in text_blocks(data, split):
                fh.write(_encode_block(block, table).astype(table.dtype.newbyteorder("<"), copy=False).tobytes())
    if n == 0:
        return torch.zeros(0, dtype=torch.int16)
    ids = np.memmap(path, dtype=table.dtype.newbyteorder("<"), mode="c", shape=(n,))
    return torch.from_numpy(ids)


def decode(ids, vocab: textlab.Vocab, unk: str = UNK_TOKEN) -> str:
    """Ids back to text; the reserved character is shown as `<unk>`."""
    return "".join(unk if i == vocab.unk_id else vocab.itos[i] for i in ids)


def unknown_chars(text: str, vocab: textlab.Vocab) -> list[str]:
    return sorted({ch for ch in text if ch not in vocab.stoi})


# ============================================================================ batches
def window_starts(n_chars: int, seq_len: int, seed: int, epoch: int):
    """Start offsets of this epoch's training windows: non-overlapping windows of seq_len + 1
    characters after a random shift, in a random order. Depends only on (seed, epoch), and is
    sharded over ranks under torchrun."""
    import torch

    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    shift = int(torch.randint(0, seq_len, (1,), generator=gen)) if n_chars > 2 * (seq_len + 1) else 0
    n = (n_chars - 1 - shift) // seq_len
    starts = shift + torch.randperm(n, generator=gen) * seq_len
    return textlab.distributed.shard(starts)


def gather_windows(ids, starts, seq_len: int):
    """Inputs and targets [B, seq_len] (int64) for windows starting at `starts`."""
    import torch

    idx = starts[:, None] + torch.arange(seq_len + 1)
    w = ids[idx].long()
    return w[:, :-1], w[:, 1:]
