"""Fitting each model. Plain functions: `fit_<model>(train, ...) -> model` (the non-neural ones),
`train_neural(run, ...)` (the shared loop), and `evaluate_orders` (the metrics on notebooks).

scikit-learn fits the ridge regressions and the boosted trees; what it fits is copied into
tensors (coefficients, tree arrays), so checkpoints hold no scikit-learn objects.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Sequence

import numpy as np

import textlab

from . import features as F
from . import metrics as Mx
from .config import NeuralConfig, PointwiseConfig, RankerConfig, SimilarConfig
from .data import Notebook


# ============================================================================ helpers
def evaluate_orders(notebooks: Sequence[Notebook], orders: Sequence[Sequence[str]]) -> tuple[dict, list[dict]]:
    """(metrics by notebook-length bucket, per-notebook stats)."""
    stats = [Mx.notebook_stats(nb.order, o, dict(zip(nb.cell_ids, nb.cell_types)), nb.id)
             for nb, o in zip(notebooks, orders)]
    return Mx.by_bucket(stats), stats


def _sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency of the plugin
        raise textlab.UsageError("training this model needs scikit-learn (pip install scikit-learn)") from None
    return sklearn


@contextmanager
def _threads():
    """scikit-learn's OpenMP threads follow torch's thread count (`--threads`)."""
    import torch

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=torch.get_num_threads()):
        yield


def group_folds(notebooks: Sequence[Notebook], k: int, seed: int) -> np.ndarray:
    """A fold number per notebook; an ancestor group never spans two folds."""
    groups = sorted({nb.ancestor or nb.id for nb in notebooks})
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % k for i, g in enumerate(groups)}
    return np.array([fold_of[nb.ancestor or nb.id] for nb in notebooks])


def csr(rows: Sequence[F.SparseRow], n_cols: int, dense: np.ndarray | None = None):
    import scipy.sparse as sp

    indptr = np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    m = sp.csr_matrix((data.astype(np.float64), indices, indptr), shape=(len(rows), n_cols))
    if dense is not None:
        m = sp.hstack([m, sp.csr_matrix(dense)], format="csr")
    return m


def _tensor(a: np.ndarray, dtype=None):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype or np.float32))


def usable(train: Sequence[Notebook]) -> list[Notebook]:
    """The training notebooks with both code and markdown cells (the others have nothing to place)."""
    kept = [nb for nb in train if nb.markdown and nb.code]
    if not kept:
        raise textlab.DataError(f"none of the {len(train)} training notebooks has both code and markdown cells: "
                                "nothing to learn the order from", hint="pass notebooks with markdown and code")
    return kept


def fit_tfidf(docs: Callable[[], Iterable[list[str]]], min_df: int, max_df: float, **kw) -> F.Tfidf:
    """TF-IDF over the documents `docs()` yields, with terms in at least `min_df` of them; on data so
    small that no term is, with every term (so that tiny data still has features)."""
    tf = F.Tfidf.fit(docs(), min_df=min_df, max_df=max_df, **kw)
    if not tf.vocab and min_df > 1:
        tf = F.Tfidf.fit(docs(), min_df=1, max_df=1.0, **kw)
    return tf


def markdown_targets(notebooks: Sequence[Notebook]) -> np.ndarray:
    """Relative position of every markdown cell: the share of code cells before it."""
    out = []
    for nb in notebooks:
        gaps, C = nb.gaps(), len(nb.code)
        out += [gaps[nb.cell_ids[i]] / max(C, 1) for i in nb.markdown]
    return np.array(out, dtype=np.float64)


def fit_words(train: Sequence[Notebook], min_df: int = 2, max_df: float = 0.5) -> F.Tfidf:
    return fit_tfidf(lambda: (F.ident_tokens(s) for nb in train for s in nb.sources), min_df, max_df)


# ============================================================================ baselines
def fit_similar(train: Sequence[Notebook], config: SimilarConfig):
    from .model import Similar

    tf = fit_words(train, config.min_df, config.max_df)
    config.n_words = len(tf.vocab)
    model = Similar(config, {"words": tf.vocab})
    model.idf = _tensor(tf.idf)
    return model, {"words": tf.vocab}


# ============================================================================ text-only prior
class _Mean:
    """What a ridge regression without features predicts: the mean target (data too small for n-grams)."""

    def __init__(self, y: np.ndarray):
        self.coef_, self.intercept_ = np.zeros(0), float(y.mean()) if len(y) else 0.5

    def predict(self, X) -> np.ndarray:
        return np.full(X.shape[0], self.intercept_)


def _ridge(X, y, alpha: float):
    from sklearn.linear_model import Ridge

    if X.shape[1] == 0:
        return _Mean(y)
    with _threads():
        return Ridge(alpha=alpha).fit(X, y)


def fit_prior(train: Sequence[Notebook], *, alpha: float = 3.0, max_ngrams: int = 100_000,
              extra: np.ndarray | None = None, oof_folds: int = 0, seed: int = 0):
    """Ridge on markdown word 1-2-gram TF-IDF (+ standardised dense `extra` columns) -> relative position.

    Returns (Prior module, out-of-fold predictions for the training markdown cells or None).
    """
    from .model import Prior

    _sklearn()
    texts = [nb.sources[i] for nb in train for i in nb.markdown]
    y = markdown_targets(train)
    grams = [F.word_ngrams(t) for t in texts]
    tf = fit_tfidf(lambda: grams, 2, 1.0, max_features=max_ngrams)
    rows = [tf.row(g) for g in grams]
    mean = scale = None
    if extra is not None:
        mean, scale = extra.mean(0), extra.std(0) + 1e-6
        extra = (extra - mean) / scale
    X = csr(rows, len(tf.vocab), extra)
    ridge = _ridge(X, y, alpha)
    prior = Prior(tf.vocab, 0 if extra is None else extra.shape[1])
    prior.idf = _tensor(tf.idf)
    prior.coef = _tensor(ridge.coef_[: len(tf.vocab)])
    prior.bias = _tensor(np.array(ridge.intercept_))
    if extra is not None:
        prior.extra_coef = _tensor(ridge.coef_[len(tf.vocab):])
        prior.extra_mean, prior.extra_scale = _tensor(mean), _tensor(scale)
    oof = None
    if oof_folds > 1:
        nb_fold = group_folds(train, oof_folds, seed)
        fold = np.concatenate([[nb_fold[k]] * len(nb.markdown) for k, nb in enumerate(train)]).astype(int)
        oof = np.zeros(len(y))
        for f in range(oof_folds):
            if (fold == f).all() or not (fold == f).any():
                continue
            r = _ridge(X[fold != f], y[fold != f], alpha)
            oof[fold == f] = r.predict(X[fold == f])
    return prior, oof


def fit_pointwise(train: Sequence[Notebook], config: PointwiseConfig):
    from .model import Pointwise

    train = usable(train)
    tf = fit_words(train)
    config.n_words = len(tf.vocab)
    probe = Pointwise(config, {"words": tf.vocab})
    probe.idf = _tensor(tf.idf)
    extra = np.vstack([probe.extra_features(nb) for nb in train])
    prior, _ = fit_prior(train, alpha=config.alpha, max_ngrams=config.max_ngrams, extra=extra)
    config.n_ngrams, config.n_extra = len(prior.ngrams), extra.shape[1]
    vocab = {"words": tf.vocab, "ngrams": prior.ngrams}
    model = Pointwise(config, vocab)
    model.idf = probe.idf
    model.prior.load_state_dict(prior.state_dict())
    return model, vocab


# ============================================================================ the gap ranker
def fit_trees(X: np.ndarray, y: np.ndarray, config: RankerConfig, *, seed: int, desc: str,
              should_stop: Callable[[], bool] = lambda: False):
    """Boosted trees on (pair features, is-the-true-gap), with a progress bar; returns a Forest,
    or None when `should_stop()` said to stop before all the trees were fitted.

    Negatives are subsampled (`config.negatives`): a uniform subsample only shifts every logit
    by the same constant, which does not change a markdown cell's gap distribution.
    """
    _sklearn()
    from sklearn.ensemble import HistGradientBoostingClassifier

    from .trees import export

    rng = np.random.default_rng(seed)
    keep = (y == 1) | (rng.random(len(y)) < config.negatives)
    if not (y[keep] == 0).any():  # tiny data: the subsample drew no wrong gap at all
        keep[:] = True
    Xk, yk = X[keep], y[keep].astype(np.int8)
    clf = HistGradientBoostingClassifier(max_iter=0, learning_rate=config.learning_rate,
                                         max_leaf_nodes=config.leaves, min_samples_leaf=config.min_leaf,
                                         early_stopping=False, warm_start=True, random_state=seed)
    chunk = max(10, config.trees // 10)
    with _threads(), textlab.progress(config.trees, desc, unit="tree") as bar:
        done = 0
        while done < config.trees:
            if should_stop():
                return None  # a half-fitted forest is not what was asked for: keep nothing
            step = min(chunk, config.trees - done)
            clf.set_params(max_iter=done + step)
            clf.fit(Xk, yk)
            done += step
            bar.advance(step, rows=len(yk))
    return export(clf)


def notebook_rows(views: Sequence[F.View]) -> list[tuple[int, int]]:
    spans, k = [], 0
    for v in views:
        n = v.M * (v.C + 1)
        spans.append((k, k + n))
        k += n
    return spans


def fit_ranker(train: Sequence[Notebook], config: RankerConfig, *, seed: int = 0,
               should_stop: Callable[[], bool] = lambda: False, log: Callable[[str], None] = textlab.status):
    """The two-stage gap ranker. Returns (model, vocab, timings); (None, None, timings) when
    `should_stop()` said to stop (Ctrl-C): nothing half-fitted is kept."""
    from .model import Ranker
    from .trees import Forest

    _sklearn()
    times: dict[str, float] = {}
    t = time.perf_counter()
    train = usable(train)
    if config.stages >= 2 and len({nb.ancestor or nb.id for nb in train}) < 2:
        log("one ancestor group: stage 2 needs two to score each half out of fold; fitting one stage")
        config.stages = 1
    words = fit_words(train)
    cells = [s for nb in train for s in nb.sources]
    sample = random.Random(seed).sample(cells, min(len(cells), 30_000))  # idf needs no more
    chars = F.HashedTfidf.fit(sample, config.char_features)
    text = F.TextModels(words, chars)
    times["text"] = time.perf_counter() - t
    t = time.perf_counter()
    prior, oof = fit_prior(train, oof_folds=5, seed=seed)
    times["prior"] = time.perf_counter() - t
    log(f"text models: {len(words.vocab):,} identifier terms, {len(prior.ngrams):,} markdown n-grams")

    t = time.perf_counter()
    views, blocks, labels = [], [], []
    k = 0
    with textlab.progress(len(train), "pair features", unit="nb") as bar:
        for nb in train:
            v = F.View(nb, text)
            p = oof[k:k + v.M]
            k += v.M
            blocks.append(F.pair_features(v, p))
            labels.append((np.arange(v.C + 1)[None, :] == v.true_gaps()[:, None]).ravel())
            views.append(v)
            bar.advance(1)
            if should_stop():
                return None, None, times
    X, y = np.vstack(blocks), np.concatenate(labels)
    del blocks
    spans = notebook_rows(views)
    times["features"] = time.perf_counter() - t
    log(f"{len(y):,} (markdown, gap) pairs x {X.shape[1]} features from {len(train)} notebooks")

    t = time.perf_counter()
    stage1_oof = np.zeros(len(y))
    if config.stages >= 2:
        nb_fold = group_folds(train, 2, seed + 1)
        row_fold = np.concatenate([np.full(b - a, nb_fold[i]) for i, (a, b) in enumerate(spans)])
        forests = []
        for f in (0, 1):
            forest = fit_trees(X[row_fold != f], y[row_fold != f], config, seed=seed + f,
                               desc=f"stage 1, half {f + 1}/2", should_stop=should_stop)
            if forest is None:
                return None, None, times
            stage1_oof[row_fold == f] = forest.predict(X[row_fold == f], desc=f"stage 1, scores of half {2 - f}")
            forests.append(forest)
        stage1 = Forest.average(forests)
    else:
        stage1 = fit_trees(X, y, config, seed=seed, desc="stage 1", should_stop=should_stop)
        if stage1 is None:
            return None, None, times
    times["stage1"] = time.perf_counter() - t
    stage2 = None
    if config.stages >= 2:
        t = time.perf_counter()
        X2 = np.hstack([X, np.vstack([F.stage2_features(v, stage1_oof[a:b]) for v, (a, b) in zip(views, spans)])])
        del X
        stage2 = fit_trees(X2, y, config, seed=seed + 7, desc="stage 2", should_stop=should_stop)
        if stage2 is None:
            return None, None, times
        times["stage2"] = time.perf_counter() - t
    vocab = {"words": words.vocab, "ngrams": prior.ngrams}
    config.n_words, config.n_ngrams = len(words.vocab), len(prior.ngrams)
    model = Ranker(config, vocab)
    model.words_idf, model.chars_idf = _tensor(words.idf), _tensor(chars.idf)
    model.prior.load_state_dict(prior.state_dict())
    model.set_forest(1, stage1)
    if stage2 is not None:
        model.set_forest(2, stage2)
    else:
        config.stages = 1
    return model, vocab, times


# ============================================================================ the neural ranker
def train_neural(run: textlab.Run, train: Sequence[Notebook], valid: Sequence[Notebook], config: NeuralConfig, *,
                 hf_json: str | None, epochs: int, lr: float, batch_size: int, time_budget: float | None,
                 extra: dict) -> dict:
    """Train the neural ranker with the shared loop (batches depend only on (seed, epoch); sharded)."""
    import torch

    from .model import CellTokenizer, NeuralRanker, bucket_idf, encode_notebook

    vocab = {"hf_tokenizer": hf_json}
    net = NeuralRanker(config, vocab)
    tok = CellTokenizer(config, hf_json)
    train = usable(train)
    with textlab.progress(len(train) + len(valid), "tokenize", unit="nb") as bar:
        enc = []
        for nb in train:
            enc.append(encode_notebook(nb, tok))
            bar.advance(1)
        net._tok = tok
        bar.advance(len(valid))
    net.idf = bucket_idf(enc, config.buckets)

    def batches(epoch: int):
        g = torch.Generator().manual_seed(run.seed * 1000 + epoch)
        order = textlab.distributed.shard(torch.randperm(len(enc), generator=g).tolist())
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def step(model, batch):
        losses, n = [], 0
        for i in batch:
            e = enc[i]
            logits = model(e)
            losses.append(torch.nn.functional.cross_entropy(logits, e["gaps"], reduction="sum"))
            n += e["n_md"]
        loss = torch.stack(losses).sum() / max(n, 1)
        return {"loss": loss, "n": n, "units": n}

    def evaluate(model):
        if not valid:
            return {}
        metrics, _ = evaluate_orders(valid, model.order(valid, show=False))
        return {k: v for k, v in metrics["all"].items() if k not in ("notebooks", "cells")}

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    # warm-up, then 1/sqrt decay: the schedule does not depend on the planned length, so
    # `train --resume RUN --epochs N` continues exactly as a run planned for N epochs
    warm = max(1, min(100, len(enc) // batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, (warm / (s + 1)) ** 0.5))
    result = textlab.fit(run, net, opt, batches=batches, step=step, evaluate=evaluate if valid else None,
                         meta={"model": "neural", "config": config, "vocab": vocab, "extra": extra},
                         epochs=epochs, time_budget=time_budget, scheduler=sched, grad_clip=1.0,
                         monitor="valid/kendall_tau" if valid else "train/loss", unit="md")
    return {"steps": result.step, "best": result.best, "stopped": result.stopped, "train_time": result.train_time}
