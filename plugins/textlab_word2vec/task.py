"""The word2vec task: its verbs and hook implementations.

    textlab prep word2vec --data corpus.txt.gz        clean text (cached)
    textlab vocab word2vec --min-count 5               vocabulary + int32 ids (cached)
    textlab pairs word2vec --window 5 --sample 1e-3    (target, context) parquet shards (cached)
    textlab train word2vec --dim 100 --out word2vec.pt
    textlab neighbors word2vec.pt москва -k 10         textlab neighbors word2vec.pt king -- -man +woman
    textlab eval word2vec.pt --analogies questions-words.txt --similarity wordsim353.tsv
    textlab export word2vec.pt --format word2vec-binary

The verbs' options are dataclasses in config.py; the verbs call plain functions of data.py,
train.py and evaluate.py. Light to import: torch, numpy and numba are imported inside them.
"""

from __future__ import annotations

import textlab

from . import data as D
from .config import (EvalOptions, ExportOptions, NeighborsOptions, PairsOptions, PrepOptions, SGNSConfig,
                     TrainOptions, VocabOptions)
from .report import kv_table, public

QUICKSTART = ("textlab prep word2vec --data sample && textlab vocab word2vec && "
              "textlab train word2vec --out word2vec.pt")


# ============================================================================ prep / vocab / pairs
def prep(opts: PrepOptions) -> dict:
    """Clean a corpus: lowercase, drop punctuation and digits, collapse spaces (Unicode-aware)."""
    step, reused = D.prep(opts.data, column=opts.column, fold_yo=opts.fold_yo, out=opts.out, force=opts.force)
    info = step.info
    kv_table(f"prep: {info['source']}", [
        ("lines", f"{info['lines']:,} (of {info['raw_lines']:,} read)"), ("tokens", f"{info['tokens']:,}"),
        ("ё", "folded to е" if opts.fold_yo else "kept"), ("folder", str(step.dir)),
        ("", "reused from the cache" if reused else f"done in {info['seconds']} s"),
    ])
    return {"dir": str(step.dir), "reused": reused, **public(info)}


def vocab(opts: VocabOptions) -> dict:
    """Build the vocabulary (json + counts) and write the corpus as int32 ids."""
    step, reused = D.vocab_step(opts)
    info = step.info
    words = textlab.Vocab.load(step.dir / "vocab.json")
    top = ", ".join(f"{w} {c:,}" for w, c in zip(words.itos[:8], words.counts[:8]))
    share = 100 * info["tokens"] / max(1, info["raw_tokens"])
    kv_table(f"vocab: {info['source']}", [
        ("words", f"{info['vocab_size']:,} (min count {info['options']['min_count']})"),
        ("tokens", f"{info['tokens']:,} of {info['raw_tokens']:,} ({share:.1f}%)"),
        ("sentences", f"{info['sentences']:,}"), ("most frequent", top), ("folder", str(step.dir)),
        ("", "reused" if reused else f"done in {info['seconds']} s"),
    ])
    return {"dir": str(step.dir), "reused": reused, **public(info)}


def pairs(opts: PairsOptions) -> dict:
    """Write (target, context) int32 skip-gram pairs to parquet shards."""
    step, reused = D.pairs_step(opts)
    info = step.info
    o = info["options"]
    kv_table(f"pairs: {info['source']}", [
        ("pairs", f"{info['pairs']:,} ({info['pairs'] / max(1, info['kept_words']):.2f} per kept word)"),
        ("words kept", f"{info['kept_words']:,} of {info['words']:,} (subsampling {o['sample']:g})"),
        ("shards", f"{len(info['shards'])} x up to {o['shard_size']:,} pairs, {info['bytes'] / 1e6:,.1f} MB"),
        ("window", f"{o['window']} (shrunk at random per target)"), ("folder", str(step.dir)),
        ("", "reused" if reused else f"done in {info['seconds']} s"),
    ])
    return {"dir": str(step.dir), "reused": reused, **public(info)}


# ============================================================================ train
def train(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train skip-gram with negative sampling (SGNS) word vectors."""
    from .train import train_sgns

    return train_sgns(run, opts)


# ============================================================================ using the vectors
def neighbors(artifact: textlab.Artifact, opts: NeighborsOptions) -> dict:
    """Nearest words by cosine; analogies with + and -."""
    from .evaluate import show_neighbors

    return show_neighbors(artifact, opts)


def evaluate(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Analogy accuracy and word-pair similarity (Spearman), as gensim computes them."""
    from .evaluate import evaluate_artifact

    return evaluate_artifact(artifact, opts)


def export(artifact: textlab.Artifact, opts: ExportOptions) -> dict:
    """Write the vectors in word2vec format (gensim, fastText, spaCy... read it)."""
    from .evaluate import export_artifact

    return export_artifact(artifact, opts)


# ============================================================================ hooks
def _build_sgns(config, vocab):
    from .model import build_sgns

    return build_sgns(config, vocab)


@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name="word2vec",
        help="word2vec: skip-gram with negative sampling, from raw corpus to neighbours (fast on a CPU).",
        verbs={"prep": prep, "vocab": vocab, "pairs": pairs, "train": train, "neighbors": neighbors,
               "eval": evaluate, "export": export},
        run_label=lambda o: f"sgns-{o.get('dim', 100)}d",
        monitor="train/loss",
        quickstart=QUICKSTART,
        own_loop=True,  # Hogwild threads on one shared matrix, not the core engine
    )]


@textlab.hookimpl
def textlab_models():
    return [textlab.ModelSpec(task="word2vec", name="sgns", config=SGNSConfig, build=_build_sgns,
                              help="skip-gram with negative sampling: in- and out-vectors")]


@textlab.hookimpl
def textlab_datasets():
    return [textlab.DatasetSpec(task="word2vec", name="sample", load=lambda split="train", **_: D.sample_lines(split),
                                help="generated Russian + English sentences with word groups (3,000 lines)",
                                splits=("train",))]


@textlab.hookimpl
def textlab_embedders():
    from .embed import train_vectors

    return [textlab.EmbedderSpec(name="word2vec", train=train_vectors,
                                 help="skip-gram vectors of a task's own text (min count 2, 5 epochs)")]


@textlab.hookimpl
def textlab_metrics():
    return [
        textlab.MetricSpec("words_per_s", True, help="corpus words trained per second", task="word2vec"),
        textlab.MetricSpec("effective_words_per_s", True, help="words after subsampling per second", task="word2vec"),
        textlab.MetricSpec("pairs_per_s", True, help="(target, context) pairs per second", task="word2vec"),
    ]
