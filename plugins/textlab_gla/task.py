"""The `gla` task: hooks and verbs (prep, vocab, train, eval, generate).

A character-level language model with Gated Linear Attention (Yang et al., ICML 2024), and a
same-size softmax Transformer to compare with. The verbs' options are dataclasses in config.py;
the verbs call plain functions of data.py, train.py, evaluate.py and generate.py. Light to import: torch is imported inside the
functions, so `textlab --help` stays fast.
"""

from __future__ import annotations

import textlab

from . import data as gdata
from .config import EvalOptions, GenerateOptions, GLAConfig, PrepOptions, TrainOptions, TransformerConfig, VocabOptions


# ============================================================================ prep, vocab
def prep(opts: PrepOptions) -> dict:
    """Read, normalise (CRLF, NFC, <unk> -> ⁇) and cache the train/valid/test text."""
    from rich.table import Table

    meta = gdata.prepare(opts.data, force=opts.force)
    table = Table(title=f"gla data: {meta['source']}")
    for col in ("split", "characters", "lines", "distinct characters", "<unk> (⁇)"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, info in meta["splits"].items():
        table.add_row(split, f"{info['chars']:,}", f"{info['lines']:,}", f"{info['distinct']:,}", f"{info['unk']:,}")
    textlab.show(table)
    return meta


def vocab(opts: VocabOptions) -> dict:
    """Build the character vocabulary (+ the reserved ⁇ for <unk>) and report its coverage."""
    from rich.table import Table

    voc, report = gdata.vocab_for(opts.data, opts.min_count)
    table = Table(title=f"gla character vocabulary: {len(voc)} entries (⁇ = <unk> and unknown characters)")
    for col in ("split", "characters", "covered", "<unk> share", "unknown kinds", "most frequent unknown"):
        table.add_column(col, justify="left" if col in ("split", "most frequent unknown") else "right")
    for split, info in report["splits"].items():
        top = " ".join(f"{ch!r}×{n}" for ch, n in info["unknown_top"][:5]) or "-"
        table.add_row(split, f"{info['chars']:,}", f"{info['coverage']:.4%}", f"{info['unk_share']:.3%}",
                      str(info["unknown_distinct"]), top)
    textlab.show(table)
    frequent = "".join(ch for ch in voc.itos[1:41])
    textlab.show(f"most frequent characters: {frequent!r}")
    return {"vocab_size": len(voc), "min_count": opts.min_count, **report}


# ============================================================================ train
def train(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train a character LM (GLA or the Transformer) with the core engine; best.pt by valid bpc."""
    from .train import train_lm

    return train_lm(run, opts)


# ============================================================================ eval, generate
def evaluate(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Loss (nats per character) and bits per character on the valid and/or test split."""
    from .evaluate import evaluate_artifact

    return evaluate_artifact(artifact, opts)


def generate(artifact: textlab.Artifact, opts: GenerateOptions) -> dict:
    """Continue a prompt, streaming the new characters (GLA: constant memory per character)."""
    from .generate import generate_text

    return generate_text(artifact, opts)


# ============================================================================ hooks
def _build_gla(config, vocab):
    from .model import build_gla

    return build_gla(config, vocab)


def _build_transformer(config, vocab):
    from .model import build_transformer

    return build_transformer(config, vocab)


@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name="gla",
        help="Gated Linear Attention character LM on a CPU (and a same-size Transformer to compare).",
        verbs={"prep": prep, "vocab": vocab, "train": train, "eval": evaluate, "generate": generate},
        monitor="valid/bpc",
        quickstart="textlab train gla --data sample",
    )]


@textlab.hookimpl
def textlab_models():
    return [
        textlab.ModelSpec(task="gla", name="gla", config=GLAConfig, build=_build_gla,
                          help="Gated Linear Attention (chunkwise training, recurrent generation)"),
        textlab.ModelSpec(task="gla", name="transformer", config=TransformerConfig, build=_build_transformer,
                          help="same-size softmax Transformer (RoPE, causal SDPA, KV-cache generation)"),
    ]


@textlab.hookimpl
def textlab_datasets():
    return [textlab.DatasetSpec(task="gla", name="sample", load=gdata.load_sample,
                                help="a generated WikiText-like text (160k/16k/16k characters)")]


@textlab.hookimpl
def textlab_metrics():
    return [textlab.MetricSpec(name="bpc", higher_is_better=False, task="gla",
                               help="bits per character: mean negative log-likelihood / ln 2")]
