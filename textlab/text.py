"""Tokenizers that need no download, and a vocabulary shared by every task.

`words()` is a Unicode regex tokenizer (Latin, Cyrillic, ё, digits); it never calls
`nltk.word_tokenize`, whose punkt data must be downloaded.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from .errors import DataError, UsageError

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def normalize(text: str) -> str:
    """NFC-normalize (so that `ё` typed two ways is one character)."""
    return unicodedata.normalize("NFC", text)


def words(text: str, lower: bool = True) -> list[str]:
    """Split text into words: runs of Unicode letters and digits (apostrophes kept inside words)."""
    text = normalize(text)
    if lower:
        text = text.lower()
    return _WORD.findall(text)


class Vocab:
    """An indexed vocabulary with optional counts and special tokens.

    Specials come first (in the order given), then words by decreasing count (ties by first
    appearance order, which `Counter.most_common` keeps), so ids are deterministic.
    """

    def __init__(self, itos: Sequence[str], counts: Sequence[int] | None = None,
                 specials: Sequence[str] = (), unk: str | None = None):
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = next(w for w in self.itos if self.itos.count(w) > 1)
            raise DataError(f"vocabulary has a duplicate entry {dup!r}")
        self.counts = list(counts) if counts is not None else None
        self.specials = list(specials)
        self.unk = unk
        self.unk_id = self.stoi.get(unk) if unk is not None else None

    # -------------------------------------------------------------- building
    @classmethod
    def build(cls, counter: Counter | dict, *, min_count: int = 1, max_size: int | None = None,
              specials: Sequence[str] = (), unk: str | None = None) -> "Vocab":
        """Words with `count >= min_count` (most frequent first, at most `max_size`), after specials."""
        items = [(w, c) for w, c in Counter(counter).most_common() if c >= min_count and w not in specials]
        if max_size is not None:
            items = items[: max(0, max_size - len(specials))]
        itos = list(specials) + [w for w, _ in items]
        counts = [0] * len(specials) + [c for _, c in items]
        return cls(itos, counts, specials, unk)

    # -------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: object) -> bool:
        return word in self.stoi

    def __getitem__(self, word: str) -> int:
        return self.stoi[word]

    def get(self, word: str, default: int | None = None) -> int | None:
        i = self.stoi.get(word)
        if i is None:
            return self.unk_id if default is None else default
        return i

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens; unknown tokens map to `unk` (or are dropped if there is none)."""
        out = []
        unk = self.unk_id
        for t in tokens:
            i = self.stoi.get(t, unk)
            if i is not None:
                out.append(i)
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def suggest(self, word: str, n: int = 5) -> list[str]:
        """Vocabulary words closest to `word` (spelling), for "did you mean" messages."""
        word = normalize(word)
        pool = [w for w in self.itos if w not in self.specials]
        lower = word.lower()
        if lower != word and lower in self.stoi:
            return [lower]
        # Restrict to words of similar length first: difflib over 100k words is slow.
        near = [w for w in pool if abs(len(w) - len(word)) <= 3]
        return difflib.get_close_matches(word, near or pool, n=n, cutoff=0.5)

    def index(self, word: str) -> int:
        """The id of `word`, or a UsageError that suggests the closest words."""
        key = normalize(word)
        if key in self.stoi:
            return self.stoi[key]
        close = self.suggest(key)
        hint = f"closest: {', '.join(close)}" if close else "no close words in the vocabulary"
        raise UsageError(f"{word!r} is not in the vocabulary ({len(self)} words)", hint=hint)

    # -------------------------------------------------------------- storage
    def to_dict(self) -> dict:
        return {"itos": self.itos, "counts": self.counts, "specials": self.specials, "unk": self.unk}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        try:
            return cls(data["itos"], data.get("counts"), data.get("specials") or (), data.get("unk"))
        except (KeyError, TypeError) as exc:
            raise DataError(f"malformed vocabulary: {exc}") from None

    def save(self, path: str | Path) -> None:
        from .data import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        from .data import read_json

        data = read_json(path, "vocabulary")
        if isinstance(data, list):
            return cls(data)
        if isinstance(data, dict) and "itos" not in data and all(isinstance(v, int) for v in data.values()):
            itos = [w for w, _ in sorted(data.items(), key=lambda kv: kv[1])]  # {token: id}
            return cls(itos)
        if not isinstance(data, dict):
            raise DataError(f"vocabulary {path} must be a JSON list or object")
        return cls.from_dict(data)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} entries, specials={self.specials})"
