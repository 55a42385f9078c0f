"""The config of each registered model (plain dataclasses: no torch here, so `task.py` stays light).

Sizes that a checkpoint's tensors need (vocabulary sizes, tree node counts) are config fields
too: a model is rebuilt from its config and then filled from the state dict.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    learning_rate: float = 0.1
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
