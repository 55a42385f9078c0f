"""The agnews task: hook implementations and the command-line verbs.

    textlab analyze agnews --data ag_news         classes, lengths, vocabulary coverage per threshold
    textlab vocab agnews --min-count 10           build and cache the vocabulary
    textlab train agnews --rnn lstm --epochs 7    train (rnn | gru | lstm, or --model bow)
    textlab eval runs/agnews/<run>                accuracy, per-class P/R/F1, confusion matrix

Light to import: torch is imported inside the functions that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import textlab
from textlab import Option

from . import __version__  # noqa: F401  (shown by `textlab plugins`)
from . import data as D
from .model import BowConfig, RNNConfig, build_bow, build_rnn
from .train import PRETRAINED_EPOCHS, TRAIN_DEFAULTS

def _defaults(key: str) -> str:
    """`(default: rnn X, bow Y)` from the training settings table (one source of truth)."""
    return "(default: " + ", ".join(f"{m} {d[key]:g}" if isinstance(d[key], float) else f"{m} {d[key]}"
                                    for m, d in TRAIN_DEFAULTS.items()) + ")"


def _fraction(value: str | float) -> float:
    """--valid-fraction: a share strictly between 0 and 1 (both ends would leave a split empty)."""
    import typer

    try:
        x = float(value)
    except (TypeError, ValueError):
        raise typer.BadParameter(f"{value!r} is not a number") from None
    if not 0.0 < x < 1.0:
        raise typer.BadParameter(f"{value} is not in the range 0<x<1")
    return x


FRACTION = {"parser": _fraction, "metavar": "FLOAT"}
VALID_HELP = "Share of train held out (stratified, seeded)"

DATA_HELP = ("'ag_news' (Hugging Face, the default), a local folder with train/test files, one local file "
             "(parquet/csv/jsonl with text,label; or the classic CSV class,title,description), or 'sample'.")


# ============================================================================ train
def train(
    run: textlab.Run,
    *,
    data: Annotated[str, Option(help=DATA_HELP)] = "ag_news",
    model: Annotated[str, Option(help="Which registered model: rnn (with --rnn) or bow (fastText-style).")] = "rnn",
    rnn: Annotated[Literal["rnn", "gru", "lstm"], Option(help="Recurrent cell of the rnn model.")] = RNNConfig.rnn,
    layers: Annotated[Optional[int], Option(min=1, help=f"Recurrent layers (default: {RNNConfig.layers}).")] = None,
    hidden_dim: Annotated[Optional[int], Option(min=1, help=f"Hidden size per direction (default: {RNNConfig.hidden_dim}).")] = None,
    emb_dim: Annotated[Optional[int], Option(min=1, help=f"Embedding size (default: rnn {RNNConfig.emb_dim}, bow {BowConfig.emb_dim}; "
                                                         "with --init-embeddings: the file's).")] = None,
    bidirectional: Annotated[bool, Option(help="Read the text in both directions.")] = RNNConfig.bidirectional,
    aggregation: Annotated[Literal["max", "mean", "last"], Option(help="Pooling over the real (unpadded) tokens.")] = RNNConfig.aggregation,
    concat_last: Annotated[bool, Option(help="Concatenate the last state to the max/mean pooling.")] = RNNConfig.concat_last,
    dropout: Annotated[Optional[float], Option(min=0.0, max=0.95, help=f"Dropout (default: rnn {RNNConfig.dropout}, bow {BowConfig.dropout}).")] = None,
    ngram_dim: Annotated[Optional[int], Option(min=0, help=f"rnn: size of a bag-of-n-grams branch beside the recurrent features, 0: none (default: {RNNConfig.ngram_dim}).")] = None,
    buckets: Annotated[Optional[int], Option(min=1, help=f"hashed n-gram embeddings of bow and the rnn's n-gram branch (default: {BowConfig.buckets:,}).")] = None,
    ngrams: Annotated[Optional[int], Option(min=1, max=3, help=f"bow and the n-gram branch: 1 words, 2 + bigrams, 3 + trigrams (default: {BowConfig.ngrams}).")] = None,
    lr: Annotated[Optional[float], Option(min=0.0, help=f"Peak learning rate {_defaults('lr')}; linear decay to 0.")] = None,
    optimizer: Annotated[Optional[Literal["adam", "adagrad", "sgd"]], Option(help=f"Optimizer {_defaults('optimizer')}.")] = None,
    batch_size: Annotated[Optional[int], Option(min=1, help=f"Rows per step {_defaults('batch_size')}.")] = None,
    epochs: Annotated[Optional[int], Option(min=1, help=f"Passes over the train split {_defaults('epochs')[:-1]}; "
                                                        f"{PRETRAINED_EPOCHS} when the embeddings start from --pretrain vectors).")] = None,
    max_len: Annotated[Optional[int], Option(min=1, help=f"Tokens kept per text (its start) {_defaults('max_len')}.")] = None,
    min_count: Annotated[Optional[int], Option(min=1, help=f"Keep words seen at least this often in train {_defaults('min_count')}.")] = None,
    valid_fraction: Annotated[float, Option(**FRACTION, help=f"{VALID_HELP} to pick the best checkpoint. [0<x<1]")] = 0.05,
    init_embeddings: Annotated[Optional[Path], Option(help="Start the embedding layer from a word2vec text file (e.g. exported by the word2vec task).")] = None,
    pretrain: Annotated[str, Option(help="Start the embedding layer from vectors an embedder plugin first learns on the train part's "
                                         "text (valid rows left out): 'auto' (word2vec, if installed, for models whose embedding is a "
                                         "word table: rnn, not bow), an embedder's name, or 'none' (random start).")] = "auto",
    patience: Annotated[Optional[int], Option(min=1, help="Stop after this many half-epoch evals without a better valid accuracy.")] = None,
    max_steps: Annotated[Optional[int], Option(min=1, help="Stop after this many optimizer steps (the lr schedule still spans --epochs).")] = None,
    time_budget: Annotated[Optional[float], Option(min=1.0, help="Stop training after this many seconds (evaluates before stopping).")] = None,
    model_config: Annotated[Optional[list[str]], Option(help="KEY=VALUE setting of the model's config (repeatable), e.g. for a third-party model.")] = None,
) -> dict:
    """Train a news-topic classifier (RNN / GRU / LSTM, or --model bow) on AG News."""
    from .train import train_model

    if init_embeddings is not None and pretrain not in ("auto", "none"):
        raise textlab.UsageError(f"--init-embeddings and --pretrain {pretrain} both start the embeddings: give one")
    if init_embeddings is not None and emb_dim is None and not run.resumed:
        from .train import read_word2vec_dim

        emb_dim = read_word2vec_dim(init_embeddings)
    return train_model(run, data=data, model=model, valid_fraction=valid_fraction, init_embeddings_path=init_embeddings, pretrain=pretrain,
                       patience=patience, max_steps=max_steps, time_budget=time_budget, model_config=model_config,
                       rnn=rnn, layers=layers, hidden_dim=hidden_dim, emb_dim=emb_dim, bidirectional=bidirectional,
                       aggregation=aggregation, concat_last=concat_last, dropout=dropout, ngram_dim=ngram_dim, buckets=buckets, ngrams=ngrams,
                       lr=lr, optimizer=optimizer, batch_size=batch_size, epochs=epochs, max_len=max_len, min_count=min_count)


def run_label(options: dict) -> str:
    """Run directories are named after the recurrent cell (`...-lstm`) or the model (`...-bow`)."""
    model = options.get("model") or "rnn"
    return str(options.get("rnn") or "gru") if model == "rnn" else str(model)


# ============================================================================ eval
def evaluate(
    artifact: textlab.Artifact,
    *,
    data: Annotated[Optional[str], Option(help="Data to evaluate on (default: what the run trained on). " + DATA_HELP +
                                               " One file here is the test split: all its rows are scored.")] = None,
    split: Annotated[Literal["test", "valid", "train"], Option(help="Which split (the full test split by default).")] = "test",
    batch_size: Annotated[int, Option(min=1, help="Rows per forward pass.")] = 512,
) -> dict:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix (table + PNG)."""
    from rich.table import Table

    from .train import evaluate_artifact

    report = evaluate_artifact(artifact, data=data, split=split, batch_size=batch_size)
    t = Table(title=f"agnews {report['name']} on {split} ({report['rows']:,} rows): accuracy {report['accuracy']:.4f}, "
                    f"macro F1 {report['macro_f1']:.4f}")
    for col in ("class", "precision", "recall", "F1", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for c in report["per_class"]:
        t.add_row(c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", f"{c['support']:,}")
    cm = Table(title="confusion matrix (rows: true class, columns: predicted)")
    cm.add_column("true \\ predicted")
    for name in report["classes"]:
        cm.add_column(name, justify="right")
    for name, row in zip(report["classes"], report["confusion"]):
        cm.add_row(name, *(f"{v:,}" for v in row))
    textlab.show(t, cm)
    textlab.status(f"wrote {report['json']} and {report['png']}")
    return report


# ============================================================================ vocab, prep, analyze
def vocab(
    *,
    data: Annotated[str, Option(help=DATA_HELP)] = "ag_news",
    min_count: Annotated[int, Option(min=1, help="Keep words seen at least this often in the train part.")] = TRAIN_DEFAULTS["rnn"]["min_count"],
    valid_fraction: Annotated[float, Option(**FRACTION, help=f"{VALID_HELP}, not counted, as in train. [0<x<1]")] = 0.05,
    show_top: Annotated[int, Option("--show", min=0, help="How many of the most frequent words to list.")] = 20,
) -> dict:
    """Build the vocabulary (specials <pad> <unk> <bos> <eos>, then words by count) and cache it for train."""
    from rich.table import Table

    source = D.resolve(data)
    prep = D.prepare(source, "train")
    train_idx, valid_idx = D.split_valid(prep.labels, valid_fraction)
    voc, path, cached = D.get_vocab(source, prep, train_idx, min_count=min_count, valid_fraction=valid_fraction)
    cov = D.coverage(prep, train_idx, valid_idx, [min_count])[0]
    t = Table(title=f"agnews vocabulary of {source.describe()} (min count {min_count})")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("entries (with 4 specials)", f"{len(voc):,}")
    t.add_row("distinct words in train part", f"{cov['distinct']:,}")
    t.add_row("train tokens covered", f"{cov['train_coverage']:.2%}")
    t.add_row("valid tokens covered", f"{cov['valid_coverage']:.2%}")
    t.add_row("most frequent", ", ".join(voc.itos[len(D.SPECIALS):len(D.SPECIALS) + show_top]))
    textlab.show(t)
    textlab.status(f"{'cached vocabulary reused' if cached else 'vocabulary cached'}: {path}")
    return {"size": len(voc), "min_count": min_count, "path": str(path), "cached": cached, "specials": list(D.SPECIALS),
            "train_coverage": cov["train_coverage"], "valid_coverage": cov["valid_coverage"],
            "top": voc.itos[len(D.SPECIALS):len(D.SPECIALS) + show_top]}


def prep(
    *,
    data: Annotated[str, Option(help=DATA_HELP)] = "ag_news",
    text_out: Annotated[Optional[Path], Option(help="Also write the train part's cleaned tokens, one row per line "
                                                    "(valid rows left out), e.g. for `textlab train word2vec`.")] = None,
    valid_fraction: Annotated[float, Option(**FRACTION, help=f"{VALID_HELP}, left out of --text-out, as in train. [0<x<1]")] = 0.05,
) -> dict:
    """Clean and tokenize the train and test splits once and cache them (train and eval reuse them)."""
    from rich.table import Table

    source = D.resolve(data)
    if text_out is not None and text_out.is_dir():
        raise textlab.UsageError(f"--text-out {text_out} is a folder; give a file name, e.g. agnews-train.txt")
    t = Table(title=f"agnews data prepared from {source.describe()}")
    for col in ("split", "rows", "tokens", "distinct words"):
        t.add_column(col, justify="left" if col == "split" else "right")
    out = {}
    for split in ("train",) if D.one_file(source) else ("train", "test"):  # one file: a train split only
        p = D.prepare(source, split)
        out[split] = {"rows": len(p), "tokens": int(p.lengths.sum()), "distinct": len(p.words)}
        t.add_row(split, f"{len(p):,}", f"{out[split]['tokens']:,}", f"{len(p.words):,}")
        if split == "train" and text_out is not None:
            train_idx, _ = D.split_valid(p.labels, valid_fraction)
            try:
                out["text_out"] = {"path": str(text_out), **D.write_text(p, train_idx, text_out)}
            except OSError as e:
                raise textlab.UsageError(f"--text-out {text_out}: cannot write it ({e.strerror or e})") from None
    textlab.show(t)
    if text_out is not None:
        textlab.status(f"wrote {out['text_out']['rows']:,} train rows ({out['text_out']['tokens']:,} tokens, valid part "
                       f"left out) to {text_out}")
    return out


def analyze(
    *,
    data: Annotated[str, Option(help=DATA_HELP)] = "ag_news",
    thresholds: Annotated[str, Option(help="Comma-separated min-count thresholds for the coverage table.")] = "1,2,3,5,10,25,50,100",
    valid_fraction: Annotated[float, Option(**FRACTION, help=f"{VALID_HELP}, as in train. [0<x<1]")] = 0.05,
    out: Annotated[Optional[Path], Option(help="Also write analysis.json and PNGs (lengths, coverage) here.")] = None,
) -> dict:
    """Classes, text lengths and vocabulary coverage per min-count threshold of a dataset."""
    try:
        ths = sorted({int(x) for x in thresholds.split(",") if x.strip()})
    except ValueError:
        raise textlab.UsageError(f"--thresholds {thresholds!r} must be comma-separated integers, e.g. 1,5,25") from None
    if not ths or min(ths) < 1:
        raise textlab.UsageError("--thresholds must hold integers >= 1")
    source = D.resolve(data)
    result = D.describe(source, ths, valid_fraction)
    _show_analysis(result, source)
    if out is not None:
        result["files"] = [str(p) for p in D.plot_analysis(result, Path(out))]
        textlab.write_json(Path(out) / "analysis.json", result)
        textlab.status(f"wrote {', '.join(result['files'])} and {Path(out) / 'analysis.json'}")
    return result


def _show_analysis(result: dict, source: textlab.Source) -> None:
    from rich.table import Table

    splits = list(result["classes"])
    t = Table(title=f"classes of {source.describe()}")
    t.add_column("class")
    for s in splits:
        t.add_column(s, justify="right")
    for i, name in enumerate(D.CLASSES):
        cells = []
        for s in splits:
            n, total = result["classes"][s][i], sum(result["classes"][s])
            cells.append(f"{n:,} ({n / total:.1%})")
        t.add_row(name, *cells)
    lt = Table(title="text length in tokens (after cleaning)")
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


# ============================================================================ hooks
@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name="agnews",
        help="AG News topic classification (World, Sports, Business, Sci/Tech) with RNN/GRU/LSTM or bag of n-grams.",
        verbs={"prep": prep, "vocab": vocab, "train": train, "eval": evaluate, "analyze": analyze},
        run_label=run_label,
        monitor="valid/accuracy",
    )]


@textlab.hookimpl
def textlab_models():
    return [
        textlab.ModelSpec(task="agnews", name="rnn", config=RNNConfig, build=build_rnn,
                          help="embedding -> RNN/GRU/LSTM -> padding-aware max/mean/last pooling -> linear"),
        textlab.ModelSpec(task="agnews", name="bow", config=BowConfig, build=build_bow,
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
