"""Model configurations (plain dataclasses; stored in every checkpoint as a dict).

Kept apart from model.py so that registering the models does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textlab import RENAMED_FROM


@dataclass
class GLAConfig:
    vocab_size: int = 0  # 0: taken from the vocabulary
    d_model: int = 256
    layers: int = field(default=4, metadata={RENAMED_FROM: "n_layers"})  # checkpoints of textlab 0.1
    heads: int = field(default=4, metadata={RENAMED_FROM: "n_heads"})
    expand_k: float = 0.5  # key (and gate) width d/2: dk = d / (2 H) per head
    expand_v: float = 1.0  # value width d: dv = d / H per head
    gate_low_rank: int = 16  # W_α1: d x 16, W_α2: 16 x d/2 (+ bias)
    gate_logit_normalizer: int = 16  # g = logsigmoid(.) / 16: α ≈ 0.958 at init
    chunk_size: int = 64
    sub_chunk: int = 16
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    init_std: float = 0.02


@dataclass
class TransformerConfig:
    vocab_size: int = 0
    d_model: int = 256
    layers: int = field(default=4, metadata={RENAMED_FROM: "n_layers"})
    heads: int = field(default=4, metadata={RENAMED_FROM: "n_heads"})
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    init_std: float = 0.02


# ============================================================================ the verbs' options
from typing import Literal, Optional  # noqa: E402

import textlab  # noqa: E402
from textlab import option  # noqa: E402
from textlab import options as shared  # noqa: E402

DEFAULT_DATA = "wikitext:wikitext-103-raw-v1"
DATA_HELP = ("'sample', a local folder or text file (e.g. ../shared/data/wikitext), or a Hugging Face "
             "dataset name:config with a 'text' column.")
GLA_ONLY = {"model": ("gla",)}


@dataclass
class PrepOptions:
    data: str = option(DEFAULT_DATA, help=DATA_HELP)
    force: bool = option(False, help="Read the source again even if it is cached.")


@dataclass
class VocabOptions:
    data: str = option(DEFAULT_DATA, help=DATA_HELP)
    min_count: int = option(1, min=1, help="Keep characters seen at least this often in train; the rest read as ⁇.")


@dataclass
class TrainOptions(textlab.Options):
    data: str = option(DEFAULT_DATA, help=DATA_HELP)
    model: str = option("gla", help="gla, or transformer (same size, softmax attention) to compare.")
    d_model: int = option(GLAConfig.d_model, min=8, help="Model width.")
    layers: int = option(GLAConfig.layers, min=1, help="Number of blocks.")
    heads: int = option(GLAConfig.heads, min=1, help="Attention / GLA heads.")
    seq_len: int = option(512, min=2, help="Characters per training window.")
    batch_size: int = option(16, min=1, help="Windows per step.")
    lr: float = shared.lr(1e-3, help="Peak learning rate (AdamW).")
    warmup: int = shared.warmup(100)
    min_lr_ratio: float = option(0.1, min=0.0, max=1.0, help="Cosine decay ends at this share of --lr.")
    weight_decay: float = option(0.1, min=0.0, help="AdamW weight decay (matrices only).")
    grad_clip: float = option(1.0, min=0.0, help="Gradient-norm clipping (0: off).")
    epochs: Optional[int] = shared.epochs(None, help="Passes over the train text (default 1, or unbounded with "
                                                     "--steps / --time-budget).")
    steps: Optional[int] = shared.steps()
    time_budget: Optional[float] = shared.time_budget(help="Stop after this much wall-clock time, preparation "
                                                           "included: 90s, 20m, 1h30m (a bare number is seconds; "
                                                           "0: no limit). The learning-rate decay follows it.")
    eval_every: int = shared.eval_every(200, help="Evaluate on valid every N steps (and at the end).")
    patience: Optional[int] = shared.patience()
    eval_chars: int = option(131072, min=2, help="Valid characters scored at each evaluation ('textlab eval' "
                                                 "scores all).")
    min_count: int = option(1, min=1, help="Vocabulary: keep characters seen this often.")
    chunk_size: int = option(GLAConfig.chunk_size, min=1, help="GLA chunk length C of the chunkwise form.",
                             applies=GLA_ONLY)
    sub_chunk: int = option(GLAConfig.sub_chunk, min=1, help="GLA sub-chunk length c (secondary-level chunking).",
                            applies=GLA_ONLY)
    tie_embeddings: bool = option(True, help="Share the embedding and output matrices.")

    @classmethod
    def upgrade(cls, record: dict) -> dict:
        """textlab 0.1 stored --time-budget as the text typed (20m); a value of 0 or none is no limit."""
        if record.get("time_budget") in ("", "0", 0):
            record.pop("time_budget")
        return record

    def resolve(self) -> None:
        """Check the model's sizes now (one line, before any data is read): `model_config` builds
        the config; the model itself is built on the meta device, so a size that does not divide is
        refused before anything trains."""
        if self.model == "gla" and self.chunk_size % self.sub_chunk:
            raise textlab.UsageError(f"--chunk-size {self.chunk_size} must be a multiple of --sub-chunk {self.sub_chunk}")
        if self.epochs is None and not (self.steps or self.time_budget):
            self.epochs = 1  # the default: one pass; with --steps or --time-budget, no epoch limit
        spec = textlab.registry().model("gla", self.model)
        textlab.check_build(spec, textlab.make_config(spec.config, self, {"vocab_size": 2}))


@dataclass
class EvalOptions:
    split: Literal["valid", "test", "both"] = option("both", help="Which split to score.")
    data: Optional[str] = option(None, help="Data to score (default: what the run trained on). " + DATA_HELP)
    context: Literal["window", "stream"] = option(
        "window", help="window: non-overlapping windows of --seq-len, each from scratch (both models). "
                       "stream: GLA only, the state carried across windows.")
    seq_len: Optional[int] = option(None, min=2, help="Window length (default: the training one).")
    batch_size: int = option(16, min=1, help="Windows (or streams) per forward pass.")
    max_chars: Optional[int] = option(None, min=2, help="Score only the first N characters.")


@dataclass
class GenerateOptions:
    prompt: str = option("", argument=True, help="Text to continue (empty: start from a new line).")
    max_new: int = option(500, min=1, help="Characters to generate.")
    temperature: float = option(0.8, min=0.0, help="Sampling temperature (0: greedy).")
    top_k: int = option(20, min=0, help="Sample among the k most likely characters (0: all).")
    sampling_seed: Optional[int] = option(None, help="Seed for reproducible samples.")
    unknown: Literal["error", "unk", "drop"] = option(
        "error", help="Prompt characters outside the vocabulary: stop with an error, read them as ⁇, or drop them.")
