"""Model sizes (no torch here: task.py imports this to build its options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class RecrnnConfig:
    """Sizes of both models (the baseline reads dim/heads/mlp_ratio/layer counts and matches parameters)."""

    vocab_size: int = 58
    dim: int = 64
    heads: int = 4
    mlp_ratio: float = 3.0
    prelude: int = 1
    core: int = 2
    coda: int = 1
    mean_recurrence: int = 8
    backprop_depth: int = 4
    injection: str = "concat"  # "concat" (linear adapter on concat(s, e)) or "add" (s + e)
    norm: str = "sandwich"  # "sandwich" or "prenorm"
    state_scale: float = 1.0  # scales the random initial state (0 = zero state)
    rope_base: float = 50_000.0
    coda_norm: bool = True  # Huginn: the final norm is also applied before the coda (False: only after it)
    token_mix: int = 0  # >0: causal depthwise convolution of this width over the embeddings (not in Huginn)
    pad_id: int = 57


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"dim": 32, "heads": 2, "prelude": 1, "core": 1, "coda": 1, "mean_recurrence": 4, "backprop_depth": 2},
    "cpu": {"dim": 64, "heads": 4, "prelude": 1, "core": 2, "coda": 1, "mean_recurrence": 8, "backprop_depth": 4},
    "quality": {"dim": 128, "heads": 4, "prelude": 1, "core": 2, "coda": 1, "mean_recurrence": 8, "backprop_depth": 4},
}
