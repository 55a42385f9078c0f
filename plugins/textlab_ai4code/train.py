"""Training each model on the core engine. `train_model(run, opts)` reads the split and hands the
model to `textlab.Engine`: the neural ranker trains step by step (`train_neural`), the others are
fitted in one go (`train_fitted`, the engine's fitted mode) by plain functions
`fit_<model>(train, config, ...) -> (model, vocab[, timings])`.

scikit-learn fits the ridge regressions, LightGBM the ranker's boosted trees (`rankfit.py`: the
fit at any size); what they fit is copied into tensors (coefficients, tree arrays), so
checkpoints hold no scikit-learn or LightGBM objects.
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
from .config import MONITOR, TASK, PointwiseConfig, SimilarConfig, TrainOptions
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


def csr(rows: Sequence[F.SparseRow], n_cols: int, dense: np.ndarray | None = None):
    import scipy.sparse as sp

    indptr = np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    m = sp.csr_matrix((data.astype(np.float64), indices, indptr), shape=(len(rows), n_cols))
    if dense is not None:
        m = sp.hstack([m, sp.csr_matrix(dense)], format="csr")
    return m


DF_CELLS = 60_000  # markdown cells whose n-grams choose the prior's vocabulary (the idf counts them all)


def ngram_tfidf(texts: Sequence[str], max_ngrams: int, seed: int = 0) -> F.Tfidf:
    """TF-IDF of markdown word 1-2-grams: the vocabulary (terms of two cells or more, the `max_ngrams`
    most frequent) from at most DF_CELLS cells, so that counting every distinct n-gram does not
    grow with the data; the idf of those terms over all the cells."""
    if len(texts) <= DF_CELLS:
        return fit_tfidf(lambda: (F.word_ngrams(t) for t in texts), 2, 1.0, max_features=max_ngrams)
    sample = random.Random(seed).sample(range(len(texts)), DF_CELLS)
    tf = fit_tfidf(lambda: (F.word_ngrams(texts[i]) for i in sample), 2, 1.0, max_features=max_ngrams)
    df, index = np.zeros(len(tf.vocab)), tf.index
    for t in texts:
        df[list({index[g] for g in F.word_ngrams(t) if g in index})] += 1
    return F.Tfidf(tf.vocab, np.log((1 + len(texts)) / (1 + df)) + 1)


def ngram_matrix(tf: F.Tfidf, texts: Sequence[str], dense: np.ndarray | None = None, chunk: int = 20_000):
    """CSR of the markdown cells' n-gram TF-IDF (+ `dense` columns), built in chunks of cells (the
    n-gram strings of all cells are never held at once)."""
    import scipy.sparse as sp

    parts = [csr([tf.row(F.word_ngrams(t)) for t in texts[lo:lo + chunk]], len(tf.vocab))
             for lo in range(0, len(texts), chunk)] or [sp.csr_matrix((0, len(tf.vocab)))]
    m = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
    if dense is not None:
        m = sp.hstack([m, sp.csr_matrix(dense)], format="csr")
    return m


def _tensor(a: np.ndarray, dtype=None):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype or np.float32))


def usable(train: Sequence[Notebook]) -> Sequence[Notebook]:
    """The training notebooks with both code and markdown cells (the others have nothing to place)."""
    n_code, n_md = D.cell_counts(train)
    kept = D.take(train, [i for i, (c, m) in enumerate(zip(n_code, n_md)) if c and m])
    if not len(kept):
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


def markdown_texts(notebooks: Sequence[Notebook]) -> tuple[list[str], np.ndarray]:
    """(text, relative position) of every markdown cell: the share of code cells before it. Reads each notebook once."""
    texts, out = [], []
    for nb in notebooks:
        gaps, C = nb.gaps(), len(nb.code)
        texts += [nb.sources[i] for i in nb.markdown]
        out += [gaps[nb.cell_ids[i]] / max(C, 1) for i in nb.markdown]
    return texts, np.array(out, dtype=np.float64)


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
              extra: np.ndarray | None = None, oof_folds: int = 0, folds: np.ndarray | None = None):
    """Ridge on markdown word 1-2-gram TF-IDF (+ standardised dense `extra` columns) -> relative position.

    Returns (Prior module, out-of-fold predictions for the training markdown cells or None, the
    ridge of each fold or None where a fold is empty or everything). `folds`: each notebook's fold
    (0 .. oof_folds - 1).
    """
    from .model import Prior

    _sklearn()
    texts, y = markdown_texts(train)
    tf = ngram_tfidf(texts, max_ngrams)
    mean = scale = None
    if extra is not None:
        mean, scale = extra.mean(0), extra.std(0) + 1e-6
        extra = (extra - mean) / scale
    X = ngram_matrix(tf, texts, extra)
    ridge = _ridge(X, y, alpha)
    prior = Prior(tf.vocab, 0 if extra is None else extra.shape[1])
    prior.idf = _tensor(tf.idf)
    prior.coef = _tensor(ridge.coef_[: len(tf.vocab)])
    prior.bias = _tensor(np.array(ridge.intercept_))
    if extra is not None:
        prior.extra_coef = _tensor(ridge.coef_[len(tf.vocab):])
        prior.extra_mean, prior.extra_scale = _tensor(mean), _tensor(scale)
    oof, ridges = None, []
    if oof_folds > 1 and folds is not None:
        fold = np.repeat(np.asarray(folds), D.cell_counts(train)[1]).astype(int)
        oof = np.zeros(len(y))
        for f in range(oof_folds):
            ridges.append(None)
            if (fold == f).all() or not (fold == f).any():
                continue
            ridges[f] = _ridge(X[fold != f], y[fold != f], alpha)
            oof[fold == f] = ridges[f].predict(X[fold == f])
    return prior, oof, ridges


def fit_pointwise(train: Sequence[Notebook], config: PointwiseConfig):
    from .model import Pointwise

    train = usable(train)
    tf = fit_words(train)
    config.n_words = len(tf.vocab)
    probe = Pointwise(config, {"words": tf.vocab})
    probe.idf = _tensor(tf.idf)
    extra = np.vstack([probe.extra_features(nb) for nb in train])
    prior, _, _ = fit_prior(train, alpha=config.alpha, max_ngrams=config.max_ngrams, extra=extra)
    config.n_ngrams, config.n_extra = len(prior.ngrams), extra.shape[1]
    vocab = {"words": tf.vocab, "ngrams": prior.ngrams}
    model = Pointwise(config, vocab)
    model.idf = probe.idf
    model.prior.load_state_dict(prior.state_dict())
    return model, vocab


# ============================================================================ training (on the engine)
def train_model(run: textlab.Run, opts: TrainOptions) -> dict:
    """Read the split (see `data.train_valid_split`), then train or fit `opts.model` into the run."""
    hf_json = encoder = None  # each fails in one line before any work
    if opts.model == "neural" and opts.tokenizer != "hash":
        from .hf import load_tokenizer_json

        hf_json = load_tokenizer_json(opts.tokenizer, allow_hub=opts.hub)
    if opts.model == "transformer":
        from .tformer import prepare_encoder

        encoder = prepare_encoder(run, opts)
    train, valid, how = D.train_valid_split(opts.data, opts.valid_share, opts.split_seed, opts.limit)
    if opts.model in ("pointwise", "ranker", "neural", "transformer"):
        usable(train)  # none with both code and markdown: one line before anything else
    textlab.status(f"{len(train)} training notebooks, {len(valid)} validation notebooks ({how})")
    extra = {"data": textlab.resolve(TASK, opts.data).reference(), "valid_share": opts.valid_share,
             "split_seed": opts.split_seed, "limit": opts.limit, "train_notebooks": len(train),
             "valid_notebooks": len(valid)}
    if opts.model == "neural":
        return train_neural(run, opts, train, valid, hf_json=hf_json, extra=extra)
    if opts.model == "transformer":
        from .tformer import train_transformer

        return train_transformer(run, opts, encoder, train, valid, extra)
    if opts.model == "blend":
        from .blend import train_blend

        return train_blend(run, opts, valid, extra)
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
        from .rankfit import fit_ranker

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
        named = {k if k.endswith(("_mb", "_rows")) else f"{k}_time": v for k, v in times.items()}  # seconds, MB, rows
        return textlab.Fitted(model, vocab, {"notebooks": len(train), **named})

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
