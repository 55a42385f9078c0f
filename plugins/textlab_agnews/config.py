"""Model configurations and the verbs' options (plain dataclasses; no torch here).

The model configs are stored in every checkpoint as a dict. Each verb's options are one
dataclass: the command line, `--config` files, `--sweep`, the run's `config.toml` and the Python
API all read them. `TrainOptions.resolve()` fills what depends on other options: the model's own
training settings (`TRAIN_DEFAULTS`), the pretraining choice of `--pretrain auto` (which depends
on the train part's token count) and the 3-epoch default of a model whose embeddings start from
pretrained vectors; its work is in `train.resolve_options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import textlab
from textlab import MISSING_MEANS, option
from textlab import options as shared

# n-gram hashes: mix64 since 2026-11-22; checkpoints written before the field existed used linear
NGRAM_HASHES = ("mix64", "linear")


# ============================================================================ model configs
@dataclass
class RNNConfig:
    vocab_size: int = 20_000
    num_classes: int = 4
    rnn: str = "gru"  # rnn | gru | lstm
    emb_dim: int = 128
    hidden_dim: int = 128
    layers: int = 1
    bidirectional: bool = True
    aggregation: str = "max"  # max | mean | last
    concat_last: bool = False
    dropout: float = 0.3
    ngram_dim: int = 0  # > 0: add a bag-of-n-grams branch of this size beside the recurrent features
    buckets: int = 1_000_000
    ngrams: int = 2
    ngram_hash: str = field(default="mix64", metadata={MISSING_MEANS: "linear"})


@dataclass
class BowConfig:
    vocab_size: int = 20_000
    num_classes: int = 4
    emb_dim: int = 32
    buckets: int = 1_000_000  # hashed n-gram embeddings
    ngrams: int = 2  # 1: words only, 2: + bigrams, 3: + trigrams
    dropout: float = 0.3  # share of words and n-grams left out of each average while training
    ngram_hash: str = field(default="mix64", metadata={MISSING_MEANS: "linear"})


# ============================================================================ training settings per model
# Used for every one of these options left unset. A model a third party registers gets the `rnn`
# settings. `warmup` is a share of the planned steps here (resolve turns it into steps). What they
# give: README, "Results".
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "rnn": {"lr": 2e-3, "epochs": 6, "batch_size": 64, "max_len": 64, "min_count": 2, "optimizer": "adam",
            "warmup": 0.02},
    # bow's lr 0.1: the best mean valid accuracy of 12 (lr, dropout, emb_dim) settings over 3 seeds; its batch
    # of 256 (32 until 2026-12-07): the best of 14 (batch size, lr) settings over 3 seeds, 3x faster (README)
    "bow": {"lr": 0.1, "epochs": 5, "batch_size": 256, "max_len": 128, "min_count": 1, "optimizer": "adagrad",
            "warmup": 0.0},
}
# Default epochs of a model whose embeddings start from `--pretrain` vectors (else the model's own).
PRETRAINED_EPOCHS = 3
# The options that are fields of the model configs (filled by name; `textlab.make_config`).
MODEL_FIELDS = ("rnn", "emb_dim", "hidden_dim", "layers", "bidirectional", "aggregation", "concat_last", "dropout",
                "ngram_dim", "buckets", "ngrams")
RNN_ONLY = {"model": ("rnn",)}
TOKENIZERS = ("builtin", "nltk")


def _defaults(key: str) -> str:
    """`(default: rnn X, bow Y)` from the table above (one source of truth)."""
    return "(default: " + ", ".join(f"{m} {d[key]:g}" if isinstance(d[key], float) else f"{m} {d[key]}"
                                    for m, d in TRAIN_DEFAULTS.items()) + ")"


DATA_HELP = ("'ag_news' (Hugging Face, the default), a local folder with train/test files, one local file "
             "(parquet/csv/jsonl with text,label; or the classic CSV class,title,description), or 'sample'.")
VALID_HELP = "Share of train held out (stratified, seeded)"
TOKENIZER_HELP = ("builtin: runs of letters and digits, lowercased (punctuation dropped); nltk: nltk's "
                  "NLTKWordTokenizer (Treebank rules, punctuation kept; no download), lowercased. Both after "
                  "the same cleaning.")


def _data(help_: str = DATA_HELP) -> Any:
    return option("ag_news", help=help_)


def _valid_fraction(help_: str) -> Any:
    return option(0.05, gt=0.0, lt=1.0, metavar="FLOAT", help=help_)


def _tokenizer() -> Any:
    return option("builtin", help=TOKENIZER_HELP)


# ============================================================================ prep, vocab, analyze
@dataclass
class PrepOptions:
    data: str = _data()
    tokenizer: Literal["builtin", "nltk"] = _tokenizer()
    text_out: Optional[Path] = option(None, help="Also write the train part's cleaned tokens, one row per line "
                                                 "(valid rows left out), e.g. for `textlab train word2vec`.")
    valid_fraction: float = _valid_fraction(f"{VALID_HELP}, left out of --text-out, as in train.")


@dataclass
class VocabOptions:
    data: str = _data()
    tokenizer: Literal["builtin", "nltk"] = _tokenizer()
    min_count: int = option(TRAIN_DEFAULTS["rnn"]["min_count"], min=1,
                            help="Keep words seen at least this often in the train part.")
    valid_fraction: float = _valid_fraction(f"{VALID_HELP}, not counted, as in train.")
    show_top: int = option(20, min=0, flags=("--show",), help="How many of the most frequent words to list.")


@dataclass
class AnalyzeOptions:
    data: str = _data()
    tokenizer: Literal["builtin", "nltk"] = _tokenizer()
    thresholds: str = option("1,2,3,5,10,25,50,100", help="Comma-separated min-count thresholds for the coverage table.")
    valid_fraction: float = _valid_fraction(f"{VALID_HELP}, as in train.")
    out: Optional[Path] = option(None, help="Also write analysis.json and PNGs (lengths, coverage) here.")


# ============================================================================ train
@dataclass
class TrainOptions(textlab.Options):
    data: str = _data()
    model: str = option("rnn", help="Which registered model: rnn (with --rnn) or bow (fastText-style).")
    tokenizer: Literal["builtin", "nltk"] = _tokenizer()
    # the model (fields of its config, by name)
    rnn: Literal["rnn", "gru", "lstm"] = option(RNNConfig.rnn, help="Recurrent cell.", applies=RNN_ONLY)
    layers: int = option(RNNConfig.layers, min=1, help="Recurrent layers.", applies=RNN_ONLY)
    hidden_dim: int = option(RNNConfig.hidden_dim, min=1, help="Hidden size per direction.", applies=RNN_ONLY)
    bidirectional: bool = option(RNNConfig.bidirectional, help="Read the text in both directions.", applies=RNN_ONLY)
    aggregation: Literal["max", "mean", "last"] = option(RNNConfig.aggregation, applies=RNN_ONLY,
                                                         help="Pooling over the real (unpadded) tokens.")
    concat_last: bool = option(RNNConfig.concat_last, applies=RNN_ONLY,
                               help="Concatenate the last state to the max/mean pooling.")
    ngram_dim: int = option(RNNConfig.ngram_dim, min=0, applies=RNN_ONLY,
                            help="Size of a bag-of-n-grams branch beside the recurrent features (0: none).")
    emb_dim: Optional[int] = option(None, min=1, help=f"Embedding size (default: rnn {RNNConfig.emb_dim}, bow "
                                                      f"{BowConfig.emb_dim}; with --init-embeddings: the file's).")
    dropout: Optional[float] = option(None, min=0.0, max=0.95,
                                      help=f"Dropout (default: rnn {RNNConfig.dropout}, bow {BowConfig.dropout}).")
    buckets: Optional[int] = option(None, min=1, help="Hashed n-gram embeddings of bow and of the rnn's n-gram "
                                                      f"branch (default: {BowConfig.buckets:,}).")
    ngrams: Optional[int] = option(None, min=1, max=3, help="bow and the n-gram branch: 1 words, 2 + bigrams, "
                                                            f"3 + trigrams (default: {BowConfig.ngrams}).")
    model_config: list[str] = option([], help="KEY=VALUE setting of the model's config (repeatable), e.g. for a "
                                              "third-party model.")
    # training
    lr: Optional[float] = shared.lr(None, help=f"Peak learning rate {_defaults('lr')}; linear decay to 0.")
    optimizer: Optional[Literal["adam", "adagrad", "sgd"]] = option(None, help=f"Optimizer {_defaults('optimizer')}.")
    batch_size: Optional[int] = option(None, min=1, help=f"Rows per step {_defaults('batch_size')}.")
    epochs: Optional[int] = shared.epochs(None, help=f"Passes over the train split {_defaults('epochs')[:-1]}; "
                                                     f"{PRETRAINED_EPOCHS} when the embeddings start from --pretrain "
                                                     "vectors).")
    steps: Optional[int] = shared.steps(help="Stop after this many optimizer steps (the learning-rate decay then ends "
                                             "there, if that comes before the last epoch).",
                                        old=("--max-steps",), note="the learning-rate decay now ends at --steps "
                                                                   "when it comes before the last epoch")
    time_budget: Optional[float] = shared.time_budget(help="Stop after this much wall-clock time, everything the run "
                                                           "does included (--pretrain vectors too): 90s, 20m, 1h30m "
                                                           "(a bare number is seconds; 0: no limit).")
    eval_every: Optional[int] = shared.eval_every(None, help="Evaluate on valid every N optimizer steps (default: "
                                                             "twice per epoch, at its middle and its end).")
    patience: Optional[int] = shared.patience(help="Stop after this many evaluations without a better valid accuracy.")
    warmup: Optional[int] = shared.warmup(None, help="Linear learning-rate warm-up steps (default: rnn 2% of the "
                                                     "planned steps, bow 0).")
    max_len: Optional[int] = option(None, min=1, help=f"Tokens kept per text (its start) {_defaults('max_len')}.")
    min_count: Optional[int] = option(None, min=1, help=f"Keep words seen at least this often in train "
                                                        f"{_defaults('min_count')}.")
    valid_fraction: float = _valid_fraction(f"{VALID_HELP} to pick the best checkpoint.")
    # the embeddings' start
    init_embeddings: Optional[Path] = option(None, help="Start the embedding layer from a word2vec text file (e.g. "
                                                        "exported by the word2vec task).")
    pretrain: str = option("auto", help="Start the embedding layer from vectors an embedder plugin first learns on "
                                        "the train part's text (valid rows left out): 'auto' (word2vec, if "
                                        "installed and the train part has at least 500,000 tokens, for models whose "
                                        "embedding is a word table: rnn, not bow), an embedder's name, or 'none' "
                                        "(random start).")
    legacy_schedule: bool = option(False, hidden=True, help="The learning-rate curve of textlab 0.1.0 (warm-up, then "
                                                            "linear decay over the remaining steps of --epochs): a "
                                                            "run it started keeps it when resumed.")

    notes: ClassVar[tuple] = ()  # what resolve decided and train says (--pretrain auto's reason)

    @classmethod
    def upgrade(cls, record: dict) -> dict:
        """A run of textlab 0.1.0 (its config.json, nulls dropped) in today's options; see upgrade.py."""
        from .upgrade import upgrade_record

        return upgrade_record(record)

    def resolve(self) -> None:
        """The model's defaults for every setting left unset, `--pretrain auto` decided and the
        combinations checked (the model is built on the meta device); see train.resolve_options."""
        from .train import resolve_options

        resolve_options(self)


# ============================================================================ eval
@dataclass
class EvalOptions:
    data: Optional[str] = option(None, help="Data to evaluate on (default: what the run trained on). " + DATA_HELP +
                                            " One file here is the test split: all its rows are scored.")
    split: Literal["test", "valid", "train"] = option("test", help="Which split (the full test split by default).")
    batch_size: int = option(512, min=1, help="Rows per forward pass.")
