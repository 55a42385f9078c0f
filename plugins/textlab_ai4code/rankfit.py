"""Fitting the two-stage gap ranker at any size: memory stays flat in the number of notebooks.

    text models   identifier TF-IDF from at most WORD_CELLS cells, character idf from CHAR_CELLS
    prior         ridge on markdown n-grams of at most PRIOR_CELLS markdown cells; its out-of-fold
                  guess for every training markdown cell (5 folds by ancestor), streamed
    pass 1        per notebook: sample the wrong gaps (`--negatives`), build the features of the
                  kept pairs only, append them to float32 shards on disk (one set per half)
    stage 1       LightGBM on each half's shards (the Dataset is built from the shards in batches
                  and held binned, one byte per value); the stage-1 forest is the two halves' mean
    pass 2        per notebook: features of every pair, scored by the half that did not see it,
                  stage-2 features, a fresh sample of wrong gaps, appended to shards
    stage 2       LightGBM on those shards

Notebooks are read from their files when used (`data.NotebookFiles`), so what is held is the
binned training rows of one fit (about 90 bytes a kept pair), the shards' labels, and one
notebook at a time. The shards go to a temporary folder (`$TMPDIR`), removed at the end.
Below the caps, every cell is used: on data of the size of ../shared/data/ai4code the fit is
the method of textlab 0.1 with LightGBM in place of scikit-learn's boosted trees.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections import abc
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import textlab

from . import data as D
from . import features as F
from .config import RankerConfig
from .trees import Forest, from_lightgbm

WORD_CELLS = 200_000  # cells whose identifier tokens make the TF-IDF vocabulary and idf
CHAR_CELLS = 30_000  # cells whose character n-grams give the hashed idf (idf needs no more)
PRIOR_CELLS = 200_000  # markdown cells the text-only prior is fitted on
SHARD_ROWS = 1 << 18  # rows of a shard file
PRIOR_FOLDS = 5


class Stopped(Exception):
    """`should_stop()` said to stop (Ctrl-C): nothing half-fitted is kept."""


# ============================================================================ shards on disk
class ShardWriter:
    """Rows of features appended to float32 .npy files of SHARD_ROWS rows; labels kept in memory."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.paths: list[Path] = []
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.labels: list[np.ndarray] = []

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        self.buffer.append(X)
        self.labels.append(np.asarray(y, dtype=np.float32))
        self.buffered += len(X)
        if self.buffered >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffered:
            path = self.folder / f"{self.name}-{len(self.paths):05d}.npy"
            np.save(path, np.concatenate(self.buffer).astype(np.float32, copy=False))
            self.paths.append(path)
            self.buffer, self.buffered = [], 0

    def label_array(self) -> np.ndarray:
        return np.concatenate(self.labels) if self.labels else np.zeros(0, np.float32)

    def remove(self) -> None:
        for p in self.paths:
            p.unlink(missing_ok=True)
        self.paths = []


class ViewStore:
    """The notebooks' Views (similarities and cell features) of pass 1, appended to one float32
    file and read back by pass 2, so that no notebook is read or tokenised twice. Read with
    plain reads, not a memory map: pages of a map that were read count in the process's memory."""

    def __init__(self, path: Path):
        self.path = path
        self.fh = open(path, "w+b")
        self.offsets, self.shapes = [0], []

    def add(self, v: F.View) -> None:
        a = v.arrays()
        self.fh.write(a.tobytes())
        self.offsets.append(self.offsets[-1] + len(a))
        self.shapes.append((v.M, v.C))

    def close(self) -> None:
        self.fh.close()

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, k: int) -> F.View:
        self.fh.flush()
        lo, hi = self.offsets[k], self.offsets[k + 1]
        flat = np.frombuffer(os.pread(self.fh.fileno(), 4 * (hi - lo), 4 * lo), dtype=np.float32)
        return F.View.from_arrays(flat, *self.shapes[k])


def sequences(paths: Sequence[Path]) -> list[Any]:
    """The shards as lightgbm.Sequence objects: LightGBM samples rows from them to place its bins,
    then reads them in batches, so the float rows are never all in memory (plain reads, no map)."""
    import lightgbm as lgb

    class Shard(lgb.Sequence):
        batch_size = 65536

        def __init__(self, path: Path):
            self.path = path
            with open(path, "rb") as fh:
                np.lib.format.read_magic(fh)
                shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                self.start = fh.tell()
            self.n, self.width = shape
            self.fd = os.open(path, os.O_RDONLY)

        def __del__(self) -> None:
            os.close(self.fd)

        def __len__(self) -> int:
            return self.n

        def _read(self, lo: int, hi: int) -> np.ndarray:
            size = 4 * self.width
            raw = os.pread(self.fd, size * (hi - lo), self.start + size * lo)
            return np.frombuffer(raw, dtype=np.float32).reshape(hi - lo, self.width)

        def __getitem__(self, idx):  # single rows (LightGBM's sample of rows for its bins) as float64
            if isinstance(idx, slice):
                lo, hi, _ = idx.indices(self.n)
                return self._read(lo, hi)
            if isinstance(idx, list):
                return np.stack([self._read(i, i + 1)[0] for i in idx]).astype(np.float64)
            return self._read(int(idx), int(idx) + 1)[0].astype(np.float64)

    return [Shard(p) for p in paths]


# ============================================================================ LightGBM
def lgb_params(config: RankerConfig, seed: int) -> dict:
    """What scikit-learn's HistGradientBoostingClassifier did in textlab 0.1, in LightGBM's words."""
    import torch

    return {"objective": "binary", "learning_rate": config.lr, "num_leaves": config.leaves,
            "min_data_in_leaf": config.min_leaf, "min_sum_hessian_in_leaf": 1e-3, "lambda_l2": 0.0,
            "max_bin": 255, "bin_construct_sample_cnt": 200_000, "num_threads": torch.get_num_threads(),
            "seed": seed, "deterministic": True, "verbose": -1,
            # column-wise histograms: the row-wise layout keeps a second, row-major copy of the binned
            # rows (measured: about 220 bytes a row of 88 columns in all, against 88 column-wise)
            "force_col_wise": True,
            "feature_pre_filter": False}


def fit_booster(paths: Sequence[Path], labels: np.ndarray, config: RankerConfig, *, seed: int, desc: str,
                should_stop: Callable[[], bool]) -> Forest:
    """Boosted trees on the rows of the shards (label: is the true gap); raises Stopped."""
    import lightgbm as lgb

    if should_stop():
        raise Stopped
    params = lgb_params(config, seed)
    dataset = lgb.Dataset(sequences(paths), label=labels, params=params, free_raw_data=True)
    with textlab.progress(config.trees, desc, unit="tree") as bar:
        def tick(env: Any) -> None:
            bar.advance(1, rows=len(labels))
            if env.iteration + 1 < config.trees and should_stop():
                raise Stopped

        booster = lgb.train(params, dataset, num_boost_round=config.trees, callbacks=[tick])
    return from_lightgbm(booster.model_to_string())


# ============================================================================ samples of pairs
def sample_pairs(v: F.View, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(markdown, gap, label) of the pairs kept for fitting: every true gap, and each wrong gap with
    probability `rate` (a uniform subsample only shifts every logit by one constant, which does
    not change a markdown cell's distribution over gaps)."""
    m, j = F.all_pairs(v.M, v.C)
    y = j == v.true_gaps()[m]
    keep = y | (rng.random(len(m)) < rate)
    return m[keep], j[keep], y[keep]


def group_folds(notebooks: Sequence, k: int, seed: int) -> np.ndarray:
    """A fold number per notebook; an ancestor group never spans two folds."""
    group_of = D.ancestors(notebooks)
    groups = sorted(set(group_of))
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % k for i, g in enumerate(groups)}
    return np.array([fold_of[g] for g in group_of], dtype=np.int64)


def sample_notebooks(counts: Sequence[int], cap: int, seed: int) -> list[int]:
    """Indices of notebooks (in order) whose counts add up to about `cap`: all of them when they fit."""
    if sum(counts) <= cap:
        return list(range(len(counts)))
    order = list(range(len(counts)))
    random.Random(seed).shuffle(order)
    keep, total = [], 0
    for i in order:
        if total >= cap:
            break
        keep.append(i)
        total += counts[i]
    return sorted(keep)


def _peak_mb() -> float | None:
    """The process's peak resident memory so far (Linux: VmHWM), in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def release_memory() -> None:
    """Give freed memory back to the system (Python's and LightGBM's heaps keep it otherwise, and
    the next phase's peak adds to it); glibc only, a no-op elsewhere."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Laps:
    """Seconds of each phase of a fit (logged with the fit)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        release_memory()  # what the phase freed, before the next one allocates
        now = time.perf_counter()
        self.times[name], self._t = now - self._t, now
        peak = _peak_mb()
        if peak is not None:  # the process's peak memory so far: the phase that raised it is the one to shrink
            self.times[f"{name}_peak_mb"] = peak

    def disk(self, folder: Path) -> None:
        """The most MB the temporary files took (`disk_mb`)."""
        mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        self.times["disk_mb"] = max(self.times.get("disk_mb", 0.0), round(mb, 1))


# ============================================================================ the two passes
def markdown_offsets(notebooks: Sequence) -> np.ndarray:
    """Where each notebook's markdown cells start in the flat array of all markdown cells."""
    _, n_md = D.cell_counts(notebooks)
    return np.concatenate([[0], np.cumsum(n_md)]).astype(np.int64)


def pass_one(views: Sequence[F.View], prior: np.ndarray, offsets: np.ndarray, halves: np.ndarray, rate: float,
             seed: int, writers: list[ShardWriter], should_stop: Callable[[], bool], store: ViewStore | None = None) -> int:
    """Features of the sampled pairs of every notebook, into the shards of its half (and each
    View into `store`). Returns the number of wrong gaps kept."""
    negatives = 0
    with textlab.progress(len(views), "pair features (sampled)", unit="nb") as bar:
        for k, v in enumerate(views):
            if store is not None:
                store.add(v)
            m, j, y = sample_pairs(v, rate, np.random.default_rng([seed, k]))
            writers[halves[k]].add(F.pair_features(v, prior[offsets[k]:offsets[k + 1]], m, j), y)
            negatives += int((~y).sum())
            bar.advance(1)
            if should_stop():
                raise Stopped
    for w in writers:
        w.flush()
    return negatives


def pass_two(views: ViewStore, prior: np.ndarray, offsets: np.ndarray, halves: np.ndarray, scorers: list[Forest],
             rate: float, seed: int, writer: ShardWriter, should_stop: Callable[[], bool]) -> None:
    """Stage-2 rows: every pair of a notebook scored by the stage-1 half that did not see it
    (stage 2 reads where the others went), then a fresh sample of the wrong gaps."""
    with textlab.progress(len(halves), "stage-1 scores, stage-2 features", unit="nb") as bar:
        for k in range(len(halves)):
            v = views[k]
            X = F.pair_features(v, prior[offsets[k]:offsets[k + 1]])
            z = scorers[halves[k]].predict(X)
            m, j, y = sample_pairs(v, rate, np.random.default_rng([seed, k]))
            rows = m * (v.C + 1) + j
            writer.add(np.hstack([X[rows], F.stage2_features(v, z, m, j)]), y)
            bar.advance(1)
            if should_stop():
                raise Stopped
    writer.flush()


# ============================================================================ text models and prior
def ranker_text(train: Sequence, seed: int, char_features: int) -> F.TextModels:
    """The ranker's text models: identifier TF-IDF and hashed character n-grams, from the cells of
    at most WORD_CELLS cells' notebooks (all of them below that)."""
    from .train import fit_tfidf

    n_code, n_md = D.cell_counts(train)
    idx = sample_notebooks([c + m for c, m in zip(n_code, n_md)], WORD_CELLS, seed)
    cells = [s for nb in D.take(train, idx) for s in nb.sources]
    words = fit_tfidf(lambda: (F.ident_tokens(s) for s in cells), 2, 0.5)
    sample = random.Random(seed).sample(cells, min(len(cells), CHAR_CELLS))  # idf needs no more
    return F.TextModels(words, F.HashedTfidf.fit(sample, char_features))


def ranker_prior(train: Sequence, seed: int) -> tuple[Any, np.ndarray]:
    """(the text-only prior, its out-of-fold guess for every training markdown cell). Fitted on
    the markdown of at most PRIOR_CELLS cells' notebooks; with 5 folds by ancestor, each cell is
    guessed by a ridge fitted without its fold."""
    from .train import csr, fit_prior

    folds = group_folds(train, PRIOR_FOLDS, seed)
    _, n_md = D.cell_counts(train)
    idx = sample_notebooks(n_md, PRIOR_CELLS, seed)
    fit_set = D.take(train, idx)
    prior, oof_fit, ridges = fit_prior(fit_set, oof_folds=PRIOR_FOLDS, folds=folds[idx])
    if len(idx) == len(train):
        return prior, oof_fit
    offsets, fit_offsets = markdown_offsets(train), markdown_offsets(fit_set)
    where = {k: n for n, k in enumerate(idx)}
    oof, tf = np.zeros(offsets[-1]), prior.tfidf()
    with textlab.progress(len(train), "prior, out of fold", unit="nb") as bar:
        for k in range(len(train)):
            if k in where:
                n = where[k]
                oof[offsets[k]:offsets[k + 1]] = oof_fit[fit_offsets[n]:fit_offsets[n + 1]]
            elif ridges[folds[k]] is not None:
                nb = train[k]
                rows = [tf.row(F.word_ngrams(nb.sources[i])) for i in nb.markdown]
                oof[offsets[k]:offsets[k + 1]] = ridges[folds[k]].predict(csr(rows, len(tf.vocab)))
            bar.advance(1)
    return prior, oof


# ============================================================================ the fit
class _Views(abc.Sequence):
    """The View of each training notebook, made when used (pass 1)."""

    def __init__(self, train: Sequence, text: F.TextModels):
        self.train, self.text = train, text

    def __len__(self) -> int:
        return len(self.train)

    def __getitem__(self, k):
        return F.View(self.train[k], self.text)


def fit_stages(train: Sequence, text: F.TextModels, prior: np.ndarray, config: RankerConfig, seed: int,
               folder: Path, should_stop: Callable[[], bool], laps: Laps,
               log: Callable[[str], None]) -> tuple[Forest, Forest | None]:
    """(stage-1 forest, stage-2 forest or None); raises Stopped."""
    two = config.stages >= 2
    halves = group_folds(train, 2, seed + 1) if two else np.zeros(len(train), dtype=np.int64)
    offsets, rate = markdown_offsets(train), config.negatives
    store = ViewStore(folder / "views.f32")
    writers = [ShardWriter(folder, "s1-half1"), ShardWriter(folder, "s1-half2")]
    try:
        if pass_one(_Views(train, text), prior, offsets, halves, rate, seed, writers, should_stop, store) == 0 or \
                any(w.paths and (w.label_array() == 1).all() for w in writers):
            rate = 1.0  # tiny data: the sample drew no wrong gap (in a half): keep them all
            writers = [ShardWriter(folder, "s1-all-half1"), ShardWriter(folder, "s1-all-half2")]
            pass_one(store, prior, offsets, halves, rate, seed, writers, should_stop)
        laps.lap("features")
        laps.disk(folder)
        laps.times["stage1_rows"] = sum(len(w.label_array()) for w in writers)
        log(f"{sum(len(w.label_array()) for w in writers):,} sampled (markdown, gap) pairs x {len(F.PAIR_FEATURES)} "
            f"features from {len(train)} notebooks (shards in {folder})")
        if not two:
            return fit_booster(writers[0].paths + writers[1].paths, np.concatenate([w.label_array() for w in writers]),
                               config, seed=seed, desc="stage 1", should_stop=should_stop), None
        scorers = []
        for f in (0, 1):  # the trees of half f score the notebooks of half f: fitted on the other half
            other = writers[1 - f]
            scorers.append(fit_booster(other.paths, other.label_array(), config, seed=seed + f,
                                       desc=f"stage 1, half {f + 1}/2", should_stop=should_stop))
            release_memory()  # the half's binned rows
        for w in writers:
            w.remove()
        laps.lap("stage1")
        second = ShardWriter(folder, "s2")
        pass_two(store, prior, offsets, halves, scorers, rate, seed + 7, second, should_stop)
        laps.lap("features2")
        laps.disk(folder)
        laps.times["stage2_rows"] = len(second.label_array())
        stage2 = fit_booster(second.paths, second.label_array(), config, seed=seed + 7, desc="stage 2",
                             should_stop=should_stop)
        laps.lap("stage2")
        return Forest.average(scorers), stage2
    finally:
        store.close()


def fit_ranker(train: Sequence, config: RankerConfig, *, seed: int = 0,
               should_stop: Callable[[], bool] = lambda: False, log: Callable[[str], None] = textlab.status):
    """The two-stage gap ranker. Returns (model, vocab, timings); (None, None, timings) when
    `should_stop()` said to stop (Ctrl-C): nothing half-fitted is kept."""
    from .model import Ranker
    from .train import _tensor, usable

    laps = Laps()
    train = usable(train)
    if config.stages >= 2 and len(set(D.ancestors(train))) < 2:
        log("one ancestor group: stage 2 needs two to score each half out of fold; fitting one stage")
        config.stages = 1
    text = ranker_text(train, seed, config.char_features)
    laps.lap("text")
    prior, oof = ranker_prior(train, seed)
    laps.lap("prior")
    log(f"text models: {len(text.words.vocab):,} identifier terms, {len(prior.ngrams):,} markdown n-grams")
    folder = Path(tempfile.mkdtemp(prefix="textlab-ai4code-"))
    try:
        stage1, stage2 = fit_stages(train, text, oof, config, seed, folder, should_stop, laps, log)
    except Stopped:
        return None, None, laps.times
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    vocab = {"words": text.words.vocab, "ngrams": prior.ngrams}
    config.n_words, config.n_ngrams = len(text.words.vocab), len(prior.ngrams)
    model = Ranker(config, vocab)
    model.words_idf, model.chars_idf = _tensor(text.words.idf), _tensor(text.chars.idf)
    model.prior.load_state_dict(prior.state_dict())
    model.set_forest(1, stage1)
    if stage2 is not None:
        model.set_forest(2, stage2)
    else:
        config.stages = 1
    return model, vocab, laps.times
