"""The agnews task: the command-line verbs (thin) and the hook implementations.

    textlab analyze agnews --data ag_news         classes, lengths, vocabulary coverage per threshold
    textlab vocab agnews --min-count 10           build and cache the vocabulary
    textlab train agnews --rnn lstm --epochs 7    train (rnn | gru | lstm, or --model bow)
    textlab eval runs/agnews/<run>                accuracy, per-class P/R/F1, confusion matrix

The verbs' options are dataclasses in config.py; the work is in data.py, train.py and evaluate.py.
Light to import: torch is imported inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path

import textlab

from . import __version__  # noqa: F401  (shown by `textlab plugins`)
from . import data as D
from .config import AnalyzeOptions, BowConfig, EvalOptions, PrepOptions, RNNConfig, TrainOptions, VocabOptions


# ============================================================================ train, eval
def train(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train a news-topic classifier (RNN / GRU / LSTM, or --model bow) on AG News."""
    from .train import train_model

    return train_model(run, opts)


def run_label(options: dict) -> str:
    """Run directories are named after the recurrent cell (`...-lstm`) or the model (`...-bow`)."""
    model = options.get("model") or "rnn"
    return str(options.get("rnn") or "gru") if model == "rnn" else str(model)


def evaluate(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix (table + PNG)."""
    from .evaluate import evaluate_artifact, show_report

    report = evaluate_artifact(artifact, opts)
    show_report(report)
    return report


# ============================================================================ vocab, prep, analyze
def vocab(opts: VocabOptions) -> dict:
    """Build the vocabulary (specials <pad> <unk> <bos> <eos>, then words by count) and cache it for train."""
    from rich.table import Table

    source = D.resolve(opts.data)
    prep = D.prepare(source, "train", tokenizer=opts.tokenizer)
    train_idx, valid_idx = D.split_valid(prep.labels, opts.valid_fraction)
    voc, path, cached = D.get_vocab(source, prep, train_idx, min_count=opts.min_count, valid_fraction=opts.valid_fraction,
                                    tokenizer=opts.tokenizer)
    cov = D.coverage(prep, train_idx, valid_idx, [opts.min_count])[0]
    top = voc.itos[len(D.SPECIALS):len(D.SPECIALS) + opts.show_top]
    t = Table(title=f"agnews vocabulary of {source.describe()} (min count {opts.min_count}, {opts.tokenizer} tokenizer)")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("entries (with 4 specials)", f"{len(voc):,}")
    t.add_row("distinct words in train part", f"{cov['distinct']:,}")
    t.add_row("train tokens covered", f"{cov['train_coverage']:.2%}")
    t.add_row("valid tokens covered", f"{cov['valid_coverage']:.2%}")
    t.add_row("most frequent", ", ".join(top))
    textlab.show(t)
    textlab.status(f"{'cached vocabulary reused' if cached else 'vocabulary cached'}: {path}")
    return {"size": len(voc), "min_count": opts.min_count, "tokenizer": opts.tokenizer, "path": str(path),
            "cached": cached, "specials": list(D.SPECIALS), "train_coverage": cov["train_coverage"],
            "valid_coverage": cov["valid_coverage"], "top": top}


def prep(opts: PrepOptions) -> dict:
    """Clean and tokenize the train and test splits once and cache them (train and eval reuse them)."""
    from rich.table import Table

    source = D.resolve(opts.data)
    text_out = opts.text_out
    if text_out is not None and text_out.is_dir():
        raise textlab.UsageError(f"--text-out {text_out} is a folder; give a file name, e.g. agnews-train.txt")
    t = Table(title=f"agnews data prepared from {source.describe()} ({opts.tokenizer} tokenizer)")
    for col in ("split", "rows", "tokens", "distinct words"):
        t.add_column(col, justify="left" if col == "split" else "right")
    out = {}
    for split in ("train",) if D.one_file(source) else ("train", "test"):  # one file: a train split only
        p = D.prepare(source, split, tokenizer=opts.tokenizer)
        out[split] = {"rows": len(p), "tokens": int(p.lengths.sum()), "distinct": len(p.words)}
        t.add_row(split, f"{len(p):,}", f"{out[split]['tokens']:,}", f"{len(p.words):,}")
        if split == "train" and text_out is not None:
            train_idx, _ = D.split_valid(p.labels, opts.valid_fraction)
            try:
                out["text_out"] = {"path": str(text_out), **D.write_text(p, train_idx, text_out)}
            except OSError as e:
                raise textlab.UsageError(f"--text-out {text_out}: cannot write it ({e.strerror or e})") from None
    textlab.show(t)
    if text_out is not None:
        textlab.status(f"wrote {out['text_out']['rows']:,} train rows ({out['text_out']['tokens']:,} tokens, valid part "
                       f"left out) to {text_out}")
    return out


def analyze(opts: AnalyzeOptions) -> dict:
    """Classes, text lengths and vocabulary coverage per min-count threshold of a dataset."""
    try:
        ths = sorted({int(x) for x in opts.thresholds.split(",") if x.strip()})
    except ValueError:
        raise textlab.UsageError(f"--thresholds {opts.thresholds!r} must be comma-separated integers, e.g. 1,5,25") from None
    if not ths or min(ths) < 1:
        raise textlab.UsageError("--thresholds must hold integers >= 1")
    result = D.describe(D.resolve(opts.data), ths, opts.valid_fraction, tokenizer=opts.tokenizer)
    D.show_analysis(result)
    if opts.out is not None:
        out = Path(opts.out)
        result["files"] = [str(p) for p in D.plot_analysis(result, out)]
        textlab.write_json(out / "analysis.json", result)
        textlab.status(f"wrote {', '.join(result['files'])} and {out / 'analysis.json'}")
    return result


# ============================================================================ hooks
def _build_rnn(config, vocab):
    from .model import build_rnn

    return build_rnn(config, vocab)


def _build_bow(config, vocab):
    from .model import build_bow

    return build_bow(config, vocab)


@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name="agnews",
        help="AG News topic classification (World, Sports, Business, Sci/Tech) with RNN/GRU/LSTM or bag of n-grams.",
        verbs={"prep": prep, "vocab": vocab, "train": train, "eval": evaluate, "analyze": analyze},
        run_label=run_label,
        monitor="valid/accuracy",
        quickstart="textlab train agnews --data sample",
    )]


@textlab.hookimpl
def textlab_models():
    return [
        textlab.ModelSpec(task="agnews", name="rnn", config=RNNConfig, build=_build_rnn,
                          help="embedding -> RNN/GRU/LSTM -> padding-aware max/mean/last pooling -> linear"),
        textlab.ModelSpec(task="agnews", name="bow", config=BowConfig, build=_build_bow,
                          help="fastText-style: mean of word and hashed bigram embeddings -> linear"),
    ]


@textlab.hookimpl
def textlab_datasets():
    return [
        textlab.DatasetSpec(task="agnews", name="ag_news", load=D.load_ag_news, splits=("train", "test"),
                            help="Hugging Face ag_news: 120,000 train and 7,600 test rows (needs the hub or its cache)"),
        textlab.DatasetSpec(task="agnews", name="sample", load=D.make_sample, splits=("train", "test"),
                            help="generated news-like sample: 1,600 train and 400 test rows, with the feed's escapes"),
    ]
