"""Model configurations (plain dataclasses; stored in every checkpoint as a dict).

Kept apart from model.py so that registering the models does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GLAConfig:
    vocab_size: int = 0  # 0: taken from the vocabulary
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
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
    n_layers: int = 4
    n_heads: int = 4
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    init_std: float = 0.02
