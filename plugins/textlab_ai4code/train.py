"""Training each model on the core engine. `train_model(run, opts)` reads the split and hands the
model to `textlab.Engine`: the neural ranker trains step by step (`train_neural`), the others are
fitted in one go (`train_fitted`, the engine's fitted mode) by plain functions
`fit_<model>(train, config, ...) -> (model, vocab[, timings])`.

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

from . import data as D
from . import features as F
from .config import MONITOR, TASK, PointwiseConfig, RankerConfig, SimilarConfig, TrainOptions
from .data import Notebook
from .evaluate import evaluate_orders, overall


# ============================================================================ helpers
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
    clf = HistGradientBoostingClassifier(max_iter=0, learning_rate=config.lr,
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


class _Laps:
    """Seconds of each phase of a fit (logged with the fit)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name], self._t = now - self._t, now


def ranker_text(train: Sequence[Notebook], seed: int, char_features: int) -> F.TextModels:
    """The ranker's text models: identifier TF-IDF and hashed character n-grams."""
    words = fit_words(train)
    cells = [s for nb in train for s in nb.sources]
    sample = random.Random(seed).sample(cells, min(len(cells), 30_000))  # idf needs no more
    return F.TextModels(words, F.HashedTfidf.fit(sample, char_features))


def pair_table(train: Sequence[Notebook], text: F.TextModels, oof: np.ndarray,
               should_stop: Callable[[], bool]):
    """(X, y, views): features of every (markdown, gap) pair and whether it is the true gap;
    None when `should_stop()` said to stop."""
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
                return None
    return np.vstack(blocks), np.concatenate(labels), views


def fit_stage1(X: np.ndarray, y: np.ndarray, train: Sequence[Notebook], spans: list[tuple[int, int]],
               config: RankerConfig, seed: int, should_stop: Callable[[], bool]):
    """(stage-1 forest, its out-of-fold scores of every pair) or None when stopped. With two
    stages, each half of the ancestor groups is scored by trees fitted on the other half."""
    from .trees import Forest

    stage1_oof = np.zeros(len(y))
    if config.stages < 2:
        stage1 = fit_trees(X, y, config, seed=seed, desc="stage 1", should_stop=should_stop)
        return None if stage1 is None else (stage1, stage1_oof)
    nb_fold = group_folds(train, 2, seed + 1)
    row_fold = np.concatenate([np.full(b - a, nb_fold[i]) for i, (a, b) in enumerate(spans)])
    forests = []
    for f in (0, 1):
        forest = fit_trees(X[row_fold != f], y[row_fold != f], config, seed=seed + f,
                           desc=f"stage 1, half {f + 1}/2", should_stop=should_stop)
        if forest is None:
            return None
        stage1_oof[row_fold == f] = forest.predict(X[row_fold == f], desc=f"stage 1, scores of half {2 - f}")
        forests.append(forest)
    return Forest.average(forests), stage1_oof


def fit_ranker(train: Sequence[Notebook], config: RankerConfig, *, seed: int = 0,
               should_stop: Callable[[], bool] = lambda: False, log: Callable[[str], None] = textlab.status):
    """The two-stage gap ranker. Returns (model, vocab, timings); (None, None, timings) when
    `should_stop()` said to stop (Ctrl-C): nothing half-fitted is kept."""
    from .model import Ranker

    _sklearn()
    laps = _Laps()
    train = usable(train)
    if config.stages >= 2 and len({nb.ancestor or nb.id for nb in train}) < 2:
        log("one ancestor group: stage 2 needs two to score each half out of fold; fitting one stage")
        config.stages = 1
    text = ranker_text(train, seed, config.char_features)
    laps.lap("text")
    prior, oof = fit_prior(train, oof_folds=5, seed=seed)  # + out-of-fold guesses for the training markdown
    laps.lap("prior")
    log(f"text models: {len(text.words.vocab):,} identifier terms, {len(prior.ngrams):,} markdown n-grams")
    table = pair_table(train, text, oof, should_stop)
    if table is None:
        return None, None, laps.times
    X, y, views = table
    spans = notebook_rows(views)
    laps.lap("features")
    log(f"{len(y):,} (markdown, gap) pairs x {X.shape[1]} features from {len(train)} notebooks")
    stage1 = fit_stage1(X, y, train, spans, config, seed, should_stop)
    if stage1 is None:
        return None, None, laps.times
    stage1, stage1_oof = stage1
    laps.lap("stage1")
    stage2 = None
    if config.stages >= 2:
        X2 = np.hstack([X, np.vstack([F.stage2_features(v, stage1_oof[a:b]) for v, (a, b) in zip(views, spans)])])
        del X
        stage2 = fit_trees(X2, y, config, seed=seed + 7, desc="stage 2", should_stop=should_stop)
        if stage2 is None:
            return None, None, laps.times
        laps.lap("stage2")
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


# ============================================================================ training (on the engine)
def train_model(run: textlab.Run, opts: TrainOptions) -> dict:
    """Read the split (see `data.train_valid_split`), then train or fit `opts.model` into the run."""
    hf_json = None
    if opts.model == "neural" and opts.tokenizer != "hash":
        from .hf import load_tokenizer_json

        hf_json = load_tokenizer_json(opts.tokenizer, allow_hub=opts.hub)  # fails in one line before any work
    train, valid, how = D.train_valid_split(opts.data, opts.valid_share, opts.split_seed, opts.limit)
    if opts.model in ("pointwise", "ranker", "neural"):
        usable(train)  # none with both code and markdown: one line before anything else
    textlab.status(f"{len(train)} training notebooks, {len(valid)} validation notebooks ({how})")
    extra = {"data": textlab.resolve(TASK, opts.data).reference(), "valid_share": opts.valid_share,
             "split_seed": opts.split_seed, "limit": opts.limit, "train_notebooks": len(train),
             "valid_notebooks": len(valid)}
    if opts.model == "neural":
        return train_neural(run, opts, train, valid, hf_json=hf_json, extra=extra)
    return train_fitted(run, opts, train, valid, extra)


def fit_model(name: str, train: Sequence[Notebook], config: Any, *, seed: int,
              should_stop: Callable[[], bool]) -> tuple[Any, Any, dict]:
    """(model, vocab, timings) of a model fitted in one go; (None, None, ...) when stopped."""
    if name == "appended":
        from .model import Appended

        return Appended(config), None, {}
    if name == "similar":
        return (*fit_similar(train, config), {})
    if name == "pointwise":
        return (*fit_pointwise(train, config), {})
    if name == "ranker":
        return fit_ranker(train, config, seed=seed, should_stop=should_stop)
    raise textlab.UsageError(f"model {name!r} has no training recipe in ai4code")


def train_fitted(run: textlab.Run, opts: TrainOptions, train: Sequence[Notebook], valid: Sequence[Notebook],
                 extra: dict) -> dict:
    """A model fitted in one go, on the engine's fitted mode: best.pt and last.pt, logs, and
    Ctrl-C during the fit keeps nothing half-fitted (last.pt says `fitted: False`; `train
    --resume RUN` fits again from the start; a resume of a fitted run has nothing to do)."""
    spec = textlab.registry().model(TASK, opts.model)
    config = textlab.make_config(spec.config, opts)
    seen: dict = {}

    def fit(should_stop: Callable[[], bool]):
        seen["fitted"] = True
        model, vocab, times = fit_model(opts.model, train, config, seed=run.seed, should_stop=should_stop)
        if model is None:
            return None
        return textlab.Fitted(model, vocab, {"notebooks": len(train), **{f"{k}_time": v for k, v in times.items()}})

    def evaluate(model) -> dict:
        t = time.perf_counter()
        metrics, _ = evaluate_orders(valid, model.order(valid, desc="validate"))
        seen["valid"], seen["predict_time"] = overall(metrics), time.perf_counter() - t
        return {**seen["valid"], "predict_time": seen["predict_time"]}

    result = textlab.Engine(run, fit=fit, evaluate=evaluate if valid else None, monitor=MONITOR,
                            meta={"model": opts.model, "config": config, "extra": extra}).fit()
    if not seen:  # a resume of a fitted run: the engine said there is nothing to do
        return {"resumed": True, "valid_kendall_tau": result.best}
    if result.stopped == "interrupted":
        return {"interrupted": True}
    out = {"fit_time": round(result.train_time, 2)}
    if "valid" in seen:
        textlab.status(f"{opts.model}: {MONITOR} = {result.best:.4f} on {len(valid)} validation notebooks "
                       f"(fitted in {result.train_time:.1f} s, validated in {seen['predict_time']:.1f} s)")
        return out | {"valid": seen["valid"], "predict_time": round(seen["predict_time"], 2)}
    textlab.status(f"{opts.model}: fitted in {result.train_time:.1f} s; no validation notebooks, so no score")
    return out


def train_neural(run: textlab.Run, opts: TrainOptions, train: Sequence[Notebook], valid: Sequence[Notebook], *,
                 hf_json: str | None, extra: dict) -> dict:
    """Train the neural ranker on the engine: batches depend only on (seed, epoch) and are sharded
    over processes; a warm-up then 1/sqrt(step) decay (`textlab.Schedule("rsqrt")`), which does not
    depend on the planned length, so `train --resume RUN --epochs N` continues exactly as a run
    planned for N epochs."""
    import torch

    from .model import CellTokenizer, bucket_idf, encode_notebook

    spec = textlab.registry().model(TASK, "neural")
    config = textlab.make_config(spec.config, opts, {"hf_vocab": 1 if hf_json else 0})
    vocab = {"hf_tokenizer": hf_json}
    net = spec.build(config, vocab)
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
    B = opts.batch_size

    def batches(epoch: int):
        g = torch.Generator().manual_seed(run.seed * 1000 + epoch)
        order = textlab.distributed.shard(torch.randperm(len(enc), generator=g).tolist())
        return [order[i:i + B] for i in range(0, len(order), B)]

    def step(model, batch):
        losses, n = [], 0
        for i in batch:
            e = enc[i]
            losses.append(torch.nn.functional.cross_entropy(model(e), e["gaps"], reduction="sum"))
            n += e["n_md"]
        return {"loss": torch.stack(losses).sum() / max(n, 1), "n": n, "units": n}

    def evaluate(model):
        metrics, _ = evaluate_orders(valid, model.order(valid, show=False))
        return overall(metrics)

    warmup = opts.warmup if opts.warmup is not None else max(1, min(100, len(enc) // B))
    result = textlab.Engine(
        run, net, torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=1e-4), batches=batches, step=step,
        evaluate=evaluate if valid else None, meta={"model": "neural", "config": config, "vocab": vocab, "extra": extra},
        epochs=opts.epochs, time_budget=opts.time_budget, schedule=textlab.Schedule("rsqrt", warmup=warmup),
        grad_clip=1.0, monitor=MONITOR if valid else "train/loss", unit="md", description="train neural").fit()
    run.update(warmup=warmup)
    return {"steps": result.step, "best": result.best, "stopped": result.stopped, "train_time": result.train_time,
            "valid_kendall_tau": result.best if valid else None}
