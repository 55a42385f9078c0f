"""Features of cells and of (markdown cell, code gap) pairs. numpy only.

A notebook with C code cells has C + 1 gaps: gap j lies just before code cell j (gap C is the
end). Every model here places markdown cells by gap, so the central object is the table of
features of each (markdown cell, gap) pair: how similar the markdown is to the code cells on
either side of the gap (three text representations: identifier-token TF-IDF, character n-gram
TF-IDF, and identifiers that appear for the first time in that code cell), how that similarity
ranks among the notebook's cells, where the gap lies, where a text-only model would put the
markdown, and what kind of cells surround the gap.

Fitted text representations are a vocabulary list plus an idf vector (or only an idf vector for
hashed character n-grams), so they go into checkpoints as plain lists and tensors.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

import textlab

from .data import Notebook

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[^\W\d_]+", re.UNICODE)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_IMG = re.compile(r"data:image/[^)\s\"']+")
_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")
_HEADING = re.compile(r"^\s*(#{1,6})\s")
_NUMBERED = re.compile(r"^\s*#{1,6}\s*(?:(?:step|part|section|chapter)\s*)?(\d+(?:\.\d+)*)[.):\s]", re.I)
_LIST = re.compile(r"^\s*([-*+]|\d+\.)\s")
_IMPORT = re.compile(r"^\s*(import|from)\s", re.M)
_PLOT = re.compile(r"plt\.|sns\.|\.plot\(|plotly|px\.|\.hist\(|\.imshow\(")
_SHOW = re.compile(r"print\(|display\(|\.head\(|\.describe\(|\.info\(|\.shape\b")
MAX_CHARS = 5000  # characters of a cell used for character n-grams


# ============================================================================ tokens
def clean(text: str) -> str:
    """Inline images and URLs carry little meaning for ordering: shorten them."""
    text = _IMG.sub(" image ", text)
    return _URL.sub(lambda m: " url " + " ".join(re.findall(r"[A-Za-z]{3,}", m.group(0))[:6]) + " ", text)


def ident_tokens(text: str) -> list[str]:
    """Identifier-aware tokens: `read_csv` -> read_csv, read, csv; `MinMaxScaler` -> minmaxscaler, min, max, scaler."""
    out = []
    for tok in _IDENT.findall(clean(text)):
        low = tok.lower()
        if len(low) < 2:
            continue
        out.append(low)
        if "_" in tok or tok[1:] != low[1:]:
            parts = [p.lower() for part in tok.split("_") for p in _CAMEL.findall(part)]
            if len(parts) > 1:
                out.extend(p for p in parts if len(p) > 1)
    return out


def word_ngrams(text: str) -> list[str]:
    """Lower-cased words and word bigrams of a markdown cell (the text-only position model's input)."""
    ws = textlab.words(clean(text))[:400]
    return ws + [f"{a} {b}" for a, b in zip(ws, ws[1:])]


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _normalise(text: str) -> str:
    return _SPACE.sub(" ", clean(text).lower()).strip()[:MAX_CHARS]


def char_hashes_batch(texts: Sequence[str], n_features: int, sizes: Sequence[int] = (3, 4, 5)) -> tuple[np.ndarray, np.ndarray]:
    """(cell index, hashed character n-gram) of every n-gram of every text, vectorised over all texts.

    Each text is whitespace-normalised, lower-cased and padded with a space; n-grams never cross
    from one text into the next. The hash is stable across processes and machines.
    """
    parts = [f" {_normalise(t)} " for t in texts]
    lens = np.array([len(p) for p in parts], dtype=np.int64)
    a = np.frombuffer("".join(parts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    cell_of = np.repeat(np.arange(len(parts)), lens)
    cells, hashes = [], []
    with np.errstate(over="ignore"):
        for n in sizes:
            m = len(a) - n + 1
            if m <= 0:
                continue
            h = np.full(m, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = (h * np.uint64(1000003)) ^ a[k:k + m]
            h = h * _MIX
            h ^= h >> np.uint64(29)
            pos = np.arange(m)
            cell = cell_of[:m]
            ok = pos + n <= starts[cell] + lens[cell]  # the n-gram ends inside its own text
            cells.append(cell[ok])
            hashes.append((h[ok] % np.uint64(n_features)).astype(np.int64))
    if not cells:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(cells), np.concatenate(hashes)


def char_hashes(text: str, n_features: int, sizes: Sequence[int] = (3, 4, 5)) -> np.ndarray:
    """Hashed character n-grams of one text."""
    if not _normalise(text):
        return np.zeros(0, dtype=np.int64)
    return char_hashes_batch([text], n_features, sizes)[1]


# ============================================================================ TF-IDF
SparseRow = tuple[np.ndarray, np.ndarray]  # (term ids, weights), L2-normalised


def unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts (a plain sort: numpy's hash-based unique is slower here)."""
    k = np.sort(keys, kind="stable")
    if len(k) == 0:
        return k, np.zeros(0, dtype=np.int64)
    start = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    return k[start], np.diff(np.append(start, len(k)))


def _weigh(ids: np.ndarray, idf: np.ndarray) -> SparseRow:
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    uniq, counts = unique_counts(ids)
    w = (1.0 + np.log(counts)) * idf[uniq]
    norm = float(np.sqrt((w * w).sum())) or 1.0
    return uniq, (w / norm).astype(np.float32)


def weigh_batch(cells: np.ndarray, terms: np.ndarray, idf: np.ndarray, n_rows: int):
    """CSR (n_rows x len(idf)) of sublinear TF-IDF, L2-normalised per row, from (row, term) occurrences."""
    import scipy.sparse as sp

    n_cols = len(idf)
    if len(terms) == 0:
        return sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    keys, counts = unique_counts(cells.astype(np.int64) * n_cols + terms)
    rows, cols = keys // n_cols, keys % n_cols
    w = (1.0 + np.log(counts)) * idf[cols]
    norm = np.sqrt(np.bincount(rows, weights=w * w, minlength=n_rows))
    w = w / np.maximum(norm[rows], 1e-12)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    return sp.csr_matrix((w.astype(np.float32), cols, indptr), shape=(n_rows, n_cols))


@dataclass
class Tfidf:
    """Sublinear TF-IDF over a vocabulary of string terms (fitted on training cells)."""

    vocab: list[str]
    idf: np.ndarray

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.idf = np.asarray(self.idf, dtype=np.float32)

    @classmethod
    def fit(cls, docs: Iterable[list[str]], min_df: int = 2, max_df: float = 0.5,
            max_features: int = 200_000) -> "Tfidf":
        df: Counter = Counter()
        n = 0
        for toks in docs:
            df.update(set(toks))
            n += 1
        items = [(t, c) for t, c in df.items() if min_df <= c <= max_df * n]
        items.sort(key=lambda tc: (-tc[1], tc[0]))
        items = items[:max_features]
        idf = np.array([math.log((1 + n) / (1 + c)) + 1 for _, c in items], dtype=np.float32)
        return cls([t for t, _ in items], idf)

    def row(self, toks: Sequence[str]) -> SparseRow:
        ids = np.fromiter((self.index[t] for t in toks if t in self.index), dtype=np.int64)
        return _weigh(ids, self.idf)

    def matrix(self, docs: Sequence[Sequence[str]]):
        """CSR of many documents at once."""
        index = self.index
        ids = [[index[t] for t in toks if t in index] for toks in docs]
        cells = np.repeat(np.arange(len(ids)), [len(x) for x in ids])
        terms = np.fromiter((i for x in ids for i in x), dtype=np.int64, count=len(cells))
        return weigh_batch(cells, terms, self.idf, len(docs))


@dataclass
class HashedTfidf:
    """Sublinear TF-IDF over hashed character n-grams: only an idf vector to store."""

    idf: np.ndarray

    @property
    def n_features(self) -> int:
        return len(self.idf)

    @classmethod
    def fit(cls, texts: Sequence[str], n_features: int = 1 << 20, batch: int = 256) -> "HashedTfidf":
        df = np.zeros(n_features, dtype=np.int64)
        for lo in range(0, len(texts), batch):
            cells, h = char_hashes_batch(texts[lo:lo + batch], n_features)
            keys, _ = unique_counts(cells * n_features + h)
            df += np.bincount(keys % n_features, minlength=n_features)
        n = len(texts)
        return cls((np.log((1 + n) / (1 + df)) + 1).astype(np.float32))

    def row(self, text: str) -> SparseRow:
        return _weigh(char_hashes(text, self.n_features), self.idf)

    def matrix(self, texts: Sequence[str]):
        cells, h = char_hashes_batch(texts, self.n_features)
        return weigh_batch(cells, h, self.idf, len(texts))


def local_dense(rows: Sequence[SparseRow]) -> np.ndarray:
    """Rows of one notebook as a dense matrix over the terms that occur in it (cells x local terms)."""
    if not rows:
        return np.zeros((0, 1), dtype=np.float32)
    ids = np.concatenate([r[0] for r in rows])
    if len(ids) == 0:
        return np.zeros((len(rows), 1), dtype=np.float32)
    uniq, inv = np.unique(ids, return_inverse=True)
    m = np.zeros((len(rows), len(uniq)), dtype=np.float32)
    lens = [len(r[0]) for r in rows]
    which = np.repeat(np.arange(len(rows)), lens)
    m[which, inv] = np.concatenate([r[1] for r in rows])
    return m


def sparse(rows: Sequence[SparseRow], n_cols: int):
    """Rows as a scipy CSR matrix (cells x terms)."""
    import scipy.sparse as sp

    indptr = np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])]).astype(np.int64)
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


def first_occurrences(code):
    """Keep, in each term's column, only the first code cell (row) that uses the term."""
    coo = code.tocoo()
    order = np.lexsort((coo.row, coo.col))
    cols = coo.col[order]
    first = np.ones(len(cols), dtype=bool)
    first[1:] = cols[1:] != cols[:-1]
    keep = order[first]
    import scipy.sparse as sp

    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=code.shape)


# ============================================================================ cell features
MD_FEATURES = ("heading_level", "log_chars", "lines", "has_backticks", "has_link", "has_image", "has_math", "is_list")
CODE_FEATURES = ("log_chars", "import_share", "defines", "plots", "shows")


def markdown_features(text: str) -> list[float]:
    m = _HEADING.match(text)
    return [len(m.group(1)) if m else 0, math.log1p(len(text)), min(text.count("\n"), 50), "`" in text,
            "](" in text or "http" in text, "<img" in text or "![" in text, "$" in text, bool(_LIST.match(text))]


def code_features(text: str) -> list[float]:
    lines = max(1, sum(1 for line in text.split("\n") if line.strip()))
    return [math.log1p(len(text)), len(_IMPORT.findall(text)) / lines, "def " in text or "class " in text,
            bool(_PLOT.search(text)), bool(_SHOW.search(text))]


def numbering(texts: Sequence[str]) -> np.ndarray:
    """Numbered headings ("## 2.1 Cleaning"): each one's rank among the notebook's numbers in [0, 1], else -1."""
    nums = {}
    for k, text in enumerate(texts):
        m = _NUMBERED.match(text)
        if m:
            parts = tuple(int(x) for x in m.group(1).split(".")[:3] if x.isdigit() and len(x) < 4)
            if parts:
                nums[k] = parts
    out = np.full(len(texts), -1.0, dtype=np.float32)
    keys = sorted(set(nums.values()))
    if len(keys) >= 2:
        rank = {key: r / (len(keys) - 1) for r, key in enumerate(keys)}
        for k, key in nums.items():
            out[k] = rank[key]
    return out


# ============================================================================ notebooks
@dataclass
class TextModels:
    """The fitted text representations the pair features use."""

    words: Tfidf
    chars: HashedTfidf


class View:
    """One notebook seen through the fitted text representations: every array the pair features
    need (computed once, used by every stage; `arrays()` and `from_arrays` keep it on disk)."""

    PARTS = ("sim_word", "sim_char", "sim_new", "md_md", "md_feats", "code_feats", "numbers", "gaps")

    def __init__(self, nb: Notebook | None, text: TextModels | None):
        if nb is None or text is None:
            return  # from_arrays
        self.code, self.md = nb.code, nb.markdown
        self.C, self.M = len(self.code), len(self.md)
        W = text.words.matrix([ident_tokens(s) for s in nb.sources])
        X = text.chars.matrix(nb.sources)
        word_md, word_code = W[self.md], W[self.code]
        self.sim_word = _dense(word_md @ word_code.T)
        self.sim_char = _dense(X[self.md] @ X[self.code].T)
        self.sim_new = _dense(word_md @ first_occurrences(word_code).T)
        self.md_md = _dense(word_md @ word_md.T)
        texts = nb.sources
        self.md_feats = np.array([markdown_features(texts[i]) for i in self.md], dtype=np.float32).reshape(self.M, -1)
        self.code_feats = np.array([code_features(texts[i]) for i in self.code] + [[0.0] * len(CODE_FEATURES)],
                                   dtype=np.float32)
        self.numbers = numbering([texts[i] for i in self.md])
        self.gaps = None
        if nb.order is not None:
            gaps = nb.gaps()
            self.gaps = np.array([gaps[nb.cell_ids[i]] for i in self.md], dtype=np.int64)

    def true_gaps(self) -> np.ndarray:
        if self.gaps is None:
            raise textlab.DataError("this notebook has no known order")
        return self.gaps

    def arrays(self) -> np.ndarray:
        """Everything as one float32 vector (gaps included: exact below 2**24)."""
        return np.concatenate([np.asarray(getattr(self, k), dtype=np.float32).ravel() for k in self.PARTS])

    @classmethod
    def from_arrays(cls, flat: np.ndarray, M: int, C: int) -> "View":
        v = cls(None, None)
        v.M, v.C = M, C
        shapes = [(M, C), (M, C), (M, C), (M, M), (M, len(MD_FEATURES)), (C + 1, len(CODE_FEATURES)), (M,), (M,)]
        k = 0
        for name, shape in zip(cls.PARTS, shapes):
            n = int(np.prod(shape))
            setattr(v, name, flat[k:k + n].reshape(shape))
            k += n
        v.gaps = v.gaps.astype(np.int64)
        return v

    @staticmethod
    def size(M: int, C: int) -> int:
        return 3 * M * C + M * M + M * len(MD_FEATURES) + (C + 1) * len(CODE_FEATURES) + 2 * M


def _dense(m) -> np.ndarray:
    return np.asarray(m.toarray(), dtype=np.float32)


SIM_FEATURES = ("next", "prev", "next2", "prev2", "next_win", "prev_win", "next_minus_max", "prev_minus_max",
                "next_rank", "prev_rank", "best_rank", "next_colnorm", "prev_colnorm", "next_colrank", "prev_colrank", "max")


def _sim_block(S: np.ndarray, m: np.ndarray, j: np.ndarray, C: int) -> list[np.ndarray]:
    """Features of the (markdown m, gap j) pairs from one markdown x code similarity matrix."""
    M = S.shape[0]
    pad = np.zeros((M, C + 6), dtype=np.float32)
    pad[:, 3:C + 3] = S  # code cell k in column k + 3
    nxt, prv, nxt2, prv2 = pad[m, j + 3], pad[m, j + 2], pad[m, j + 4], pad[m, j + 1]
    win = np.maximum(np.maximum(nxt, nxt2), pad[m, j + 5])
    winp = np.maximum(np.maximum(prv, prv2), pad[m, j])
    smax = (S.max(1) if C else np.zeros(M, np.float32))[m]
    rank = np.empty((M, C), dtype=np.float32)
    rank[np.arange(M)[:, None], (-S).argsort(1, kind="stable")] = np.arange(C, dtype=np.float32)[None, :]
    rpad = np.full((M, C + 2), C, dtype=np.float32)
    rpad[:, 1:C + 1] = rank
    rn, rp = rpad[m, j + 1], rpad[m, j]
    colnorm = np.zeros((M, C + 2), dtype=np.float32)
    colnorm[:, 1:C + 1] = S / (S.max(0, keepdims=True) + 1e-6)
    colrank = np.full((M, C + 2), M, dtype=np.float32)
    cr = np.empty((M, C), dtype=np.float32)
    cr[(-S).argsort(0, kind="stable"), np.arange(C)[None, :]] = np.arange(M, dtype=np.float32)[:, None]
    colrank[:, 1:C + 1] = cr
    return [nxt, prv, nxt2, prv2, win, winp, nxt - smax, prv - smax, rn, rp, np.minimum(rn, rp),
            colnorm[m, j + 1], colnorm[m, j], colrank[m, j + 1], colrank[m, j], smax]


BASE_FEATURES = ("gap_frac", "n_code", "n_markdown", "first_gap", "last_gap", "prior", "prior_minus_gap",
                 "prior_abs_gap", "prior_rank", "prior_rank_minus_gap", "numbered", "numbered_minus_gap")
PAIR_FEATURES = (BASE_FEATURES + tuple(f"{rep}_{f}" for rep in ("word", "char", "new") for f in SIM_FEATURES)
                 + tuple(f"md_{f}" for f in MD_FEATURES) + tuple(f"next_code_{f}" for f in CODE_FEATURES)
                 + tuple(f"prev_code_{f}" for f in CODE_FEATURES))


def all_pairs(M: int, C: int) -> tuple[np.ndarray, np.ndarray]:
    """(markdown index, gap) of every pair of a notebook, markdown-major: gaps 0..C of each markdown cell."""
    return np.repeat(np.arange(M), C + 1), np.tile(np.arange(C + 1), M)


def pair_features(v: View, prior: np.ndarray, m: np.ndarray | None = None, j: np.ndarray | None = None) -> np.ndarray:
    """(pairs, len(PAIR_FEATURES)) float32 of the (markdown m, gap j) pairs; of every pair (markdown-major,
    gaps 0..C of each markdown cell) when `m` and `j` are not given.

    `prior` is the text-only model's guess of each markdown cell's relative position (the share
    of code cells before it). Only the pairs asked for are built (a fit samples the wrong gaps first).
    """
    M, C = v.M, v.C
    if m is None or j is None:
        m, j = all_pairs(M, C)
    frac = j / max(C, 1)
    prior = np.asarray(prior, dtype=np.float32)
    prank = (np.argsort(np.argsort(prior, kind="stable"), kind="stable") + 0.5) / max(M, 1)
    num = v.numbers[m]
    pm, rm = prior[m], prank[m]
    cols = [frac, np.full(len(m), C), np.full(len(m), M), j == 0, j == C, pm, pm - frac, np.abs(pm - frac),
            rm, rm - frac, num, np.where(num >= 0, num - frac, 0.0)]
    for S in (v.sim_word, v.sim_char, v.sim_new):
        cols += _sim_block(S, m, j, C)
    md, code = v.md_feats, v.code_feats
    prev = np.vstack([np.zeros((1, len(CODE_FEATURES)), np.float32), code[:C]])
    X = np.empty((len(m), len(PAIR_FEATURES)), dtype=np.float32)
    X[:, :len(cols)] = np.stack(cols, axis=1)
    k = len(cols)
    for block in (md[m], code[j], prev[j]):
        X[:, k:k + block.shape[1]] = block
        k += block.shape[1]
    return X


STAGE2_FEATURES = ("s1_logit", "s1_logit_minus_max", "s1_prob", "s1_cdf", "s1_rank", "others_mass",
                   "similar_md_mass", "similar_md_max", "similar_md_max_rel", "similar_md_best")


def stage2_features(v: View, logits: np.ndarray, m: np.ndarray | None = None, j: np.ndarray | None = None) -> np.ndarray:
    """Context from a first pass: where the other markdown cells went, weighted by their similarity to this one.

    `logits`: the first pass's score of every pair of the notebook (markdown-major); the features
    of the pairs (m, j), or of every pair when they are not given."""
    M, C = v.M, v.C
    Z = logits.reshape(M, C + 1)
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    cdf = np.cumsum(P, 1)
    T = v.md_md.copy()
    np.fill_diagonal(T, 0.0)
    others = P.sum(0, keepdims=True) - P
    smooth = P.copy()
    smooth[:, 1:] += 0.5 * P[:, :-1]
    smooth[:, :-1] += 0.5 * P[:, 1:]
    prop = (T @ smooth) / (T.sum(1, keepdims=True) + 1e-6)
    pmax = (T[:, :, None] * smooth[None, :, :]).max(1) if M > 1 else np.zeros_like(P)
    tmax = T.max(1, keepdims=True) if M > 1 else np.zeros((M, 1), np.float32)
    rank = np.argsort(np.argsort(-Z, 1, kind="stable"), 1, kind="stable")
    new = np.stack([Z, Z - Z.max(1, keepdims=True), P, cdf, rank, np.broadcast_to(others, (M, C + 1)), prop, pmax,
                    pmax / (tmax + 1e-6), np.broadcast_to(tmax, (M, C + 1))], axis=2)
    if m is None or j is None:
        return new.reshape(M * (C + 1), -1).astype(np.float32)
    return new[m, j].astype(np.float32)


def gap_keys(logits: np.ndarray, M: int, C: int) -> np.ndarray:
    """Sort keys of markdown cells from gap scores: the median gap, then the expectation within it.

    The median of each cell's gap distribution maximises the expected number of markdown/code
    pairs in the right order (Kendall tau); cells in the same gap are ordered by expected gap.
    Code cell k sits at k + 0.5, so a key in (j - 0.5, j + 0.5) puts the cell in gap j.
    """
    Z = np.asarray(logits, dtype=np.float64).reshape(M, C + 1)
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    med = (np.cumsum(P, 1) < 0.5).sum(1)
    expect = (P * np.arange(C + 1)).sum(1)
    return med + 0.4 * np.tanh(expect - med)


def order_from_keys(nb: Notebook, keys: np.ndarray) -> list[str]:
    """The full predicted order: code cell k at k + 0.5, markdown cell m at keys[m] (ties: markdown first)."""
    pos = np.empty(len(nb), dtype=np.float64)
    pos[nb.code] = np.arange(len(nb.code)) + 0.5
    md = nb.markdown
    pos[md] = keys
    kind = np.array([0 if t != "code" else 1 for t in nb.cell_types])
    idx = np.lexsort((np.arange(len(nb)), kind, pos))
    return [nb.cell_ids[i] for i in idx]
