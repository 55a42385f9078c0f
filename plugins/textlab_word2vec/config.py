"""The model configuration and every verb's options (plain dataclasses; no torch here).

Each verb's options are one dataclass: its help, bounds, defaults and flags in one place; the
command line, config files, `--set`, sweeps, the run's `config.toml` and the Python API all read
them. Options whose default depends on data (`--window`, `--sample`, `--min-count` of a later
step) are `None` until the step that reads the data fills them from the matching earlier output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import textlab
from textlab import option
from textlab import options as shared


@dataclass
class SGNSConfig:
    vocab_size: int = 0
    dim: int = 100


DATA_HELP = ("A text file or folder (.txt, .gz), a table file (parquet/csv/jsonl, see --column), a Hugging Face "
             "dataset name, 'sample', or a folder written by an earlier step. Default: the corpus of the last step you ran.")
MAX_WINDOW = 1000  # a unit of work buffers 2 x window x 20,000 pairs: wider windows do not fit in memory


@dataclass
class PrepOptions:
    data: str = option(help="A text file or folder (.txt, .gz), a table file (parquet/csv/jsonl: see --column), a "
                            "Hugging Face dataset name (train split), or 'sample'.")
    column: str = option("text", help="The text column of a table file or Hugging Face dataset.")
    fold_yo: bool = option(False, flags=("--fold-yo/--keep-yo",), help="Write ё as е (as most Russian corpora and "
                                                                        "test sets do).")
    out: Optional[Path] = option(None, help="Write into this folder instead of the cache.")
    force: bool = option(False, help="Redo it even if the cache has it.")


@dataclass
class VocabOptions:
    data: Optional[str] = option(None, help=DATA_HELP)
    min_count: Optional[int] = option(None, min=1, help="Keep words seen at least this often (default: 5).")
    max_vocab: Optional[int] = option(None, min=1, help="Keep at most this many words (the most frequent).")
    max_sentence: Optional[int] = option(None, min=2, help="Cut longer lines into pieces of this many words (windows "
                                                           "do not cross lines) (default: 10000).")
    out: Optional[Path] = option(None, help="Write into this folder instead of the cache.")
    force: bool = option(False, help="Rebuild it even if it exists.")


WINDOW_HELP = "Largest distance between target and context; each target draws its own, from 1 to this (word2vec)"
SAMPLE_HELP = "Frequent-word subsampling threshold; 0 = off"


@dataclass
class PairsOptions:
    data: Optional[str] = option(None, help=DATA_HELP)
    window: Optional[int] = option(None, min=1, max=MAX_WINDOW, help=WINDOW_HELP + " (default: 5).")
    sample: Optional[float] = option(None, min=0.0, lt=1.0, help=SAMPLE_HELP + " (default: 1e-3).")
    pair_seed: Optional[int] = option(None, help="Seed of the subsampling and window draws (default: 1).")
    shard_size: Optional[int] = option(None, min=1000, help="Pairs per parquet shard (default: 10000000).")
    min_count: Optional[int] = option(None, min=1, help="Vocabulary to use (see 'vocab').")
    out: Optional[Path] = option(None, help="Write into this folder instead of the cache.")
    force: bool = option(False, help="Rebuild them even if they exist.")


@dataclass
class TrainOptions(textlab.Options):
    data: Optional[str] = option(None, help=DATA_HELP)
    min_count: Optional[int] = option(None, min=1, help="Vocabulary: words seen at least this often (default: 5).")
    dim: int = option(SGNSConfig.dim, min=1, help="Vector size.")
    negative: int = option(5, min=1, help="Negative samples per target.")
    window: Optional[int] = option(None, min=1, max=MAX_WINDOW,
                                   help=WINDOW_HELP + " (default: that of your last 'pairs', else 5).")
    sample: Optional[float] = option(None, min=0.0, lt=1.0,
                                     help=SAMPLE_HELP + " (default: that of your last 'pairs', else 1e-3).")
    epochs: int = shared.epochs(1, help="Passes over the corpus.")
    lr: float = shared.lr(0.025, help="Start learning rate (decays linearly to --min-lr over all epochs).")
    min_lr: float = option(0.0001, min=0.0, help="Learning rate at the end (at most --lr).")
    pairs: Literal["fly", "shards"] = option("fly", help="fly: make pairs from the ids while training (fresh draws "
                                                         "each epoch); shards: read the pair shards of 'pairs'.")
    backend: Literal["auto", "numba", "torch"] = option("auto", help="numba: compiled CPU kernels; torch: batched "
                                                                     "steps (GPU); auto: numba on CPU, torch on GPU.")
    negatives: Literal["shared", "per-pair"] = option(
        "shared", help="shared: one draw of negatives per target word's window (faster with numba: fewer rows read); "
                       "per-pair: word2vec.c's loop. Both backends.")
    batch: int = option(4096, min=1, help="Pairs per step of the torch backend.", applies={"backend": ("auto", "torch")})
    save_every: float = option(600.0, min=0.0, unit="duration",
                               help="Time between last.pt checkpoints (90s, 20m, 1h30m; a bare number is seconds; "
                                    "0: only at the end).")
    time_budget: Optional[float] = shared.time_budget(
        help="Stop after this much wall-clock time of the whole run (across resumes, preparation included), saving "
             "last.pt: 90s, 20m, 1h30m (a bare number is seconds; 0: no limit); --resume continues.")
    out: Optional[Path] = option(None, help="Also write the final checkpoint to this file, e.g. word2vec.pt.")

    @classmethod
    def upgrade(cls, record: dict) -> dict:
        """textlab 0.1 stored `time_budget: 0.0` for no limit (same names and units otherwise: its
        --time-budget and --save-every were seconds, which a bare number still is)."""
        if record.get("time_budget") in (0, 0.0, "0", ""):
            record.pop("time_budget")
        return record

    def resolve(self) -> None:
        """Combinations the bounds of one option cannot say."""
        if self.min_lr > self.lr:
            raise textlab.UsageError(f"--min-lr {self.min_lr:g} is above --lr {self.lr:g}",
                                     hint="the learning rate decays from --lr down to --min-lr")
        if self.out is not None and Path(self.out).is_dir():
            raise textlab.UsageError(f"--out {self.out} is a folder; give a file name such as word2vec.pt")
        if textlab.distributed.world_size() > 1:
            # Hogwild SGD shares one weight matrix between threads; DDP would train a full copy per process
            raise textlab.UsageError("word2vec trains in one process with several threads (--threads N), not "
                                     "under torchrun/--nproc")


@dataclass
class NeighborsOptions:
    words: list[str] = option(argument=True, metavar="WORDS...",
                              help="A word (or several: one table each), or an analogy: king -- -man +woman "
                                   "('--' lets words start with '-').")
    top: int = option(10, min=1, flags=("-k", "--top"), help="How many neighbours.")
    restrict: Optional[int] = option(None, min=1, help="Search only the N most frequent words.")


@dataclass
class EvalOptions:
    analogies: Optional[Path] = option(None, help="Analogy questions (questions-words.txt format).")
    similarity: list[Path] = option([], help="Word pairs with human scores: 'word1 word2 score' lines (repeatable).")
    restrict: int = option(30_000, min=1, help="Analogies: only questions within the N most frequent words, answers "
                                               "searched among them (gensim's restrict_vocab).")


@dataclass
class ExportOptions:
    fmt: Literal["word2vec-text", "word2vec-binary"] = option("word2vec-text", flags=("--format",),
                                                              help="word2vec text or binary format.")
    output: Optional[Path] = option(None, flags=("--output", "-o"),
                                    help="File to write (default: beside the checkpoint, .txt or .bin; in a run: "
                                         "outputs/vectors.*).")
    limit: Optional[int] = option(None, min=1, help="Only the N most frequent words.")
