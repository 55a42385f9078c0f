"""AG News data: sources, cleaning, tokenizers, the valid split, vocabularies, cached encodings, batches.

    rows = load_rows(source, "train")          # {"text": [...], "label": [...]}, validated
    prep = prepare(source, "train", tokenizer="builtin")  # cleaned + tokenized once, cached under TEXTLAB_HOME
    train_idx, valid_idx = split_valid(prep.labels, 0.05, seed=0)
    vocab = get_vocab(source, prep, train_idx, min_count=2, ...)   # cached too
    enc = encode(prep, vocab)                  # flat token ids + offsets: one tensor per split
    tokens, lengths = enc.batch(rows, max_len=64)

Sources (`--data`): the Hugging Face `ag_news` dataset (the default), a local folder with
`train.*` / `test.*` files, one local file, or `sample` (a small set this plugin generates).
Local files are parquet/csv/tsv/jsonl/json (optionally .gz) with columns `text` and `label`
(0 World, 1 Sports, 2 Business, 3 Sci/Tech), or the classic AG News CSV: no header, three
columns class index 1-4, title, description.
"""

from __future__ import annotations

import array
import html
import json
import random
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import textlab

CLASSES = ("World", "Sports", "Business", "Sci/Tech")
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK = 0, 1
# Bump when clean() or tokenize() change: every cached preparation and vocabulary is keyed by it.
CLEANING = "agnews-clean-v2"
SAMPLE_VERSION = 1
SPLIT_SEED = 0
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json")


# ============================================================================ cleaning
# The raw AG News text (what HF `ag_news` serves) keeps the feed's escapes: a backslash where the
# source had a newline (`Ken\Lay's`), `\$` for a dollar, and HTML entities that lost their
# ampersand (`#39;s`, ` quot;floated quot;`, `&lt;b&gt;...&lt;/b&gt;`). Tokenized as they are,
# words glue together (`ken\lay` -> `kenlay`) and junk tokens (`39`, `quot`, `lt`, `b`) flood the
# vocabulary. We turn them back into the characters they stood for, then lowercase and keep runs
# of letters and digits (punctuation stripped), as the notebook did. HTML tags stay text (`<b>`
# gives the word `b`; a quote link gives `href`, `reuters`, `fullquote`...): dropping them lost
# 0.2 points of TF-IDF valid accuracy (README, "Cleaning").
_APOSTROPHE = re.compile(r" ?&?#(?:39|146|8217);")  # `Israel #39;s` was `Israel's`
_NUMERIC_ENTITY = re.compile(r"&?#(\d{1,7});")
_NAMED_ENTITY = re.compile(r"(?:&|\b)(quot|amp|lt|gt|nbsp|hellip|apos|rsquo|lsquo|rdquo|ldquo|mdash|ndash);")
_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")  # `israel's` -> `israel s`: one word, not two spellings


def _numeric_entity(match: re.Match) -> str:
    n = int(match.group(1))
    if 128 <= n < 160:  # the feed's Windows-1252 code points (#151; is an em dash)
        return bytes([n]).decode("cp1252", errors="replace")
    try:
        return chr(n)
    except (ValueError, OverflowError):
        return " "


def clean(text: str) -> str:
    """Raw AG News text -> plain text (escapes and entities turned back into characters)."""
    text = text.replace("\\$", "$").replace("\\", " ")
    for _ in range(2):  # `&amp;lt;` is escaped twice
        text = _APOSTROPHE.sub("'", text)
        text = _NUMERIC_ENTITY.sub(_numeric_entity, text)
        text = _NAMED_ENTITY.sub(lambda m: html.unescape(f"&{m.group(1)};"), text)
    return _POSSESSIVE.sub(" s", text)


def tokenize(text: str, tokenizer: str = "builtin") -> list[str]:
    """Cleaned, lowercased tokens. `builtin`: runs of letters and digits (`textlab.words`;
    punctuation dropped). `nltk`: nltk's NLTKWordTokenizer (the Treebank rules of `word_tokenize`
    without its sentence splitter, so nothing is ever downloaded; punctuation and clitics such as
    `n't` are tokens of their own), lowercased."""
    if tokenizer == "builtin":
        return textlab.words(clean(text))
    if tokenizer == "nltk":
        return [t.lower() for t in _nltk().tokenize(clean(text))]
    raise textlab.UsageError(f"unknown tokenizer {tokenizer!r}", hint="use builtin or nltk")


_NLTK: list = []


def _nltk() -> Any:
    """One NLTKWordTokenizer per process (regular expressions only: no data files, no download)."""
    if not _NLTK:
        from nltk.tokenize.destructive import NLTKWordTokenizer

        _NLTK.append(NLTKWordTokenizer())
    return _NLTK[0]


# ============================================================================ sources
def resolve(data: str) -> textlab.Source:
    return textlab.resolve("agnews", data)


def one_file(source: textlab.Source) -> bool:
    """Whether `--data` named one local file (a train split only: it has no test split)."""
    return source.kind == "local" and Path(source.path).is_file()


def load_rows(source: textlab.Source, split: str) -> dict:
    """The rows of one split (`train` or `test`) as {"text": [str], "label": [int 0-3]}, checked."""
    if source.kind == "registered":
        rows = source.spec.load(split)
        where = f"dataset {source.ref!r} ({split})"
    elif source.kind == "hub":
        rows = _hub_rows(source.ref, source.config, split)
        where = f"{source.describe()} ({split})"
    else:
        return _local_rows(Path(source.path), split)
    return check_rows(rows["text"], rows["label"], where)


def _hub_rows(name: str, config: str | None, split: str) -> dict:
    ds = textlab.load_hub(name, config, split=split)
    missing = [c for c in ("text", "label") if c not in ds.column_names]
    if missing:
        raise textlab.DataError(f"Hugging Face dataset {name!r} has no column {missing[0]!r}",
                                hint=f"its columns: {', '.join(ds.column_names)}")
    return {"text": ds["text"], "label": ds["label"]}


def _local_rows(path: Path, split: str) -> dict:
    if path.is_dir():
        files = textlab.split_files(path, split, suffixes=TABLE_SUFFIXES)
        if not files:
            raise textlab.DataError(f"no {split} file in {path}",
                                    hint=f"expected {split}.parquet, {split}.csv, ... (optionally .gz)")
    elif split == "train":
        files = [path]
    else:
        raise textlab.DataError(f"--data {path} is one file, so it has no {split} split",
                                hint=f"pass a folder with train and {split} files")
    text: list[str] = []
    label: list[int] = []
    for f in files:
        rows = read_table_rows(f)
        text += rows["text"]
        label += rows["label"]
    return {"text": text, "label": label}


def read_table_rows(path: Path) -> dict:
    """One local file: `text`+`label` columns, or the classic CSV (class 1-4, title, description)."""
    path = Path(path)
    classic = _classic_csv_columns(path)
    if classic is not None:
        table = textlab.read_table(path, csv_header=classic != "noheader",
                                   column_names=["label", "title", "description"] if classic == "noheader" else None)
        cols = {c.lower().replace(" ", "_"): c for c in table.column_names}
        label_col = cols.get("label") or cols.get("class_index") or cols.get("class")
        title, desc = cols.get("title"), cols.get("description")
        if table.num_columns != 3 or not (label_col and title and desc):
            raise textlab.DataError(f"{path} looks like the classic AG News CSV but does not have 3 columns "
                                    "(class index, title, description)", hint=f"its columns: {', '.join(table.column_names)}")
        titles, descs = table.column(title).to_pylist(), table.column(desc).to_pylist()
        texts = [" ".join((t or "", d or "")).strip() for t, d in zip(titles, descs)]
        labels = [_shift(v) for v in table.column(label_col).to_pylist()]
        return check_rows(texts, labels, str(path), first_line=1 if classic == "noheader" else 2, classic=True)
    table = textlab.read_table(path)
    missing = [c for c in ("text", "label") if c not in table.column_names]
    if missing:
        raise textlab.DataError(f"{path} has no column {missing[0]!r}",
                                hint=f"its columns: {', '.join(table.column_names)}; expected text and label "
                                     "(0-3), or the classic CSV: class index 1-4, title, description")
    line = 2 if path.name.lower().removesuffix(".gz").endswith((".csv", ".tsv")) else 1
    return check_rows(table.column("text").to_pylist(), table.column("label").to_pylist(), str(path), first_line=line)


def _shift(value: Any) -> Any:
    """Classic CSV class index 1-4 -> label 0-3 (anything else is left for check_rows to refuse)."""
    return value - 1 if isinstance(value, int) and not isinstance(value, bool) else value


def _classic_csv_columns(path: Path) -> str | None:
    """'noheader' or 'header' if `path` is the classic 3-column AG News CSV, else None."""
    import csv
    import gzip

    name = path.name.lower().removesuffix(".gz")
    if not name.endswith(".csv") or not path.is_file():
        return None
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            first = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error, EOFError):
        return None  # read_table reports it
    if not first:
        return None
    if len(first) == 3 and first[0].strip().isdigit():
        return "noheader"
    lowered = [c.strip().lower() for c in first]
    if len(first) == 3 and lowered[1:] == ["title", "description"]:
        return "header"
    return None


def check_rows(texts: Sequence[Any], labels: Sequence[Any], where: str, *, first_line: int = 1,
               classic: bool = False) -> dict:
    """Refuse empty texts and labels that are not one of the four classes, naming the row."""
    names = {c.lower(): i for i, c in enumerate(CLASSES)}
    out_labels = []
    for i, (t, y) in enumerate(zip(texts, labels)):
        row = i + first_line
        if not isinstance(t, str) or not t.strip():
            raise textlab.DataError(f"{where}: row {row} has an empty text")
        if isinstance(y, str):
            y = names.get(y.strip().lower(), int(y) if y.strip().lstrip("-").isdigit() else y)
        if isinstance(y, float) and y.is_integer():
            y = int(y)
        if not isinstance(y, int) or isinstance(y, bool) or not 0 <= y < len(CLASSES):
            shown = y + 1 if classic and isinstance(y, int) else y
            allowed = "1-4 in the classic CSV" if classic else "0-3 (0 World, 1 Sports, 2 Business, 3 Sci/Tech)"
            raise textlab.DataError(f"{where}: row {row} has label {shown!r}, out of range", hint=f"labels are {allowed}")
        out_labels.append(y)
    if not out_labels:
        raise textlab.DataError(f"{where} has no rows")
    return {"text": list(texts), "label": out_labels}


BATCH_ROWS = 20_000  # rows read, checked and tokenised at a time
BLOCK_ROWS = 1 << 16  # rows of a prepared split counted, encoded or written at a time


def row_batches(source: textlab.Source, split: str) -> Iterator[dict]:
    """The rows of one split as checked batches of {"text", "label"} (their concatenation is
    `load_rows`): a local parquet file is read by row groups, so memory holds one batch of text."""
    if source.kind == "local" and one_file(source) and split != "train":
        load_rows(source, split)  # the one-line error: one file has no other split
    if source.kind != "local":
        rows = load_rows(source, split)
        for a in range(0, len(rows["label"]), BATCH_ROWS):
            yield {"text": rows["text"][a:a + BATCH_ROWS], "label": rows["label"][a:a + BATCH_ROWS]}
        return
    path = Path(source.path)
    files = [path] if path.is_file() else textlab.split_files(path, split, suffixes=TABLE_SUFFIXES)
    if not files:
        load_rows(source, split)  # the one-line error naming what is missing
    for f in files:
        if f.name.lower().endswith(".parquet"):
            yield from _parquet_batches(f)
        else:
            yield read_table_rows(f)


def _parquet_batches(path: Path) -> Iterator[dict]:
    done = 0
    hint = "expected text and label (0-3), or the classic CSV: class index 1-4, title, description"
    for batch in textlab.iter_parquet(path, ["text", "label"], batch_size=BATCH_ROWS, hint=hint):
        texts, labels = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        if texts:
            yield check_rows(texts, labels, str(path), first_line=done + 1)
        done += len(texts)
    if not done:
        raise textlab.DataError(f"{path} has no rows")


# ============================================================================ the embedded sample
# A small generated news set (not real AG News): four topics with their own words over shared
# filler, and the raw feed's escapes sprinkled in so that cleaning is exercised. Learnable by
# every model in a few seconds, which is what the demo and the tests need.
_TOPICS = {
    0: (["minister", "government", "election", "rebels", "embassy", "parliament", "troops", "ceasefire",
         "president", "refugees", "diplomats", "protesters", "summit", "treaty", "militants", "UN"],
        ["Baghdad", "Gaza", "Kabul", "Moscow", "Tehran", "Darfur", "Beijing", "Kiev"]),
    1: (["coach", "season", "playoffs", "quarterback", "goal", "match", "tournament", "striker", "inning",
         "champions", "Olympic", "medal", "pitcher", "league", "defeat", "title"],
        ["Yankees", "Red Sox", "Arsenal", "Chelsea", "Lakers", "Patriots", "Ferrari", "Celtics"]),
    2: (["shares", "profit", "earnings", "investors", "stocks", "merger", "quarter", "revenue", "oil",
         "prices", "bank", "economy", "dollar", "retailer", "bid", "deficit"],
        ["Wall Street", "Nasdaq", "Fed", "Boeing", "Wal-Mart", "Citigroup", "OPEC", "Airbus"]),
    3: (["software", "internet", "users", "scientists", "space", "chip", "browser", "wireless", "researchers",
         "computer", "spam", "satellite", "genome", "virus", "online", "telescope"],
        ["Microsoft", "Google", "NASA", "Intel", "Apple", "IBM", "Linux", "Yahoo"]),
}
_FILLER = ["the", "a", "on", "in", "after", "says", "new", "report", "plans", "week", "to", "for", "with",
           "over", "first", "year", "talks", "deal", "as", "could", "officials", "more", "than", "its"]
_ESCAPES = [" #39;s", " \\", " quot;{w} quot;", " &lt;b&gt;...&lt;/b&gt;", " \\$5 million", " #151; "]


def _names(rng: random.Random, n: int) -> list[str]:
    """Made-up proper nouns (a long tail of rare words, like the real feed's names)."""
    syll = ["ka", "lo", "mi", "ra", "to", "ve", "zu", "an", "el", "or", "ba", "si", "ne", "du", "fa", "go"]
    return ["".join(rng.choice(syll) for _ in range(rng.randint(2, 4))).title() for _ in range(n)]


def make_sample(split: str, n_per_class: int | None = None) -> dict:
    """The generated sample: 400 rows per class in train, 100 in test (deterministic)."""
    if split not in ("train", "test"):
        raise textlab.DataError(f"the sample has splits train and test, not {split!r}")
    n = n_per_class or (400 if split == "train" else 100)
    names = _names(random.Random(f"agnews-sample-names-{SAMPLE_VERSION}"), 1500)
    rng = random.Random(f"agnews-sample-{split}-{SAMPLE_VERSION}")
    texts, labels = [], []
    for i in range(n * len(_TOPICS)):
        label = i % len(_TOPICS)
        words, places = _TOPICS[label]
        other = _TOPICS[rng.randrange(len(_TOPICS))][0]  # one word of a random topic: some noise
        rare = [names[int(len(names) ** rng.random()) - 1] for _ in range(rng.randint(1, 3))]  # Zipf-like
        parts = [rng.choice(places)] + rng.sample(words, 2) + [rng.choice(other)] + rare
        parts += rng.sample(_FILLER, rng.randint(3, 12))
        rng.shuffle(parts)
        text = parts[0].title() + " " + " ".join(parts[1:])
        if rng.random() < 0.5:
            text += rng.choice(_ESCAPES).format(w=rng.choice(words)) + " " + " ".join(rng.sample(_FILLER, 3))
        texts.append(text)
        labels.append(label)
    order = list(range(len(texts)))
    rng.shuffle(order)
    return {"text": [texts[i] for i in order], "label": [labels[i] for i in order]}


def load_ag_news(split: str) -> dict:
    """The Hugging Face `ag_news` dataset (train and test)."""
    try:
        return _hub_rows("ag_news", None, split)
    except textlab.DataError as exc:
        raise textlab.DataError(exc.message, hint="pass local files instead: --data FOLDER with train and test files "
                                "(parquet text,label or the classic CSV class,title,description), or --data sample") from None


# ============================================================================ prepared (tokenized) data
@dataclass
class Rows:
    """Labelled rows of tokens, flat: `ids` (every row concatenated), `offsets` (N+1; row i is
    ids[offsets[i]:offsets[i+1]]), `labels`."""

    ids: Any
    offsets: Any
    labels: Any

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> Any:
        return self.offsets[1:] - self.offsets[:-1]

    def blocks(self, rows: int | None = None) -> Iterator[tuple[int, int, Any]]:
        """(a, b, ids of rows a..b-1) for consecutive blocks of `rows` rows (BLOCK_ROWS): work on a
        split without a temporary the size of the split."""
        rows = rows or BLOCK_ROWS
        for a in range(0, len(self), rows):
            b = min(a + rows, len(self))
            yield a, b, self.ids[int(self.offsets[a]):int(self.offsets[b])]


@dataclass
class Prepared(Rows):
    """One split tokenized: `ids` index `words` (distinct tokens, first-seen order)."""

    words: list[str] = field(default_factory=list)

    def counts(self, rows: Any = None) -> Any:
        """Token counts over `rows` (all rows when None), indexed like `words` (a block of rows at a time)."""
        import torch

        keep = None
        if rows is not None:
            keep = torch.zeros(len(self), dtype=torch.bool)
            keep[rows] = True
        total = torch.zeros(len(self.words), dtype=torch.int64)
        for a, b, ids in self.blocks():
            if keep is not None:
                ids = ids[torch.repeat_interleave(keep[a:b], self.offsets[a + 1:b + 1] - self.offsets[a:b])]
            total += torch.bincount(ids, minlength=len(self.words))
        return total


def prepare(source: textlab.Source, split: str, *, tokenizer: str = "builtin", quiet: bool = False) -> Prepared:
    """Load, clean and tokenize a split once; later calls read the cache under TEXTLAB_HOME
    (keyed by the data, wherever it lies: `Source.fingerprint`, the split, cleaning and tokenizer).

    Streamed: rows are read and tokenised a batch at a time and the ids go to a file as they come,
    so memory holds one batch of text and the distinct words; the cache is memory-mapped when read."""
    import torch

    key = source.fingerprint(split, CLEANING, SAMPLE_VERSION, tokenizer)
    # -v2: the words as one JSON string (a textlab before it would misread them, and reads split.pt only)
    path = textlab.cache_dir("agnews", "prepared", key) / f"{split}-v2.pt"
    if path.exists():
        try:
            return _read_prepared(path)
        except Exception:  # noqa: BLE001 - a torn cache file: rebuild it
            path.unlink(missing_ok=True)
    # the ids go to a file of their own (the ranks of a torchrun may prepare at once)
    ids_fh = tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f"{split}.ids.", suffix=".tmp", delete=False)
    spill = Path(ids_fh.name)
    try:
        with ids_fh:
            words, offsets, labels = _tokenize_rows(source, split, tokenizer, ids_fh, quiet)
        ids = _ids_tensor(spill, int(offsets[-1]))
        with textlab.atomic_write(path, "wb") as fh:
            torch.save({"words": json.dumps(words, ensure_ascii=False), "ids": ids,
                        "offsets": torch.frombuffer(offsets, dtype=torch.int64),
                        "labels": torch.frombuffer(labels, dtype=torch.int64) if labels else
                        torch.zeros(0, dtype=torch.int64)}, fh)
        del ids
    finally:
        spill.unlink(missing_ok=True)
    return _read_prepared(path)


def _read_prepared(path: Path) -> Prepared:
    """A prepared split from the cache: the tensors memory-mapped, the words one JSON string (the
    safe unpickler took 0.35 s for AG News's 54k words as a list of strings)."""
    import torch

    d = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return Prepared(d["ids"], d["offsets"], d["labels"], words=json.loads(d["words"]))


def _tokenize_rows(source: textlab.Source, split: str, tokenizer: str, ids_fh: Any,
                   quiet: bool) -> tuple[list[str], Any, Any]:
    """Tokenise the rows batch by batch, writing int32 ids to `ids_fh`. -> (words in first-seen
    order, offsets int64 array, labels int64 array)."""
    index: dict[str, int] = {}
    offsets, labels = array.array("q", [0]), array.array("q")
    ids = array.array("i")
    done = 0
    with textlab.progress(None, f"tokenize {source.describe()} {split}", unit="rows",
                          enabled=False if quiet else None) as bar:
        for batch in row_batches(source, split):
            for text in batch["text"]:
                toks = tokenize(text, tokenizer) or ["<unk>"]  # a row of punctuation only still gets one token
                ids.extend([index.setdefault(t, len(index)) for t in toks])
                offsets.append(done + len(ids))
            labels.extend(batch["label"])
            done += len(ids)
            if sys.byteorder == "big":
                ids.byteswap()
            ids_fh.write(ids.tobytes())
            ids = array.array("i")
            bar.advance(len(batch["label"]))
    return list(index), offsets, labels


def _ids_tensor(path: Path, n: int) -> Any:
    """The int32 ids written to `path`, as a tensor on the file (not read into memory)."""
    import numpy as np
    import torch

    if n == 0:
        return torch.zeros(0, dtype=torch.int32)
    return torch.from_numpy(np.memmap(path, dtype="<i4", mode="c", shape=(n,)))


def write_text(prep: Prepared, rows: Any, path: Path) -> dict:
    """Write the tokens of `rows` (in row order), space-separated, one row per line (a block of
    rows at a time)."""
    import torch

    keep = torch.zeros(len(prep), dtype=torch.bool)
    keep[torch.as_tensor(rows, dtype=torch.int64)] = True
    words = prep.words
    tokens = n = 0
    with textlab.atomic_write(path, "w", encoding="utf-8") as fh:
        for a, b, ids in prep.blocks():
            ids, offs = ids.tolist(), (prep.offsets[a:b + 1] - prep.offsets[a]).tolist()
            for i in torch.nonzero(keep[a:b]).flatten().tolist():
                row = ids[offs[i]:offs[i + 1]]
                tokens += len(row)
                n += 1
                fh.write(" ".join(words[j] for j in row) + "\n")
    return {"rows": n, "tokens": tokens}


def split_valid(labels: Any, fraction: float, seed: int = SPLIT_SEED) -> tuple[Any, Any]:
    """Stratified, seeded train/valid split: `fraction` of each class goes to valid."""
    import torch

    if not 0 < fraction < 1:
        raise textlab.UsageError(f"--valid-fraction must be between 0 and 1, not {fraction}")
    g = torch.Generator().manual_seed(seed)
    valid = []
    for c in range(len(CLASSES)):
        rows = torch.nonzero(labels == c).flatten()
        take = int(round(fraction * len(rows)))
        valid.append(rows[torch.randperm(len(rows), generator=g)[:take]])
    is_valid = torch.zeros(len(labels), dtype=torch.bool)
    is_valid[torch.cat(valid)] = True
    train_idx, valid_idx = torch.nonzero(~is_valid).flatten(), torch.nonzero(is_valid).flatten()
    if len(valid_idx) == 0 or len(train_idx) == 0:
        raise textlab.DataError(f"--valid-fraction {fraction} of {len(labels)} rows leaves an empty train or valid split")
    return train_idx, valid_idx


# ============================================================================ vocabulary
def vocab_key(source: textlab.Source, min_count: int, valid_fraction: float, split_seed: int,
              tokenizer: str = "builtin") -> str:
    return source.fingerprint(CLEANING, SAMPLE_VERSION, tokenizer, min_count, valid_fraction, split_seed)


def build_vocab(prep: Prepared, rows: Any, min_count: int) -> textlab.Vocab:
    """Words seen at least `min_count` times in `rows` (the train part), after the specials."""
    counts = prep.counts(rows).tolist()
    counter = {w: c for w, c in zip(prep.words, counts) if c > 0}
    vocab = textlab.Vocab.build(counter, min_count=min_count, specials=SPECIALS, unk="<unk>")
    if len(vocab) <= len(SPECIALS):
        top = max(counts) if counts else 0
        raise textlab.UsageError(f"--min-count {min_count} leaves an empty vocabulary",
                                 hint=f"the most frequent word occurs {top} times in the train part")
    return vocab


def get_vocab(source: textlab.Source, prep: Prepared, rows: Any, *, min_count: int, valid_fraction: float,
              split_seed: int = SPLIT_SEED, tokenizer: str = "builtin") -> tuple[textlab.Vocab, Path, bool]:
    """The cached vocabulary for these settings, built (and cached) if missing. -> (vocab, path, cached)."""
    key = vocab_key(source, min_count, valid_fraction, split_seed, tokenizer)
    path = textlab.cache_dir("agnews", "vocab") / f"{key}.json"
    if path.exists():
        try:
            return textlab.Vocab.load(path), path, True
        except textlab.DataError:
            path.unlink(missing_ok=True)
    vocab = build_vocab(prep, rows, min_count)
    vocab.save(path)
    return vocab, path, False


# ============================================================================ encoded data and batches
@dataclass
class Encoded(Rows):
    """A split as vocabulary ids (`ids` index the vocabulary)."""

    def batch(self, rows: Any, max_len: int) -> tuple[Any, Any]:
        """Rows -> (tokens [B, T] right-padded with PAD, lengths [B]); the first `max_len` tokens of each."""
        import torch

        starts = self.offsets[rows]
        lengths = self.lengths[rows].clamp(max=max_len)
        steps = torch.arange(int(lengths.max()))
        pos = (starts[:, None] + steps[None, :]).clamp(max=len(self.ids) - 1)
        tokens = self.ids[pos].masked_fill(steps[None, :] >= lengths[:, None], PAD)
        return tokens, lengths


def encode(prep: Prepared, vocab: textlab.Vocab) -> Encoded:
    """Map a prepared split to vocabulary ids (unknown words -> <unk>), a block of rows at a time."""
    import torch

    lut = torch.tensor([vocab.stoi.get(w, UNK) for w in prep.words] or [UNK], dtype=torch.int64)
    out = torch.empty(len(prep.ids), dtype=torch.int64)
    for a, _, ids in prep.blocks():
        start = int(prep.offsets[a])
        out[start:start + len(ids)] = lut[ids.long()]
    return Encoded(out, prep.offsets, prep.labels)


def bucket_batches(lengths: Any, batch_size: int, generator: Any, pool: int | None = None) -> list:
    """Shuffled batches of row indices with similar lengths (little padding).

    Rows are shuffled, cut into pools of `pool * batch_size` rows (default: one pool), sorted by
    length inside each pool (stable: rows of one length stay shuffled) and cut into batches; the
    batch order is then shuffled. With one pool nearly every batch holds rows of a single length,
    so the RNN needs no packing for it. Depends only on `generator`.
    """
    import torch

    order = torch.randperm(len(lengths), generator=generator)
    batches = []
    size = pool * batch_size if pool else max(1, len(order))
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        batches += list(torch.split(chunk, batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


# ============================================================================ analysis
def coverage(prep: Prepared, train_idx: Any, valid_idx: Any, thresholds: Sequence[int]) -> list[dict]:
    """Per min-count threshold: vocabulary size and the share of train / valid tokens it covers."""
    import torch

    train_counts = prep.counts(train_idx)
    valid_counts = prep.counts(valid_idx)
    in_valid = torch.zeros(len(prep), dtype=torch.bool)
    in_valid[valid_idx] = True
    out = []
    for th in thresholds:
        known = train_counts >= th
        unknown_rows = torch.zeros(len(prep), dtype=torch.bool)
        for a, b, ids in prep.blocks():  # valid rows with a word the vocabulary does not know
            token_rows = torch.repeat_interleave(torch.arange(a, b), prep.offsets[a + 1:b + 1] - prep.offsets[a:b])
            unknown_rows[token_rows[in_valid[token_rows] & ~known[ids.long()]]] = True
        out.append({
            "min_count": int(th),
            "size": int(known.sum()) + len(SPECIALS),
            "distinct": int((train_counts > 0).sum()),
            "train_coverage": float(train_counts[known].sum() / max(1, int(train_counts.sum()))),
            "valid_coverage": float(valid_counts[known].sum() / max(1, int(valid_counts.sum()))),
            "valid_rows_known": 1.0 - float(unknown_rows[valid_idx].float().mean()) if len(valid_idx) else float("nan"),
        })
    return out


def _length_stats(lengths: Any) -> dict:
    import torch

    x = lengths.double()
    q = torch.quantile(x, torch.tensor([0.5, 0.9, 0.95, 0.99], dtype=torch.float64)).round().long().tolist()
    return {"rows": len(lengths), "mean": float(x.mean()), "median": q[0], "p90": q[1], "p95": q[2], "p99": q[3],
            "max": int(lengths.max())}


def describe(source: textlab.Source, thresholds: Sequence[int], valid_fraction: float = 0.05,
             tokenizer: str = "builtin") -> dict:
    """What `textlab analyze agnews` shows: classes and lengths per split, coverage per threshold."""
    import torch

    prep = prepare(source, "train", tokenizer=tokenizer)
    train_idx, valid_idx = split_valid(prep.labels, valid_fraction)
    parts = {"train": (prep, train_idx), "valid": (prep, valid_idx)}
    try:
        test = prepare(source, "test", tokenizer=tokenizer)
        parts["test"] = (test, torch.arange(len(test)))
    except textlab.DataError as exc:  # one file, or no test file in the folder
        textlab.status(f"no test split: {exc.message}")
    result: dict[str, Any] = {"data": source.describe(), "tokenizer": tokenizer, "classes": {}, "lengths": {}, "length_histogram": {}}
    for name, (p, rows) in parts.items():
        lengths = p.lengths[rows]
        result["classes"][name] = torch.bincount(p.labels[rows], minlength=len(CLASSES)).tolist()
        result["lengths"][name] = _length_stats(lengths)
        result["length_histogram"][name] = torch.bincount(lengths.clamp(max=200)).tolist()
    result["coverage"] = coverage(prep, train_idx, valid_idx, thresholds)
    return result


def plot_analysis(result: dict, out: Path) -> list[Path]:
    """lengths.png (histogram per split, normalised) and coverage.png (coverage vs min count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, hist in result["length_histogram"].items():
        total = sum(hist) or 1
        ax.plot(range(len(hist)), [h / total for h in hist], label=name)
    ax.set_xlabel("tokens per text (200 = 200 or more)")
    ax.set_ylabel("share of rows")
    ax.set_title(f"text lengths: {result['data']}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    lengths_png = out / "lengths.png"
    fig.savefig(lengths_png, dpi=110)
    plt.close(fig)
    fig, ax1 = plt.subplots(figsize=(7, 4))
    cov = result["coverage"]
    xs = [c["min_count"] for c in cov]
    ax1.plot(xs, [c["train_coverage"] for c in cov], "o-", label="train tokens covered")
    ax1.plot(xs, [c["valid_coverage"] for c in cov], "s-", label="valid tokens covered")
    ax1.set_xscale("log")
    ax1.set_xlabel("min count")
    ax1.set_ylabel("share of tokens")
    ax2 = ax1.twinx()
    ax2.plot(xs, [c["size"] for c in cov], "k:", label="vocabulary size")
    ax2.set_ylabel("vocabulary size")
    ax1.legend(loc="lower left")
    ax1.grid(alpha=0.3)
    ax1.set_title("vocabulary coverage per threshold")
    fig.tight_layout()
    coverage_png = out / "coverage.png"
    fig.savefig(coverage_png, dpi=110)
    plt.close(fig)
    return [lengths_png, coverage_png]


def show_analysis(result: dict) -> None:
    """What `describe` found, as three tables: classes per split, lengths, coverage per threshold."""
    from rich.table import Table

    splits = list(result["classes"])
    t = Table(title=f"classes of {result['data']}")
    t.add_column("class")
    for s in splits:
        t.add_column(s, justify="right")
    for i, name in enumerate(CLASSES):
        cells = []
        for s in splits:
            n, total = result["classes"][s][i], sum(result["classes"][s])
            cells.append(f"{n:,} ({n / total:.1%})")
        t.add_row(name, *cells)
    lt = Table(title=f"text length in tokens (after cleaning; {result.get('tokenizer', 'builtin')} tokenizer)")
    for col in ("split", "rows", "mean", "median", "p90", "p95", "p99", "max"):
        lt.add_column(col, justify="left" if col == "split" else "right")
    for s, st in result["lengths"].items():
        lt.add_row(s, f"{st['rows']:,}", f"{st['mean']:.1f}", *(f"{st[k]:,}" for k in ("median", "p90", "p95", "p99", "max")))
    ct = Table(title="vocabulary per min-count threshold (counted on the train part; valid is held out)")
    for col in ("min count", "vocabulary", "train tokens covered", "valid tokens covered", "valid rows all known"):
        ct.add_column(col, justify="right")
    for c in result["coverage"]:
        ct.add_row(str(c["min_count"]), f"{c['size']:,}", f"{c['train_coverage']:.2%}", f"{c['valid_coverage']:.2%}",
                   f"{c['valid_rows_known']:.2%}")
    textlab.show(t, lt, ct)
