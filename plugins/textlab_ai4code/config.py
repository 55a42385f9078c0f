"""The config of each registered model, and the options of every verb (plain dataclasses: no torch
here, so `task.py` stays light).

Sizes that a checkpoint's tensors need (vocabulary sizes, tree node counts) are config fields
too: a model is rebuilt from its config and then filled from the state dict. A model's config is
made from the train options with `textlab.make_config` (fields matched by name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import textlab
from textlab import RENAMED_FROM, option
from textlab import options as shared

TASK = "ai4code"
MONITOR = "valid/kendall_tau"  # best.pt of every model


# ============================================================================ the models' configs
@dataclass
class AppendedConfig:
    """Baseline (a): code in order, markdown appended in file order. Nothing to fit."""


@dataclass
class SimilarConfig:
    """Baseline (c): each markdown cell just before its most TF-IDF-similar code cell."""

    n_words: int = 0
    min_df: int = 2
    max_df: float = 0.5


@dataclass
class PointwiseConfig:
    """Ridge regression of a markdown cell's relative position on its word 1-2-gram TF-IDF,
    simple cell features and its similarity to each code cell."""

    n_words: int = 0
    n_ngrams: int = 0
    n_extra: int = 0
    alpha: float = 3.0
    max_ngrams: int = 100_000


@dataclass
class RankerConfig:
    """Gradient-boosted trees scoring every (markdown cell, code gap) pair; two stages."""

    n_words: int = 0
    n_ngrams: int = 0
    char_features: int = 1 << 20
    stage1_nodes: int = 0
    stage1_trees: int = 0
    stage2_nodes: int = 0
    stage2_trees: int = 0
    trees: int = 200
    leaves: int = 63
    lr: float = field(default=0.1, metadata={RENAMED_FROM: "learning_rate"})  # checkpoints of textlab 0.1
    negatives: float = 0.15
    min_leaf: int = 50
    stages: int = 2


@dataclass
class NeuralConfig:
    """A small encoder over hashed cell tokens with a GRU over the code cells; scores each gap."""

    buckets: int = 1 << 17
    dim: int = 64
    max_tokens: int = 160
    dropout: float = 0.1
    subwords: bool = True
    hf_vocab: int = 0  # > 0 when a local Hugging Face tokenizer gives the token ids


@dataclass
class TransformerConfig:
    """A pretrained Hugging Face encoder (from a local folder) fine-tuned to place markdown cells:
    each markdown cell with a sample of its notebook's code cells -> its relative position.

    `encoder_config` is the encoder's config as JSON, so that a checkpoint (its weights as a state dict,
    its tokenizer as tokenizer.json in the vocabulary) rebuilds it without the folder."""

    encoder_config: str = ""  # the Hugging Face config, JSON
    hidden: int = 0
    md_tokens: int = 64
    code_tokens: int = 23
    code_cells: int = 20
    max_len: int = 512
    cls_id: int = 0
    sep_id: int = 0
    pad_id: int = 0


@dataclass
class BlendConfig:
    """A weighted mean of the markdown positions that two or more ai4code runs predict. `members`:
    each run's checkpoint (path, sha256, model); the weights are a tensor of the state dict."""

    members: list = field(default_factory=list)


# ============================================================================ the verbs' options
DATA_HELP = "'sample' (notebooks the plugin makes) or a folder in Kaggle layout (train/, train_orders.csv)."
RANKER = {"model": ("ranker",)}
NEURAL = {"model": ("neural",)}
TRANSFORMER = {"model": ("transformer",)}
STEPPED = {"model": ("neural", "transformer")}  # trained by gradient steps on the engine
RANKER_PANEL, NEURAL_PANEL = "ranker options", "neural model options"
TRANSFORMER_PANEL, BLEND_PANEL = "transformer options", "blend options"
# defaults that depend on the model or on the data (Options.resolve fills them)
DEFAULT_LR = {"ranker": 0.1, "neural": 3e-3, "transformer": 3e-5}
DEFAULT_TREES, SAMPLE_TREES = RankerConfig.trees, 50  # the sample: a default that fits in seconds
DEFAULT_EPOCHS, SAMPLE_EPOCHS = {"neural": 8, "transformer": 3}, {"neural": 4, "transformer": 2}
FOLDER_SPLIT = {"valid_share": 0.2, "split_seed": 42}  # a folder's grouped split; the sample has its own
BUDGET_NOTE = "--time-budget was minutes in textlab 0.1; a bare number is now seconds (write 20m for minutes)"


@dataclass
class PrepOptions:
    from_notebooks: Path = option(help="A folder of .ipynb files (searched recursively), or one file.")
    out: Path = option(Path("data/nb"), help="Where the Kaggle layout goes (train/, train_orders.csv, ...).")
    min_markdown: int = option(1, min=0, help="Keep notebooks with at least this many markdown cells.")
    min_code: int = option(1, min=0, help="... and at least this many code cells.")
    max_chars: int = option(400_000, min=1, help="Skip notebooks with more characters of source.")
    language: str = option("python", help="Kernel language to keep ('any' keeps all).")
    overwrite: bool = option(False, help="Replace notebooks already in --out (left as they are when no notebook "
                                         "would be kept).")


@dataclass
class AnalyzeOptions:
    data: str = option("sample", help=DATA_HELP)
    split: Literal["train", "valid", "test"] = option("train", help="Which split of the sample.")
    out: Optional[Path] = option(None, old=("--plot",), note="a folder now: the PNG and analysis.json go into it",
                                 help="Also write analysis.json and a PNG of the distributions into this folder.")


@dataclass
class TrainOptions(textlab.Options):
    data: str = option("sample", help=DATA_HELP)
    model: str = option("ranker", help="Which model: baselines appended/similar, pointwise, ranker, neural, "
                                       "transformer (a local Hugging Face encoder), blend (of trained runs).")
    valid_share: Optional[float] = option(None, min=0.0, max=0.9, help="Share of notebooks (whole ancestor groups) "
                                          "kept to validate (default 0.2); folders only: the sample has its own "
                                          "valid split.")
    split_seed: Optional[int] = option(None, help="Seed of the grouped train/valid split (default 42); folders only.")
    limit: int = option(0, min=0, help="Use at most this many training notebooks, and at most max(1, N/4) "
                                       "validation notebooks (0: all).")
    lr: Optional[float] = shared.lr(None, old=("--learning-rate",), applies={"model": ("ranker", "neural", "transformer")},
                                    help="Learning rate: of the boosting (ranker, default 0.1), the peak of the "
                                         "neural model's warm-up then 1/sqrt(step) decay (default 3e-3), or of the "
                                         "transformer's warm-up then linear decay (default 3e-5).")
    trees: Optional[int] = option(None, min=1, applies=RANKER, panel=RANKER_PANEL,
                                  help=f"Boosting iterations per stage (default {DEFAULT_TREES}; "
                                       f"{SAMPLE_TREES} on --data sample).")
    leaves: int = option(RankerConfig.leaves, min=2, applies=RANKER, panel=RANKER_PANEL, help="Leaves per tree.")
    negatives: float = option(RankerConfig.negatives, gt=0.0, max=1.0, applies=RANKER, panel=RANKER_PANEL,
                              help="Share of wrong gaps kept for fitting.")
    stages: int = option(RankerConfig.stages, min=1, max=2, applies=RANKER, panel=RANKER_PANEL,
                         help="2: a second pass sees where the first put the other markdown cells.")
    epochs: Optional[int] = shared.epochs(None, applies=STEPPED, panel=NEURAL_PANEL,
                                          help="Passes over the training notebooks (default: neural 8, transformer "
                                               "3; on --data sample 4 and 2).")
    time_budget: Optional[float] = shared.time_budget(applies=STEPPED, panel=NEURAL_PANEL, note=BUDGET_NOTE)
    warmup: Optional[int] = shared.warmup(None, applies=STEPPED, panel=NEURAL_PANEL,
                                          help="Linear learning-rate warm-up steps (default: neural one epoch's "
                                               "steps, at most 100; transformer 5% of the planned steps).")
    batch_size: int = option(8, min=1, applies=STEPPED, panel=NEURAL_PANEL,
                             help="Notebooks per step (neural), markdown cells per step (transformer).")
    dim: int = option(NeuralConfig.dim, min=4, applies=NEURAL, panel=NEURAL_PANEL, help="Width of the encoder.")
    buckets: int = option(NeuralConfig.buckets, min=16, applies=NEURAL, panel=NEURAL_PANEL,
                          help="Hash buckets of the token table.")
    tokenizer: str = option("hash", applies=NEURAL, panel=NEURAL_PANEL,
                            help="'hash' (no download), or a local folder with a Hugging Face tokenizer.")
    hub: bool = option(False, applies=STEPPED, panel=NEURAL_PANEL,
                       help="Allow --tokenizer / --encoder to name a Hugging Face hub model (downloads).")
    encoder: Optional[str] = option(None, applies=TRANSFORMER, panel=TRANSFORMER_PANEL, metavar="DIR",
                                    help="A local Hugging Face encoder folder (config.json, weights, a fast "
                                         "tokenizer), e.g. a copy of microsoft/codebert-base; needs textlab[hf].")
    md_tokens: int = option(TransformerConfig.md_tokens, min=4, applies=TRANSFORMER, panel=TRANSFORMER_PANEL,
                            help="Tokens of the markdown cell.")
    code_tokens: int = option(TransformerConfig.code_tokens, min=1, applies=TRANSFORMER, panel=TRANSFORMER_PANEL,
                              help="Tokens of each code cell of the context.")
    code_cells: int = option(TransformerConfig.code_cells, min=1, applies=TRANSFORMER, panel=TRANSFORMER_PANEL,
                             help="Code cells of the context: this many, evenly spread over the notebook, in order.")
    max_len: Optional[int] = option(None, min=8, applies=TRANSFORMER, panel=TRANSFORMER_PANEL,
                                    help="Tokens of one input in all (default: 512, or the encoder's maximum if "
                                         "smaller).")
    members: list[str] = option([], flags=("--member",), applies={"model": ("blend",)}, panel=BLEND_PANEL,
                                metavar="RUN", help="A trained ai4code run to blend (repeat: two or more); the "
                                                    "weights are fitted on the validation notebooks.")

    @classmethod
    def upgrade(cls, record: dict) -> dict:
        """A run of textlab 0.1: its ranker's --learning-rate is --lr now (the neural model's --lr
        stays), and --time-budget was minutes (0: none)."""
        record = dict(record)
        if textlab.registry().dataset(TASK, str(record.get("data", "sample"))) is not None:
            for name in FOLDER_SPLIT:  # stored for every run in 0.1, used only for folders
                record.pop(name, None)
        boosting = record.pop("learning_rate", None)
        if record.get("model", "ranker") == "ranker":  # 0.1 stored the neural --lr for every model
            record.pop("lr", None)
            if boosting is not None:
                record["lr"] = boosting
        minutes = record.pop("time_budget", None)
        if minutes:
            record["time_budget"] = float(minutes) * 60
        return record

    def resolve(self) -> None:
        """The model's own learning rate, smaller defaults on the embedded sample, checked
        combinations, and the model built on the meta device."""
        sample = textlab.resolve(TASK, self.data).kind == "registered"
        for name, default in FOLDER_SPLIT.items():
            flag = "--" + name.replace("_", "-")
            if sample and getattr(self, name) is not None:
                raise textlab.UsageError(f"{flag} applies to a folder; --data {self.data} has its own train/valid "
                                         "splits", hint=f"drop {flag}")
            if not sample and getattr(self, name) is None:
                setattr(self, name, default)
        if self.model in DEFAULT_LR and self.lr is None:
            self.lr = DEFAULT_LR[self.model]
        if self.model == "ranker" and self.trees is None:
            self.trees = SAMPLE_TREES if sample else DEFAULT_TREES
        if self.model in DEFAULT_EPOCHS:
            if self.epochs is None:
                self.epochs = (SAMPLE_EPOCHS if sample else DEFAULT_EPOCHS)[self.model]
            if self.time_budget == 0:
                self.time_budget = None
        if self.model == "transformer":
            from .hf import check_encoder_option

            check_encoder_option(self.encoder, self.hub)
        if self.model == "blend":
            from .blend import check_members

            check_members(self)
        if self.model == "neural":
            if self.hub and self.tokenizer == "hash":
                raise textlab.UsageError("--hub lets --tokenizer name a hub model; --tokenizer hash downloads nothing",
                                         hint="drop --hub, or name a tokenizer: --tokenizer microsoft/codebert-base")
            if self.tokenizer != "hash" and not self.hub and not Path(self.tokenizer).expanduser().is_dir():
                raise textlab.UsageError(f"--tokenizer {self.tokenizer}: no such local folder",
                                         hint="pass a folder holding tokenizer.json / vocab files, or add --hub to "
                                              "download it")
        spec = textlab.registry().model(TASK, self.model)
        textlab.check_build(spec, textlab.make_config(spec.config, self))


@dataclass
class EvalOptions:
    data: Optional[str] = option(None, help="'sample' (its test split) or a folder in Kaggle layout with orders "
                                            "(default: the run's own data).")
    split: Optional[Literal["all", "valid", "train"]] = option(
        None, help="all notebooks of --data, or the train/valid part of the run's own grouped split (default: valid "
                   "on the run's own folder when it kept one, so that it scores notebooks it did not train on; all "
                   "elsewhere).")
    limit: int = option(0, min=0, help="Evaluate at most this many notebooks (0: all).")


@dataclass
class GenerateOptions:
    data: Optional[str] = option(None, help="'sample' (its test split) or a folder of notebooks (test/ or train/) "
                                            "(default: the run's own data).")
    out: Path = option(Path("submission.csv"), help="Where the submission CSV goes (id,cell_order).")
    limit: int = option(0, min=0, help="At most this many notebooks (0: all).")
