"""The corpus pipeline: clean text -> vocabulary and int32 ids -> skip-gram pair shards.

Each step writes a folder and ends by writing its `<step>-info.json` (the folder is complete
when that file exists):

    prep   corpus.txt          cleaned text, one line per document (paragraph, article...)
           prep-info.json      source, options, lines, tokens
    vocab  vocab.json          textlab.Vocab: words by decreasing count, with their counts
           ids.int32           the corpus as little-endian int32 ids (in-vocabulary tokens only)
           offsets.int64       start of each sentence in ids.int32 (n_sentences + 1 entries);
                               lines longer than --max-sentence tokens are cut into pieces
           unigram.npz         the negative-sampling table: counts^0.75 as an alias table
           vocab-info.json
    pairs  pairs-00000.parquet (target, context) int32 columns, --shard-size rows per shard
           pairs-info.json

Folders live in the cache, `$TEXTLAB_HOME/word2vec/<step>/<fingerprint>/`, keyed by the
fingerprint of the previous step and the options, or in the folder given with `--out`.
`$TEXTLAB_HOME/word2vec/latest.json` remembers the last folder of each step, so that
`textlab vocab word2vec` right after `textlab prep word2vec --data X` finds X's prepared corpus.
A later step looks for an earlier step's folder that matches the options you gave (options you
did not give are taken from that folder) and builds it when there is none.

Every step streams: memory holds the word counts, the vocabulary and one buffer (of a shard,
or of encoded ids), never the corpus.
"""

from __future__ import annotations

import array
import os
import random
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import textlab
from textlab import DataError, UsageError

from .config import PairsOptions, VocabOptions

TASK = "word2vec"
VERSION = 1  # bump when a step's output format or cleaning changes: old cache entries are then ignored
INFO = {"prep": "prep-info.json", "vocab": "vocab-info.json", "pairs": "pairs-info.json"}
DEFAULTS = {
    "prep": {"column": "text", "fold_yo": False},
    "vocab": {"min_count": 5, "max_vocab": None, "max_sentence": 10_000},
    "pairs": {"window": 5, "sample": 1e-3, "seed": 1, "shard_size": 10_000_000},
}
JOB_WORDS = 20_000  # in-vocabulary words per unit of work (pair generation, training)
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json")


def human(n: float) -> str:
    """12345678 -> '12.3M' (progress bars and tables)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) else str(n)


# ============================================================================ cleaning
_NON_LETTERS = re.compile(r"[\W\d_]+")  # runs of anything that is not a letter: punctuation, digits, spaces
_MARKS: tuple[re.Pattern, re.Pattern] | None = None
_ASTRAL = re.compile("[\U00010000-\U0010FFFF]")  # a character beyond the BMP (a regex scan: 10x faster than max())


def _marks() -> tuple[re.Pattern, re.Pattern]:
    """Combining marks (category Mn, U+0300 to U+1FFFF), e.g. the stress accent in `замо́к`: dropped,
    not split on. Two patterns of ranges: those of the BMP, then the others. A class of BMP ranges
    compiles to a bitmap (one lookup per character); one with characters beyond U+FFFF is a list
    that the regex engine walks for every character (a single class of all the marks made `prep`
    spend 90% of its time here on Russian text), so the second runs only on text that has such
    characters."""
    global _MARKS
    if _MARKS is None:
        spans: list[list[int]] = []
        for c in range(0x300, 0x20000):
            if unicodedata.category(chr(c)) == "Mn":
                if spans and spans[-1][1] == c - 1:
                    spans[-1][1] = c
                else:
                    spans.append([c, c])

        def pattern(part: list[list[int]]) -> re.Pattern:
            return re.compile("[" + "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "")
                                            for a, b in part) + "]+")

        bmp = [[a, min(b, 0xFFFF)] for a, b in spans if a <= 0xFFFF]
        astral = [[max(a, 0x10000), b] for a, b in spans if b > 0xFFFF]
        _MARKS = (pattern(bmp), pattern(astral))
    return _MARKS


def clean(text: str, fold_yo: bool = False) -> str:
    """Lowercase, drop combining marks, replace everything that is not a letter by a space.

    Unicode throughout: Cyrillic, Greek, accented Latin letters stay; `ё` stays `ё` unless
    `fold_yo` (then `ё` -> `е`, as most Russian corpora and evaluation sets spell it).
    Digits and punctuation become spaces (`кто-то` -> `кто то`, `don't` -> `don t`), spaces collapse.
    """
    text = text.lower()
    if not text.isascii():
        bmp, astral = _marks()
        text = bmp.sub("", unicodedata.normalize("NFC", text))
        if _ASTRAL.search(text):
            text = astral.sub("", text)
        if fold_yo:
            text = text.replace("ё", "е")
    return _NON_LETTERS.sub(" ", text).strip()


# ============================================================================ sources
def sample_lines(split: str = "train", n: int = 3000, seed: int = 0) -> Iterator[str]:
    """The embedded sample: generated Russian and English sentences with clear word groups.

    Raw text on purpose (capitals, punctuation, digits, `ё`, a stress mark), so that `prep`
    has something to clean. Words of a group share contexts: their neighbours are each other.
    """
    rng = random.Random(seed + {"train": 0, "valid": 1, "test": 2}.get(split, 3))
    groups = {
        "ru_city": ["москва", "петербург", "казань", "новгород", "самара", "тверь"],
        "ru_animal": ["кошка", "собака", "лошадь", "корова", "коза", "овца"],
        "ru_tree": ["ёлка", "берёза", "клён", "дуб", "сосна", "осина"],
        "en_city": ["london", "paris", "berlin", "madrid", "rome", "vienna"],
        "en_animal": ["cat", "dog", "horse", "cow", "goat", "sheep"],
        "en_colour": ["red", "green", "blue", "yellow", "white", "black"],
    }
    templates = [
        ("ru_city", "В городе {} живёт много людей."), ("ru_city", "Мы поехали в {} на поезде в {n} году!"),
        ("ru_city", "{} — большой и старый город."), ("ru_city", "Поезд из {} пришёл вечером."),
        ("ru_animal", "Во дворе {} ест траву."), ("ru_animal", "У нас дома живёт {}, ей {n} лет."),
        ("ru_animal", "Маленькая {} спит у забора."), ("ru_animal", "Фермер кормит: {} довольна."),
        ("ru_tree", "В лесу растёт {}."), ("ru_tree", "Зимой {} стоит в снегу."),
        ("ru_tree", "Под деревом ({}) лежат шишки и листья."), ("ru_tree", "Старый замо́к окружён: {} шумит."),
        ("en_city", "Many people live in the city of {}."), ("en_city", "We travelled to {} by train in {n}!"),
        ("en_city", "{} is a large and old city."), ("en_city", "The train from {} arrived in the evening."),
        ("en_animal", "The {} eats grass in the yard."), ("en_animal", "Our {} is {n} years old."),
        ("en_animal", "A small {} sleeps by the fence."), ("en_animal", "The farmer feeds the {}."),
        ("en_colour", "She painted the wall {}."), ("en_colour", "The flag is {} and bright."),
        ("en_colour", "He wore a {} coat, size {n}."), ("en_colour", "The sky turned {} at dusk."),
    ]
    royal = ["The king said he would rule the kingdom.", "The queen said she would rule the kingdom.",
             "The man said he would work in the field.", "The woman said she would work in the field.",
             "Король сказал, что он будет править.", "Королева сказала, что она будет править."]
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.1:
                parts.append(rng.choice(royal))
                continue
            group, template = rng.choice(templates)
            word = rng.choice(groups[group])
            text = template.format(word, n=rng.randint(2, 2030))
            parts.append(text[0].upper() + text[1:])
        yield " ".join(parts)


def source_lines(data: str, column: str = "text") -> tuple[textlab.Source, Iterator[str]]:
    """What `--data` names -> (source, its raw text lines).

    A text file or folder (.txt and friends, optionally .gz), a table file (parquet, csv, tsv,
    jsonl, json: the `column` column), a Hugging Face dataset name with a text column (its
    train split), or `sample`.
    """
    src = textlab.resolve(TASK, data)
    if src.kind == "registered":
        return src, iter(src.spec.load("train"))
    if src.kind == "local":
        path = src.path
        name = path.name.lower().removesuffix(".gz")
        if path.is_file() and name == path.name.lower() and name.endswith(".parquet"):
            return src, _parquet_lines(path, column)  # streamed by row groups
        if path.is_file() and name.endswith(TABLE_SUFFIXES):
            table = textlab.read_table(path, [column])  # csv / jsonl / json: read whole
            return src, (str(v) for v in table.column(column).to_pylist() if v is not None)
        if path.is_dir() and _is_step_folder(path):
            raise DataError(f"{path} is a folder of textlab word2vec outputs, not a text source",
                            hint="pass it to vocab, pairs or train, or pass the raw corpus to prep")
        return src, textlab.iter_lines(path)
    return src, _hub_lines(src, column)


def _parquet_lines(path: Path, column: str) -> Iterator[str]:
    for batch in textlab.iter_parquet(path, [column], hint="choose one with --column"):
        for value in batch.column(0).to_pylist():
            if value is not None:
                yield str(value)


def _hub_lines(src: textlab.Source, column: str) -> Iterator[str]:
    ds = textlab.load_hub(src.ref, src.config, split="train")
    names = list(getattr(ds, "column_names", []) or [])
    if column not in names:
        raise DataError(f"Hugging Face dataset {src.describe()} has no column {column!r}",
                        hint=f"its columns: {', '.join(names)}; choose one with --column")
    for row in ds:
        value = row[column]
        if value is not None:
            yield str(value)


# ============================================================================ step folders
@dataclass
class Step:
    """A finished step: its folder and the contents of its info file."""

    kind: str
    dir: Path
    info: dict

    @property
    def fingerprint(self) -> str:
        return self.info["fingerprint"]

    @property
    def options(self) -> dict:
        return self.info.get("options", {})

    def path(self, name: str) -> Path:
        return self.dir / name


def _is_step_folder(path: Path) -> bool:
    return any((path / name).exists() for name in INFO.values())


def read_step(kind: str, folder: Path) -> Step | None:
    """The step `kind` stored in `folder`, or None if it is not there (or unfinished)."""
    path = Path(folder) / INFO[kind]
    if not path.exists():
        return None
    info = textlab.read_json(path, f"{kind} info")
    if not isinstance(info, dict) or info.get("step") != kind or "fingerprint" not in info:
        raise DataError(f"{path} is not a textlab word2vec {kind} info file")
    if info.get("version") != VERSION:
        return None
    return Step(kind, Path(folder), info)


def _latest_path() -> Path:
    return textlab.textlab_home() / TASK / "latest.json"


def latest_dir(kind: str) -> Path | None:
    """The folder latest.json names for `kind` (not read; None if there is none)."""
    path = _latest_path()
    if not path.exists():
        return None
    try:
        folder = textlab.read_json(path, "latest.json").get(kind)
    except (DataError, AttributeError):
        return None
    return Path(folder) if isinstance(folder, str) and folder and Path(folder).is_dir() else None


_NOTED: set = set()


def latest(kind: str, *, required: bool = False) -> Step | None:
    """The folder the last `kind` step wrote or used (None if there is none).

    A folder whose info file cannot be read counts as none: with `required` (the step has
    nothing else to work on) that is the one error line; otherwise one note, and the caller
    goes on without it (explicit --data or --resume never depend on it)."""
    folder = latest_dir(kind)
    if folder is None:
        return None
    try:
        return read_step(kind, folder)
    except DataError as exc:
        if required:
            raise DataError(f"the last {kind} step cannot be read: {exc.message}",
                            hint=f"pass --data, or run 'textlab {kind} word2vec' again") from None
        if (kind, str(folder)) not in _NOTED:
            _NOTED.add((kind, str(folder)))
            textlab.status(f"note: ignoring the last {kind} step: {exc.message}")
        return None


def remember(step: Step) -> None:
    """Record `step` as the latest of its kind (what a later step uses without --data)."""
    path = _latest_path()
    try:
        current = textlab.read_json(path, "latest.json") if path.exists() else {}
    except DataError:
        current = {}
    if not isinstance(current, dict):
        current = {}
    current[step.kind] = str(step.dir.resolve())
    textlab.write_json(path, current)


def find_step(kind: str, parent: str, given: dict) -> Step | None:
    """The newest finished `kind` folder made from `parent` (a fingerprint) with the `given` options."""
    candidates: list[Step] = []
    root = textlab.textlab_home() / TASK / kind
    if root.is_dir():
        for folder in root.iterdir():
            step = _quiet_read(kind, folder)
            if step:
                candidates.append(step)
    folder = latest_dir(kind)
    if folder is not None and folder.resolve().parent != root.resolve():
        last = latest(kind)  # an --out folder: only latest.json knows it (cache folders were read above)
        if last:
            candidates.append(last)
    matches = [s for s in candidates if s.info.get("parent") == parent
               and all(s.options.get(k) == v for k, v in given.items() if v is not None)]
    return max(matches, key=lambda s: s.info.get("created", 0), default=None)


def _quiet_read(kind: str, folder: Path) -> Step | None:
    try:
        return read_step(kind, folder)
    except DataError:
        return None


def _target(kind: str, key: str, out: str | os.PathLike | None) -> Path:
    if out is not None:
        path = Path(out).expanduser()
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {path} exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        return path
    return textlab.cache_dir(TASK, kind, key)


def _finish(kind: str, folder: Path, info: dict, latest: bool = True) -> Step:
    info = {"step": kind, "version": VERSION, "created": time.time(), **info}
    textlab.write_json(folder / INFO[kind], info)
    step = Step(kind, folder, info)
    if latest:
        remember(step)
    return step


def _given(options: dict) -> dict:
    return {k: v for k, v in options.items() if v is not None}


def _opts(kind: str, given: dict) -> dict:
    return {**DEFAULTS[kind], **_given(given)}


# ============================================================================ prep
def prep(data: str, *, column: str = "text", fold_yo: bool = False, out: str | None = None,
         force: bool = False, latest: bool = True) -> tuple[Step, bool]:
    """Clean a source into corpus.txt. Returns (step, reused).

    `latest=False`: do not make it the corpus later steps use by default (work for another task)."""
    src, lines = source_lines(data, column)
    options = {"column": column, "fold_yo": fold_yo}
    parent = src.fingerprint()
    key = src.fingerprint(options, VERSION)
    folder = _target("prep", key, out)
    existing = _quiet_read("prep", folder)
    if existing and existing.fingerprint == key and not force and (folder / "corpus.txt").exists():
        if latest:
            remember(existing)
        return existing, True
    n_lines = n_tokens = n_raw = 0
    t0 = time.perf_counter()
    with textlab.progress(None, "prep", unit="lines") as bar, \
            textlab.atomic_write(folder / "corpus.txt", "w", encoding="utf-8") as fh:
        for raw in lines:
            n_raw += 1
            line = clean(raw, fold_yo)
            if line:
                fh.write(line)
                fh.write("\n")
                n_lines += 1
                n_tokens += line.count(" ") + 1
            if n_raw % 2000 == 0:
                bar.advance(2000, tokens=human(n_tokens))
        bar.advance(n_raw % 2000, tokens=human(n_tokens))
    if n_tokens == 0:
        (folder / "corpus.txt").unlink(missing_ok=True)
        raise DataError(f"{src.describe()} holds no words after cleaning ({n_raw} lines read)")
    info = {"fingerprint": key, "parent": parent, "source": src.describe(), "options": options,
            "raw_lines": n_raw, "lines": n_lines, "tokens": n_tokens, "seconds": round(time.perf_counter() - t0, 2)}
    return _finish("prep", folder, info, latest), False


def resolve_prep(data: str | None, *, column: str | None = None, fold_yo: bool | None = None) -> Step:
    """The prepared corpus a later step works on.

    `data=None`: the last one prepared. A folder written by `prep` (or holding a later step
    that records its prep folder): that one. A source: its newest prepared corpus with the
    options given here, prepared now (default options) if there is none.
    """
    given = _given({"column": column, "fold_yo": fold_yo})
    if data is None:
        step = latest("prep", required=True)
        if step is None:
            raise DataError("no prepared corpus yet", hint="run 'textlab prep word2vec --data FILE' first, or pass --data")
        return step
    path = Path(data).expanduser()
    if path.is_dir() and _is_step_folder(path):
        step = read_step("prep", path) or _parent_prep(path)
        if step is None:
            raise DataError(f"{path} holds no finished prep step (no {INFO['prep']})")
        remember(step)
        return step
    src = textlab.resolve(TASK, data)
    found = find_step("prep", src.fingerprint(), given)
    if found and (found.dir / "corpus.txt").exists():
        remember(found)
        return found
    textlab.status(f"preparing {src.describe()} (no prepared corpus of it yet)")
    return prep(data, **_opts("prep", given))[0]


def parent_step(kind: str, step: Step) -> Step | None:
    """The `kind` step that `step` was made from, found by its fingerprint: in the folder it
    recorded, else in the cache of the current TEXTLAB_HOME (a cache copied to another place or
    machine, as `textlab bundle` does), else beside it (steps written to one `--out` folder)."""
    key = step.info.get("parent")
    folders = [Path(step.info["parent_dir"])] if step.info.get("parent_dir") else []
    folders += [textlab.textlab_home() / TASK / kind / str(key), step.dir]
    for folder in folders:
        found = _quiet_read(kind, folder) if folder.is_dir() else None
        if found and found.fingerprint == key:
            return found
    return None


def stored_step(kind: str, folder: str | None, fingerprint: str | None, parent: str | None = None) -> Step | None:
    """The finished `kind` step a checkpoint recorded: in `folder`, else in the cache by fingerprint.

    Matched by `fingerprint`, or (older checkpoints recorded none for pairs) by `parent`."""
    if not fingerprint and not parent:
        return None
    folders = [Path(folder)] if folder else []
    if fingerprint:
        folders.append(textlab.textlab_home() / TASK / kind / str(fingerprint))
    for f in folders:
        found = _quiet_read(kind, f) if f.is_dir() else None
        if found and (found.fingerprint == fingerprint if fingerprint else found.info.get("parent") == parent):
            return found
    return None


def _parent_prep(folder: Path) -> Step | None:
    step = _quiet_read("vocab", folder)
    if step is None:
        pairs = _quiet_read("pairs", folder)
        step = parent_step("vocab", pairs) if pairs else None
    return parent_step("prep", step) if step else None


# ============================================================================ vocab
def build_vocab(prepared: Step, *, min_count: int = 5, max_vocab: int | None = None, max_sentence: int = 10_000,
                out: str | None = None, force: bool = False, latest: bool = True) -> tuple[Step, bool]:
    """Count words, keep those seen `min_count` times, write the corpus as int32 ids."""
    import numpy as np

    if min_count < 1:
        raise UsageError(f"--min-count must be at least 1, not {min_count}")
    options = {"min_count": min_count, "max_vocab": max_vocab, "max_sentence": max_sentence}
    key = textlab.fingerprint(prepared.fingerprint, options, VERSION)
    folder = _target("vocab", key, out)
    existing = _quiet_read("vocab", folder)
    if existing and existing.fingerprint == key and not force:
        if latest:
            remember(existing)
        return existing, True
    corpus = prepared.path("corpus.txt")
    if not corpus.exists():
        raise DataError(f"the prepared corpus {corpus} is missing", hint="run 'textlab prep word2vec' again")
    t0 = time.perf_counter()
    vocab, raw_tokens = count_vocab(corpus, folder, min_count, max_vocab, prepared.info.get("lines"))
    if len(vocab) == 0:
        raise DataError(f"no word occurs {min_count} times or more in {raw_tokens} tokens", hint="lower --min-count")
    stoi = vocab.stoi
    kept = n_sent = 0
    with textlab.progress(prepared.info.get("lines"), "vocab: encode", unit="lines") as bar, \
            textlab.atomic_write(folder / "ids.int32", "wb") as ids_fh, \
            textlab.atomic_write(folder / "offsets.int64", "wb") as off_fh:
        ids = array.array("i")
        offs = array.array("q", [0])
        for i, line in enumerate(_read_lines(corpus), 1):
            encoded = [stoi[w] for w in line.split() if w in stoi]
            for start in range(0, len(encoded), max_sentence):
                piece = encoded[start:start + max_sentence]
                ids.extend(piece)
                kept += len(piece)
                n_sent += 1
                offs.append(kept)
            if len(ids) >= 1 << 20:
                ids_fh.write(_le(ids).tobytes())
                off_fh.write(_le(offs).tobytes())
                ids, offs = array.array("i"), array.array("q")
            if i % 1000 == 0:
                bar.advance(1000)
        ids_fh.write(_le(ids).tobytes())
        off_fh.write(_le(offs).tobytes())
    counts_arr = np.asarray(vocab.counts, dtype=np.float64)
    prob, alias = alias_table(counts_arr ** 0.75)
    with textlab.atomic_write(folder / "unigram.npz", "wb") as fh:
        np.savez(fh, prob=prob, alias=alias, power=np.float64(0.75))
    vocab.save(folder / "vocab.json")
    info = {"fingerprint": key, "parent": prepared.fingerprint, "parent_dir": str(prepared.dir.resolve()),
            "source": prepared.info.get("source"), "prep_options": prepared.options, "options": options,
            "vocab_size": len(vocab),
            "raw_tokens": raw_tokens, "tokens": kept, "sentences": n_sent,
            "seconds": round(time.perf_counter() - t0, 2)}
    return _finish("vocab", folder, info, latest), False


SPILL_WORDS = 2_000_000  # distinct words counted in memory at once; past that, a sorted run goes to disk


def count_vocab(corpus: Path, folder: Path, min_count: int, max_vocab: int | None,
                lines: int | None = None) -> tuple[textlab.Vocab, int]:
    """The words of `corpus` seen `min_count` times or more, by decreasing count (ties: first seen
    first, as `Counter.most_common`), at most `max_vocab`; and the number of tokens.

    Memory holds at most SPILL_WORDS distinct words while counting: when a corpus has more (a
    billion tokens have tens of millions of rare words), the counts so far are written to a sorted
    run in `folder` and counting starts again; the runs are merged at the end. The result is the
    same as counting everything in one Counter; only the words kept stay in memory."""
    from collections import Counter

    counts: Counter = Counter()
    runs: list[Path] = []
    raw_tokens = 0
    try:
        with textlab.progress(lines, "vocab: count", unit="lines") as bar:
            for i, line in enumerate(_read_lines(corpus), 1):
                words = line.split()
                raw_tokens += len(words)
                counts.update(words)
                if len(counts) > SPILL_WORDS:
                    runs.append(_spill(counts, folder, len(runs)))
                    counts = Counter()
                if i % 1000 == 0:
                    bar.advance(1000)
        if not runs:
            items = [(w, c) for w, c in counts.items() if c >= min_count]
            items.sort(key=lambda wc: wc[1], reverse=True)  # stable: ties stay in first-seen order
        else:
            runs.append(_spill(counts, folder, len(runs)))
            del counts
            items = _merge_runs(runs, min_count)
    finally:
        for run in runs:
            run.unlink(missing_ok=True)
    if max_vocab is not None:
        items = items[:max_vocab]
    return textlab.Vocab([w for w, _ in items], [c for _, c in items]), raw_tokens


def _spill(counts: Any, folder: Path, n: int) -> Path:
    """Write `word TAB count TAB first-seen rank` lines sorted by word (a run of the merge)."""
    words = list(counts)  # first-seen order: the rank breaks ties between equal counts
    order = sorted(range(len(words)), key=words.__getitem__)
    path = folder / f"count-run-{n:04d}.tmp"
    with open(path, "w", encoding="utf-8") as fh:
        for i in order:
            w = words[i]
            fh.write(f"{w}\t{counts[w]}\t{i}\n")
    return path


def _merge_runs(runs: list[Path], min_count: int) -> list[tuple[str, int]]:
    """Sum the counts of the sorted runs; keep words seen `min_count` times, most frequent first,
    ties by where the word was first seen (the first run that has it, then its rank there)."""
    import heapq

    def read(k: int, path: Path) -> Iterator[tuple[str, int, int, int]]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                w, c, r = line.rstrip("\n").split("\t")
                yield w, k, int(r), int(c)

    kept: list[tuple[int, int, int, str]] = []
    word, first, total = None, (0, 0), 0
    for w, k, r, c in heapq.merge(*(read(k, p) for k, p in enumerate(runs))):
        if w != word:
            if word is not None and total >= min_count:
                kept.append((-total, first[0], first[1], word))
            word, first, total = w, (k, r), 0
        total += c
    if word is not None and total >= min_count:
        kept.append((-total, first[0], first[1], word))
    kept.sort()
    return [(w, -c) for c, _, _, w in kept]


def _le(arr: array.array) -> array.array:
    """Little-endian bytes on every machine (the files are documented as little-endian)."""
    import sys

    if sys.byteorder == "big":
        arr = array.array(arr.typecode, arr)
        arr.byteswap()
    return arr


def _read_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        yield from fh


def alias_table(weights: Any) -> tuple[Any, Any]:
    """Walker's alias table: draw i with probability weights[i] / sum in O(1).

    Returns (threshold as uint32, alias as int32): draw j uniformly, keep j if a uniform uint32
    is below threshold[j], else take alias[j]. Exact for any vocabulary size, and small (8 bytes
    per word), unlike word2vec.c's table of 10^8 ids (400 MB), whose random reads miss the cache.
    """
    import numpy as np

    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    scaled = w * (n / w.sum())
    prob = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    threshold = np.minimum(prob * 2.0**32, 2.0**32 - 1).astype(np.uint32)
    threshold[prob >= 1.0] = np.uint32(2**32 - 1)
    return threshold, alias.astype(np.int32)


def resolve_vocab(data: str | None, *, min_count: int | None = None, max_vocab: int | None = None,
                  max_sentence: int | None = None, column: str | None = None, fold_yo: bool | None = None) -> Step:
    """The vocabulary folder a later step works on (found with the options given, else built)."""
    given = _given({"min_count": min_count, "max_vocab": max_vocab, "max_sentence": max_sentence})
    if data is not None:
        path = Path(data).expanduser()
        if path.is_dir():
            direct = _quiet_read("vocab", path) or _pairs_vocab(path)
            if direct and all(direct.options.get(k) == v for k, v in given.items()):
                remember(direct)
                return direct
    prepared = resolve_prep(data, column=column, fold_yo=fold_yo)
    found = find_step("vocab", prepared.fingerprint, given)
    if found and _vocab_files_ok(found):
        remember(found)
        return found
    return build_vocab(prepared, **_opts("vocab", given))[0]


def vocab_step(opts: VocabOptions) -> tuple[Step, bool]:
    """What `textlab vocab` asks for: the vocabulary of the prepared corpus with the options given,
    found in the cache (reused) or built. Returns (step, reused)."""
    prepared = resolve_prep(opts.data)
    given = _given({"min_count": opts.min_count, "max_vocab": opts.max_vocab, "max_sentence": opts.max_sentence})
    found = None if (opts.force or opts.out) else find_step("vocab", prepared.fingerprint, given)
    if found is not None and _vocab_files_ok(found):
        remember(found)
        return found, True
    return build_vocab(prepared, **_opts("vocab", given), out=opts.out, force=opts.force)


def _pairs_vocab(folder: Path) -> Step | None:
    pairs = _quiet_read("pairs", folder)
    return parent_step("vocab", pairs) if pairs else None


def _vocab_files_ok(step: Step) -> bool:
    return all((step.dir / n).exists() for n in ("vocab.json", "ids.int32", "offsets.int64", "unigram.npz"))


# ============================================================================ the encoded corpus
@dataclass
class Corpus:
    """A vocabulary folder opened for training: ids and offsets are memory-mapped, not read."""

    step: Step
    itos: list[str]
    counts: Any  # int64 [V]
    ids: Any  # int32 [tokens], memory-mapped
    offsets: Any  # int64 [sentences + 1], memory-mapped
    neg_threshold: Any  # uint32 [V]
    neg_alias: Any  # int32 [V]
    _jobs: dict = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return int(self.step.info["tokens"])

    @property
    def raw_tokens(self) -> int:
        return int(self.step.info["raw_tokens"])

    def vocab_dict(self) -> dict:
        return {"itos": self.itos, "counts": [int(c) for c in self.counts]}

    def jobs(self, job_words: int = JOB_WORDS) -> Any:
        """Sentence indices that cut the corpus into units of about `job_words` words."""
        import numpy as np

        if job_words not in self._jobs:
            offs = np.asarray(self.offsets)
            marks = np.arange(0, self.tokens, job_words, dtype=np.int64)
            cuts = np.unique(np.searchsorted(offs, marks, side="left"))
            cuts = cuts[cuts < len(offs) - 1]
            self._jobs[job_words] = np.unique(np.concatenate([cuts, [0, len(offs) - 1]])).astype(np.int64)
        return self._jobs[job_words]


def open_corpus(step: Step) -> Corpus:
    import numpy as np

    if not _vocab_files_ok(step):
        raise DataError(f"vocabulary folder {step.dir} is incomplete", hint="run 'textlab vocab word2vec' again")
    vocab = textlab.Vocab.load(step.dir / "vocab.json")
    if not vocab.counts or len(vocab.counts) != len(vocab):
        raise DataError(f"{step.dir / 'vocab.json'} has no word counts")
    tokens, sentences = int(step.info["tokens"]), int(step.info["sentences"])
    ids_path, offs_path = step.dir / "ids.int32", step.dir / "offsets.int64"
    if ids_path.stat().st_size != 4 * tokens or offs_path.stat().st_size != 8 * (sentences + 1):
        raise DataError(f"{step.dir}: ids.int32 or offsets.int64 has the wrong size (truncated?)",
                        hint="run 'textlab vocab word2vec --force' to rebuild it")
    ids = np.memmap(ids_path, dtype="<i4", mode="r", shape=(tokens,))
    offsets = np.memmap(offs_path, dtype="<i8", mode="r", shape=(sentences + 1,))
    with np.load(step.dir / "unigram.npz") as table:
        threshold, alias = table["prob"], table["alias"]
    return Corpus(step, vocab.itos, np.asarray(vocab.counts, dtype=np.int64), ids, offsets, threshold, alias)


def keep_thresholds(counts: Any, sample: float) -> Any:
    """Frequent-word subsampling as in word2vec.c and gensim, as uint32 thresholds.

    A word of count c is kept with p = (sqrt(c / t) + 1) * t / c (at most 1), t = sample * total.
    """
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.full(len(counts), 2**32 - 1, dtype=np.uint32)
    t = sample * counts.sum()
    p = np.minimum(1.0, (np.sqrt(counts / t) + 1.0) * t / np.maximum(counts, 1))
    return np.minimum(p * 2.0**32, 2.0**32 - 1).astype(np.uint32)


def job_seed(seed: int, epoch: int, job: int) -> int:
    """A 64-bit seed per (seed, epoch, job): a job's random draws do not depend on thread timing."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + job * 0x94D049BB133111EB + 1) & (2**64 - 1)
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & (2**64 - 1)
    return ((x ^ (x >> 32)) | 1) & (2**63 - 1)  # numba takes it as int64


# ============================================================================ pairs
def build_pairs(vocab_step: Step, *, window: int = 5, sample: float = 1e-3, seed: int = 1,
                shard_size: int = 10_000_000, out: str | None = None, force: bool = False) -> tuple[Step, bool]:
    """Stream (target, context) int32 pairs to parquet shards of `shard_size` rows.

    Subsampling and the shrunk window are drawn as in training (word2vec.c): each kept word
    pairs with the kept words within `window - b` of it, b uniform in [0, window).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .kernels import make_pairs

    check_window_sample(window, sample)
    if shard_size < 1000:
        raise UsageError(f"--shard-size must be at least 1000 pairs, not {shard_size}")
    options = {"window": window, "sample": sample, "seed": seed, "shard_size": shard_size}
    key = textlab.fingerprint(vocab_step.fingerprint, options, VERSION)
    folder = _target("pairs", key, out)
    existing = _quiet_read("pairs", folder)
    if existing and existing.fingerprint == key and not force and all((folder / s).exists() for s in existing.info["shards"]):
        remember(existing)
        return existing, True
    corpus = open_corpus(vocab_step)
    keep = keep_thresholds(corpus.counts, sample)
    cuts = corpus.jobs()
    cap = shard_size + 2 * window * JOB_WORDS + 2 * window * int(vocab_step.options.get("max_sentence", 10_000))
    targets = np.empty(cap, dtype=np.int32)
    contexts = np.empty(cap, dtype=np.int32)
    fill = total = kept_words = 0
    shards: list[str] = []
    sizes: list[int] = []
    t0 = time.perf_counter()

    def write(n: int) -> None:
        name = f"pairs-{len(shards):05d}.parquet"
        table = pa.table({"target": pa.array(targets[:n]), "context": pa.array(contexts[:n])})
        with textlab.atomic_write(folder / name, "wb") as fh:
            pq.write_table(table, fh)
        shards.append(name)
        sizes.append(n)

    with textlab.progress(corpus.tokens, "pairs", unit="words") as bar:
        for j in range(len(cuts) - 1):
            s0, s1 = int(cuts[j]), int(cuts[j + 1])
            n, k = make_pairs(corpus.ids, corpus.offsets, s0, s1, keep, window, job_seed(seed, 0, j),
                              targets[fill:], contexts[fill:])
            fill += n
            total += n
            kept_words += k
            while fill >= shard_size:
                write(shard_size)
                rest = fill - shard_size
                targets[:rest] = targets[shard_size:fill]
                contexts[:rest] = contexts[shard_size:fill]
                fill = rest
            bar.advance(int(corpus.offsets[s1] - corpus.offsets[s0]), pairs=human(total), shards=len(shards))
        if fill or not shards:
            write(fill)
    info = {"fingerprint": key, "parent": vocab_step.fingerprint, "parent_dir": str(vocab_step.dir.resolve()),
            "source": vocab_step.info.get("source"), "options": options, "pairs": total, "shards": shards,
            "shard_pairs": sizes, "kept_words": kept_words, "words": corpus.tokens,
            "bytes": sum((folder / s).stat().st_size for s in shards), "seconds": round(time.perf_counter() - t0, 2)}
    return _finish("pairs", folder, info), False


def check_window_sample(window: int, sample: float) -> None:
    if window < 1:
        raise UsageError(f"--window must be at least 1, not {window}")
    if not 0 <= sample < 1:
        raise UsageError(f"--sample must be in [0, 1), not {sample}", hint="0 turns subsampling off; 1e-3 is usual")


def resolve_pairs(data: str | None, *, window: int | None = None, sample: float | None = None, seed: int | None = None,
                  shard_size: int | None = None, **vocab_options: Any) -> Step:
    """The pair shards `train --pairs shards` reads (found with the options given, else built)."""
    given = _given({"window": window, "sample": sample, "seed": seed, "shard_size": shard_size})
    if data is not None:
        path = Path(data).expanduser()
        direct = _quiet_read("pairs", path) if path.is_dir() else None
        if direct and all(direct.options.get(k) == v for k, v in given.items()):
            remember(direct)
            return direct
    vocab_step = resolve_vocab(data, **vocab_options)
    found = find_step("pairs", vocab_step.fingerprint, given)
    if found and all((found.dir / s).exists() for s in found.info["shards"]):
        remember(found)
        return found
    textlab.status("writing pair shards (none match these options yet)")
    return build_pairs(vocab_step, **_opts("pairs", given))[0]


def pairs_step(opts: PairsOptions) -> tuple[Step, bool]:
    """What `textlab pairs` asks for: pair shards of the vocabulary with the options given, found
    in the cache (reused) or written. Returns (step, reused)."""
    vocab = resolve_vocab(opts.data, min_count=opts.min_count)
    given = _given({"window": opts.window, "sample": opts.sample, "seed": opts.pair_seed, "shard_size": opts.shard_size})
    found = None if (opts.force or opts.out) else find_step("pairs", vocab.fingerprint, given)
    if found is not None and all((found.dir / s).exists() for s in found.info["shards"]):
        remember(found)
        return found, True
    return build_pairs(vocab, **_opts("pairs", given), out=opts.out, force=opts.force)


def read_shard(path: Path) -> tuple[Any, Any]:
    """(targets, contexts) of one shard as int32 arrays."""
    import numpy as np

    table = textlab.read_table(path, ["target", "context"])
    t = table.column("target").to_numpy().astype(np.int32, copy=False)
    c = table.column("context").to_numpy().astype(np.int32, copy=False)
    return np.ascontiguousarray(t), np.ascontiguousarray(c)
