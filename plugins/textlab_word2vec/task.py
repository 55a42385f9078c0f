"""The word2vec task: its verbs and hook implementations.

    textlab prep word2vec --data corpus.txt.gz        clean text (cached)
    textlab vocab word2vec --min-count 5               vocabulary + int32 ids (cached)
    textlab pairs word2vec --window 5 --sample 1e-3    (target, context) parquet shards (cached)
    textlab train word2vec --dim 100 --out word2vec.pt
    textlab neighbors word2vec.pt москва -k 10         textlab neighbors word2vec.pt king -- -man +woman
    textlab eval word2vec.pt --analogies questions-words.txt --similarity wordsim353.tsv
    textlab export word2vec.pt --format word2vec-binary

Light to import: torch, numpy and numba are imported inside the verbs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import textlab
from textlab import Argument, Option, UsageError

from . import data as D

DATA_HELP = ("A text file or folder (.txt, .gz), a table file (parquet/csv/jsonl, see --column), a Hugging Face "
             "dataset name, 'sample', or a folder written by an earlier step. Default: the corpus of the last step you ran.")


# ============================================================================ prep / vocab / pairs
def prep(
    *,
    data: Annotated[str, Option(help="A text file or folder (.txt, .gz), a table file (parquet/csv/jsonl: see "
                                     "--column), a Hugging Face dataset name (train split), or 'sample'.")],
    column: Annotated[str, Option(help="The text column of a table file or Hugging Face dataset.")] = "text",
    fold_yo: Annotated[bool, Option("--fold-yo/--keep-yo", help="Write ё as е (as most Russian corpora and test sets do).")] = False,
    out: Annotated[Optional[Path], Option(help="Write into this folder instead of the cache.")] = None,
    force: Annotated[bool, Option(help="Redo it even if the cache has it.")] = False,
) -> dict:
    """Clean a corpus: lowercase, drop punctuation and digits, collapse spaces (Unicode-aware)."""
    step, reused = D.prep(data, column=column, fold_yo=fold_yo, out=out, force=force)
    info = step.info
    _table(f"prep: {info['source']}", [
        ("lines", f"{info['lines']:,} (of {info['raw_lines']:,} read)"), ("tokens", f"{info['tokens']:,}"),
        ("ё", "folded to е" if fold_yo else "kept"), ("folder", str(step.dir)),
        ("", "reused from the cache" if reused else f"done in {info['seconds']} s"),
    ])
    return {"dir": str(step.dir), "reused": reused, **_public(info)}


def vocab(
    *,
    data: Annotated[Optional[str], Option(help=DATA_HELP)] = None,
    min_count: Annotated[Optional[int], Option(min=1, help="Keep words seen at least this often (default: 5).")] = None,
    max_vocab: Annotated[Optional[int], Option(min=1, help="Keep at most this many words (the most frequent).")] = None,
    max_sentence: Annotated[Optional[int], Option(min=2, help="Cut longer lines into pieces of this many words "
                                                              "(windows do not cross lines) (default: 10000).")] = None,
    out: Annotated[Optional[Path], Option(help="Write into this folder instead of the cache.")] = None,
    force: Annotated[bool, Option(help="Rebuild it even if it exists.")] = False,
) -> dict:
    """Build the vocabulary (json + counts) and write the corpus as int32 ids."""
    prepared = D.resolve_prep(data)
    given = {"min_count": min_count, "max_vocab": max_vocab, "max_sentence": max_sentence}
    found = None if (force or out) else D.find_step("vocab", prepared.fingerprint, D._given(given))
    if found is not None and D._vocab_files_ok(found):
        D.remember(found)
        step, reused = found, True
    else:
        step, reused = D.build_vocab(prepared, **D._opts("vocab", given), out=out, force=force)
    info = step.info
    words = textlab.Vocab.load(step.dir / "vocab.json")
    top = ", ".join(f"{w} {c:,}" for w, c in zip(words.itos[:8], words.counts[:8]))
    _table(f"vocab: {info['source']}", [
        ("words", f"{info['vocab_size']:,} (min count {info['options']['min_count']})"),
        ("tokens", f"{info['tokens']:,} of {info['raw_tokens']:,} ({100 * info['tokens'] / max(1, info['raw_tokens']):.1f}%)"),
        ("sentences", f"{info['sentences']:,}"), ("most frequent", top), ("folder", str(step.dir)),
        ("", "reused" if reused else f"done in {info['seconds']} s"),
    ])
    return {"dir": str(step.dir), "reused": reused, **_public(info)}


def pairs(
    *,
    data: Annotated[Optional[str], Option(help=DATA_HELP)] = None,
    window: Annotated[Optional[int], Option(min=1, help="Largest distance between target and context (default: 5); "
                                                        "each target draws its own, from 1 to this (word2vec).")] = None,
    sample: Annotated[Optional[float], Option(help="Frequent-word subsampling threshold; 0 = off (default: 1e-3).")] = None,
    pair_seed: Annotated[Optional[int], Option(help="Seed of the subsampling and window draws (default: 1).")] = None,
    shard_size: Annotated[Optional[int], Option(min=1000, help="Pairs per parquet shard (default: 10000000).")] = None,
    min_count: Annotated[Optional[int], Option(min=1, help="Vocabulary to use (see 'vocab').")] = None,
    out: Annotated[Optional[Path], Option(help="Write into this folder instead of the cache.")] = None,
    force: Annotated[bool, Option(help="Rebuild them even if they exist.")] = False,
) -> dict:
    """Write (target, context) int32 skip-gram pairs to parquet shards."""
    if sample is not None or window is not None:
        D.check_window_sample(window or 5, 1e-3 if sample is None else sample)
    vocab_step = D.resolve_vocab(data, min_count=min_count)
    given = {"window": window, "sample": sample, "seed": pair_seed, "shard_size": shard_size}
    found = None if (force or out) else D.find_step("pairs", vocab_step.fingerprint, D._given(given))
    if found is not None and all((found.dir / s).exists() for s in found.info["shards"]):
        D.remember(found)
        step, reused = found, True
    else:
        step, reused = D.build_pairs(vocab_step, **D._opts("pairs", given), out=out, force=force)
    info = step.info
    o = info["options"]
    _table(f"pairs: {info['source']}", [
        ("pairs", f"{info['pairs']:,} ({info['pairs'] / max(1, info['kept_words']):.2f} per kept word)"),
        ("words kept", f"{info['kept_words']:,} of {info['words']:,} (subsampling {o['sample']:g})"),
        ("shards", f"{len(info['shards'])} x up to {o['shard_size']:,} pairs, {info['bytes'] / 1e6:,.1f} MB"),
        ("window", f"{o['window']} (shrunk at random per target)"), ("folder", str(step.dir)),
        ("", "reused" if reused else f"done in {info['seconds']} s"),
    ])
    return {"dir": str(step.dir), "reused": reused, **_public(info)}


# ============================================================================ train
def train(
    run: textlab.Run,
    *,
    data: Annotated[Optional[str], Option(help=DATA_HELP)] = None,
    min_count: Annotated[Optional[int], Option(min=1, help="Vocabulary: words seen at least this often (default: 5).")] = None,
    dim: Annotated[int, Option(min=1, help="Vector size.")] = 100,
    negative: Annotated[int, Option(min=1, help="Negative samples per target.")] = 5,
    window: Annotated[Optional[int], Option(min=1, help="Context window (default: that of your last 'pairs', else 5).")] = None,
    sample: Annotated[Optional[float], Option(help="Subsampling threshold (default: that of your last 'pairs', else 1e-3).")] = None,
    epochs: Annotated[int, Option(min=1, help="Passes over the corpus.")] = 1,
    lr: Annotated[float, Option(min=0.0, help="Start learning rate (decays linearly to --min-lr).")] = 0.025,
    min_lr: Annotated[float, Option(min=0.0, help="Learning rate at the end.")] = 0.0001,
    pairs: Annotated[Literal["fly", "shards"], Option(help="fly: make pairs from the ids while training (fresh draws "
                                                           "each epoch); shards: read the pair shards of 'pairs'.")] = "fly",
    backend: Annotated[Literal["auto", "numba", "torch"], Option(help="numba: compiled CPU kernels; torch: batched "
                                                                      "steps (GPU); auto: numba on CPU, torch on GPU.")] = "auto",
    negatives: Annotated[Literal["shared", "per-pair"], Option(help="shared: one draw of negatives per target word's "
                                                                   "window (faster with numba: fewer rows read); per-pair: "
                                                                   "word2vec.c's loop. Both backends.")] = "shared",
    batch: Annotated[int, Option(min=1, help="Pairs per step of the torch backend.")] = 4096,
    save_every: Annotated[float, Option(min=0.0, help="Seconds between last.pt checkpoints (0: only at the end).")] = 600.0,
    time_budget: Annotated[float, Option(min=0.0, help="Stop after this many seconds of training, saving last.pt "
                                                       "(0: no limit); --resume continues.")] = 0.0,
    out: Annotated[Optional[Path], Option(help="Also write the final checkpoint to this file, e.g. word2vec.pt.")] = None,
) -> dict:
    """Train skip-gram with negative sampling (SGNS) word vectors."""
    import torch

    from .train import Trainer, TrainOptions, checkpoint_meta, save_final

    if textlab.distributed.world_size() > 1:
        # Hogwild SGD shares one weight matrix between threads; DDP would train a full copy per process
        raise UsageError("word2vec trains in one process with several threads (--threads N), not under "
                         "torchrun/--nproc")
    if out is not None and Path(out).is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as word2vec.pt")
    if min_lr > lr:
        raise UsageError(f"--min-lr {min_lr} is above --lr {lr}")
    device = run.device
    if backend == "auto":
        backend = "torch" if device.type != "cpu" else "numba"
    if backend == "numba" and device.type != "cpu":
        raise UsageError(f"the numba backend runs on the CPU, not {device}", hint="use --backend torch or --device cpu")
    ckpt = run.load_checkpoint("last") if run.resumed else None
    stored = _stored_corpus(ckpt, pairs, min_count) if ckpt is not None and data is None else None
    if ckpt is not None:  # the run's own window and subsampling, not those of a later 'pairs'
        trained = (ckpt.get("extra") or {}).get("train") or {}
        window = window if window is not None else trained.get("window")
        sample = sample if sample is not None else trained.get("sample")
    if stored is not None:
        vocab_step, pair_step = stored
        if pair_step is not None:
            window, sample = pair_step.options["window"], pair_step.options["sample"]
        D.check_window_sample(window, sample)
    elif pairs == "shards":
        pair_step = D.resolve_pairs(data, window=window, sample=sample, min_count=min_count)
        vocab_step = D.parent_step("vocab", pair_step)
        if vocab_step is None:
            raise textlab.DataError(f"the vocabulary the pair shards in {pair_step.dir} were made from is gone",
                                    hint="run 'textlab vocab word2vec' and 'textlab pairs word2vec' again")
        window, sample = pair_step.options["window"], pair_step.options["sample"]
    else:
        pair_step = None
        vocab_step = D.resolve_vocab(data, min_count=min_count)
        if window is None or sample is None:
            last = D.find_step("pairs", vocab_step.fingerprint, {})
            window = window if window is not None else (last.options["window"] if last else 5)
            sample = sample if sample is not None else (last.options["sample"] if last else 1e-3)
        D.check_window_sample(window, sample)
    corpus = D.open_corpus(vocab_step)
    opts = TrainOptions(dim=dim, negative=negative, window=window, sample=sample, epochs=epochs, lr=lr, min_lr=min_lr,
                        pairs=pairs, backend=backend, shared_negatives=negatives == "shared", batch=batch,
                        workers=torch.get_num_threads(), save_every=save_every, time_budget=time_budget)
    vi = vocab_step.info
    meta = checkpoint_meta(corpus, vocab_step, pair_step, opts)
    trainer = Trainer(run, corpus, opts, pair_step)
    if ckpt is not None:
        trainer.load(ckpt, vocab_step.fingerprint)
        if trainer.state.get("finished") and trainer.state["epoch"] >= epochs:
            textlab.status(f"run {run.dir} has already trained {epochs} epoch(s): nothing to do "
                           "(pass --epochs N to train further)")
        elif time_budget and trainer.state.get("seconds", 0.0) >= time_budget:
            raise UsageError(f"the run has spent its --time-budget of {time_budget:g} s "
                             f"({trainer.state['seconds']:.1f} s of training)",
                             hint="resume with --time-budget 0 for no limit, or a larger budget: it counts the whole run's training")
    textlab.status(f"corpus {vi.get('source')}: {len(corpus.itos):,} words, {corpus.tokens:,} tokens; window {window}, "
                   f"sample {sample:g}, {negative} negatives ({negatives}), pairs {'on the fly' if pairs == 'fly' else 'from shards'}, "
                   f"{backend} on {opts.workers if backend == 'numba' else 1} thread(s)" + (f" ({device})" if backend == "torch" else ""))
    summary = trainer.fit(meta)
    result = {"summary": summary, "vocab_size": len(corpus.itos), "dim": dim, "checkpoint": str(run.checkpoint_path("last"))}
    if summary["stopped"] == "done":
        run.set_best("train/loss", summary["loss"], trainer.state["work"])
        result["checkpoint"] = str(run.checkpoint_path("best"))
        if out is not None:
            result["out"] = str(save_final(Path(out), trainer, meta))
    run.update(throughput={k: summary[k] for k in ("raw_words_per_s", "words_per_s", "effective_words_per_s", "pairs_per_s")})
    _table("train", [
        ("stopped", summary["stopped"]), ("time", f"{summary['seconds']:.1f} s (+{summary['compile_seconds']:.1f} s to load the kernels)"),
        ("raw words/s", f"{summary['raw_words_per_s']:,} (corpus tokens, as gensim's 'raw words')"),
        ("effective words/s", f"{summary['effective_words_per_s']:,} (after subsampling)" if summary["effective_words_per_s"] is not None else "-"),
        ("pairs/s", f"{summary['pairs_per_s']:,} ({summary['pairs']:,} pairs)"), ("loss", f"{summary['loss']:.4f}"),
        ("checkpoint", result["checkpoint"] + (f", {result['out']}" if result.get("out") else "")),
    ])
    return result


def _stored_corpus(ckpt: dict, pairs: str, min_count: int | None) -> tuple[D.Step, D.Step | None]:
    """A resume without --data: the vocabulary (and pair shards) the run was trained on, as its
    last.pt records them, not the corpus of the last step run since."""
    corpus = (ckpt.get("extra") or {}).get("corpus") or {}
    key = corpus.get("vocab_fingerprint")
    pair_step = None
    if pairs == "shards":
        pair_step = D.stored_step("pairs", corpus.get("pairs_dir"), corpus.get("pairs_fingerprint"), parent=key)
        if pair_step is None:
            raise textlab.DataError(f"the pair shards this run was trained on ({corpus.get('pairs_dir')}) are gone",
                                    hint="resume with --data naming its corpus (or that folder)")
    vocab_step = D.stored_step("vocab", corpus.get("vocab_dir"), key)
    if vocab_step is None or not D._vocab_files_ok(vocab_step):
        raise textlab.DataError(f"the vocabulary this run was trained on ({corpus.get('vocab_dir')}) is gone",
                                hint=f"resume with --data naming its corpus ({corpus.get('source')})")
    if min_count is not None and vocab_step.options.get("min_count") != min_count:
        raise UsageError(f"--min-count {min_count}: the run was trained with min count "
                         f"{vocab_step.options.get('min_count')}; a resume keeps its vocabulary")
    return vocab_step, pair_step


# ============================================================================ using the vectors
def neighbors(
    artifact: textlab.Artifact,
    words: Annotated[list[str], Argument(help="A word (or several: one table each), or an analogy: "
                                              "king -- -man +woman ('--' lets words start with '-').")],
    *,
    top: Annotated[int, Option("-k", "--top", min=1, help="How many neighbours.")] = 10,
    restrict: Annotated[Optional[int], Option(min=1, help="Search only the N most frequent words.")] = None,
) -> dict:
    """Nearest words by cosine; analogies with + and -."""
    from rich.table import Table

    from .evaluate import Vectors, nearest, parse_queries

    vec = Vectors.from_artifact(artifact)
    pool = f"{len(vec):,} words" if not restrict or restrict >= len(vec) else f"the {restrict:,} most frequent of {len(vec):,}"
    results = []
    for positive, negative in parse_queries(words):
        found = nearest(vec, positive, negative, top, restrict)
        label = " ".join(positive[:1] + [f"+{w}" for w in positive[1:]] + [f"-{w}" for w in negative])
        title = f"neighbours of {label} (cosine; among {pool})"
        table = Table(title=title, min_width=len(title) + 2)
        for col, just in (("#", "right"), ("word", "left"), ("cosine", "right"), ("count", "right")):
            table.add_column(col, justify=just)
        for i, (w, cos, count) in enumerate(found, 1):
            table.add_row(str(i), w, f"{cos:.3f}", f"{count:,}")
        textlab.show(table)
        results.append({"query": label, "positive": positive, "negative": negative,
                        "neighbors": [{"word": w, "cosine": round(c, 4), "count": n} for w, c, n in found]})
    return results[0] if len(results) == 1 else {"queries": results}


def evaluate(
    artifact: textlab.Artifact,
    *,
    analogies: Annotated[Optional[Path], Option(help="Analogy questions (questions-words.txt format).")] = None,
    similarity: Annotated[Optional[list[Path]], Option(help="Word pairs with human scores: 'word1 word2 score' "
                                                             "lines (repeatable).")] = None,
    restrict: Annotated[int, Option(min=1, help="Analogies: only questions within the N most frequent words, "
                                                "answers searched among them (gensim's restrict_vocab).")] = 30_000,
) -> dict:
    """Analogy accuracy and word-pair similarity (Spearman), as gensim computes them."""
    from rich.table import Table

    from . import evaluate as E

    if analogies is None and not similarity:
        raise UsageError("nothing to evaluate", hint="pass --analogies FILE and/or --similarity FILE")
    for path in [analogies, *(similarity or [])]:
        if path is not None and not Path(path).is_file():
            raise textlab.DataError(f"no such file: {path}")
    vec = E.Vectors.from_artifact(artifact)
    result: dict = {"checkpoint": str(artifact.path), "words": len(vec)}
    if analogies is not None:
        a = E.analogies(vec, analogies, restrict)
        result["analogies"] = a
        t = Table(title=f"analogies: {Path(analogies).name} (top {restrict:,} words; {a['evaluated']:,} of "
                        f"{a['questions']:,} questions in vocabulary)")
        for col in ("section", "correct", "total", "accuracy"):
            t.add_column(col, justify="left" if col == "section" else "right")
        for s in a["sections"]:
            t.add_row(s["section"], f"{s['correct']:,}", f"{s['total']:,}", _pct(s["accuracy"]))
        for name in ("semantic", "syntactic", "accuracy"):
            t.add_row(f"[bold]{'total' if name == 'accuracy' else name}[/bold]", "", "", f"[bold]{_pct(a[name])}[/bold]")
        textlab.show(t)
    if similarity:
        result["similarity"] = [E.similarity(vec, p) for p in similarity]
        t = Table(title="word-pair similarity (cosine vs human scores)")
        for col in ("file", "spearman", "pearson", "pairs", "oov"):
            t.add_column(col, justify="left" if col == "file" else "right")
        for s in result["similarity"]:
            t.add_row(Path(s["file"]).name, _num(s["spearman"]), _num(s["pearson"]), f"{s['pairs']:,}", f"{s['oov_pct']:.1f}%")
        textlab.show(t)
    out = artifact.output_dir("eval") / "word2vec-eval.json"
    textlab.write_json(out, result)
    textlab.status(f"written: {out}")
    return result


def export(
    artifact: textlab.Artifact,
    *,
    fmt: Annotated[Literal["word2vec-text", "word2vec-binary"], Option("--format", help="word2vec text or binary format.")] = "word2vec-text",
    output: Annotated[Optional[Path], Option("--output", "-o", help="File to write (default: beside the checkpoint, "
                                                                    ".txt or .bin; in a run: outputs/vectors.*).")] = None,
    limit: Annotated[Optional[int], Option(min=1, help="Only the N most frequent words.")] = None,
) -> dict:
    """Write the vectors in word2vec format (gensim, fastText, spaCy... read it)."""
    from .evaluate import Vectors, export as write

    vec = Vectors.from_artifact(artifact)
    suffix = ".bin" if fmt == "word2vec-binary" else ".txt"
    if output is None:
        output = (artifact.run_dir / "outputs" / f"vectors{suffix}") if artifact.run_dir else artifact.path.with_suffix(suffix)
    if Path(output).is_dir():
        raise UsageError(f"--output {output} is a folder; give a file name")
    result = write(vec, output, fmt, limit)
    _table("export", [("file", result["path"]), ("format", fmt), ("words", f"{result['words']:,} x {result['dim']}"),
                      ("size", f"{result['bytes'] / 1e6:,.1f} MB")])
    return result


# ============================================================================ helpers
def _table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    if not textlab.distributed.is_main():  # under torchrun, one table (rank 0's)
        return

    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    textlab.show(t)


def _public(info: dict) -> dict:
    return {k: v for k, v in info.items() if k not in ("step", "version")}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


# ============================================================================ hooks
@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name="word2vec",
        help="word2vec: skip-gram with negative sampling, from raw corpus to neighbours (fast on a CPU).",
        verbs={"prep": prep, "vocab": vocab, "pairs": pairs, "train": train, "neighbors": neighbors,
               "eval": evaluate, "export": export},
        run_label=lambda o: f"sgns-{o.get('dim', 100)}d",
        monitor="train/loss",
    )]


@textlab.hookimpl
def textlab_models():
    from .model import SGNSConfig, build_sgns

    return [textlab.ModelSpec(task="word2vec", name="sgns", config=SGNSConfig, build=build_sgns,
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
