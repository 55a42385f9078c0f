"""The `gla` task: hooks and verbs (prep, vocab, train, eval, generate).

A character-level language model with Gated Linear Attention (Yang et al., ICML 2024), and a
same-size softmax Transformer to compare with. The verbs only parse options and call plain
functions of data.py, train.py and generate.py. Light to import: torch is imported inside the
functions, so `textlab --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import textlab
from textlab import Argument, Option

from . import data as gdata
from .config import GLAConfig, TransformerConfig

DATA_HELP = ("'sample', a local folder or text file (e.g. ../shared/data/wikitext), or a Hugging Face "
             "dataset name:config with a 'text' column.")


# ============================================================================ prep, vocab
def prep(*,
         data: Annotated[str, Option(help=DATA_HELP)] = gdata.DEFAULT_DATA,
         force: Annotated[bool, Option(help="Read the source again even if it is cached.")] = False) -> dict:
    """Read, normalise (CRLF, NFC, <unk> -> ⁇) and cache the train/valid/test text."""
    from rich.table import Table

    meta = gdata.prepare(data, force=force)
    table = Table(title=f"gla data: {meta['source']}")
    for col in ("split", "characters", "lines", "distinct characters", "<unk> (⁇)"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, info in meta["splits"].items():
        table.add_row(split, f"{info['chars']:,}", f"{info['lines']:,}", f"{info['distinct']:,}", f"{info['unk']:,}")
    textlab.show(table)
    return meta


def vocab(*,
          data: Annotated[str, Option(help=DATA_HELP)] = gdata.DEFAULT_DATA,
          min_count: Annotated[int, Option(min=1, help="Keep characters seen at least this often in train; "
                                                       "the rest read as ⁇.")] = 1) -> dict:
    """Build the character vocabulary (+ the reserved ⁇ for <unk>) and report its coverage."""
    from rich.table import Table

    voc, report = gdata.vocab_for(data, min_count)
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
    return {"vocab_size": len(voc), "min_count": min_count, **report}


# ============================================================================ train
def train(run: textlab.Run, *,
          data: Annotated[str, Option(help=DATA_HELP)] = gdata.DEFAULT_DATA,
          model: Annotated[str, Option(help="gla, or transformer (same size, softmax attention) to compare.")] = "gla",
          d_model: Annotated[int, Option(min=8, help="Model width.")] = 256,
          layers: Annotated[int, Option(min=1, help="Number of blocks.")] = 4,
          heads: Annotated[int, Option(min=1, help="Attention / GLA heads.")] = 4,
          seq_len: Annotated[int, Option(min=2, help="Characters per training window.")] = 512,
          batch_size: Annotated[int, Option(min=1, help="Windows per step.")] = 16,
          lr: Annotated[float, Option(min=0.0, help="Peak learning rate (AdamW).")] = 1e-3,
          warmup: Annotated[int, Option(min=0, help="Linear warm-up steps.")] = 100,
          min_lr_ratio: Annotated[float, Option(min=0.0, max=1.0, help="Cosine decay ends at this share of --lr.")] = 0.1,
          weight_decay: Annotated[float, Option(min=0.0, help="AdamW weight decay (matrices only).")] = 0.1,
          grad_clip: Annotated[float, Option(min=0.0, help="Gradient-norm clipping (0: off).")] = 1.0,
          epochs: Annotated[Optional[int], Option(min=1, help="Passes over the train text (default 1, or "
                                                               "unbounded with --steps / --time-budget).")] = None,
          steps: Annotated[Optional[int], Option(min=1, help="Stop after this many optimizer steps.")] = None,
          time_budget: Annotated[Optional[str], Option(help="Stop after this wall-clock time: 90s, 20m, 1h30m. "
                                                            "The learning-rate decay follows it.")] = None,
          eval_every: Annotated[int, Option(min=1, help="Evaluate on valid every N steps (and at the end).")] = 200,
          eval_chars: Annotated[int, Option(min=2, help="Valid characters scored at each evaluation "
                                                        "('textlab eval' scores all).")] = 131072,
          min_count: Annotated[int, Option(min=1, help="Vocabulary: keep characters seen this often.")] = 1,
          chunk_size: Annotated[int, Option(min=1, help="GLA chunk length C of the chunkwise form.")] = 64,
          sub_chunk: Annotated[int, Option(min=1, help="GLA sub-chunk length c (secondary-level chunking).")] = 16,
          tie_embeddings: Annotated[bool, Option(help="Share the embedding and output matrices.")] = True) -> dict:
    """Train a character LM (GLA or the Transformer) with the shared loop; best.pt by valid bpc."""
    from .train import train_lm

    return train_lm(run, data=data, model=model, d_model=d_model, layers=layers, heads=heads, seq_len=seq_len,
                    batch_size=batch_size, lr=lr, warmup=warmup, min_lr_ratio=min_lr_ratio,
                    weight_decay=weight_decay, grad_clip=grad_clip, epochs=epochs, steps=steps,
                    time_budget=time_budget, eval_every=eval_every, eval_chars=eval_chars, min_count=min_count,
                    chunk_size=chunk_size, sub_chunk=sub_chunk, tie_embeddings=tie_embeddings)


# ============================================================================ eval, generate
def _vocab_of(artifact: textlab.Artifact) -> textlab.Vocab:
    voc = artifact.vocab
    if not isinstance(voc, dict) or not voc.get("itos"):
        raise textlab.CheckpointError(f"{artifact.path} holds no character vocabulary: not a gla checkpoint")
    try:
        return textlab.Vocab.from_dict(voc)
    except textlab.DataError as exc:
        raise textlab.CheckpointError(f"{artifact.path}: {exc.message}") from None


def _device(artifact: textlab.Artifact):
    import torch

    device = getattr(artifact, "device", None)  # set by the CLI (--device); plain calls: CPU
    return device if isinstance(device, torch.device) else torch.device("cpu")


def _model_of(artifact: textlab.Artifact):
    return artifact.build_model().to(_device(artifact))


def evaluate(artifact: textlab.Artifact, *,
             split: Annotated[Literal["valid", "test", "both"], Option(help="Which split to score.")] = "both",
             data: Annotated[Optional[str], Option(help="Data to score (default: what the run trained on). "
                                                        + DATA_HELP)] = None,
             context: Annotated[Literal["window", "stream"], Option(
                 help="window: non-overlapping windows of --seq-len, each from scratch (both models). "
                      "stream: GLA only, the state carried across windows.")] = "window",
             seq_len: Annotated[Optional[int], Option(min=2, help="Window length (default: the training one).")] = None,
             batch_size: Annotated[int, Option(min=1, help="Windows (or streams) per forward pass.")] = 16,
             max_chars: Annotated[Optional[int], Option(min=2, help="Score only the first N characters.")] = None) -> dict:
    """Loss (nats per character) and bits per character on the valid and/or test split."""
    from rich.table import Table

    from .train import evaluate_ids

    voc = _vocab_of(artifact)
    extra = artifact.extra
    if context == "stream" and artifact.model_name != "gla":
        raise textlab.UsageError("--context stream carries the recurrent state: only for --model gla runs")
    source = data or extra.get("data")
    if not source:
        raise textlab.UsageError("this checkpoint does not say which data it trained on: pass --data")
    window = seq_len or int(extra.get("seq_len") or 512)
    texts = gdata.load_texts(source, ("valid", "test") if split == "both" else (split,))
    model = _model_of(artifact)
    results = {}
    for name, text in texts.items():
        ids = gdata.encode(text, voc)
        n = min(len(ids) - 1, max_chars or len(ids))
        if context == "stream":  # B streams of n // B characters each
            n -= n % max(1, min(batch_size, n // window or 1))
        with textlab.progress(n, f"eval {name}", unit="char") as bar:
            res = evaluate_ids(model, ids, window, batch_size=batch_size, max_chars=max_chars, context=context,
                               device=_device(artifact), bar=bar)
        unknown = int((ids[: res["chars"] + 1] == voc.unk_id).sum())
        results[name] = {**res, "unk_chars": unknown}
    out = {"model": artifact.model_name, "data": source, "context": context, "seq_len": window,
           "checkpoint": str(artifact.path), "splits": results}
    textlab.write_json(artifact.output_dir("eval", data=source) / "bpc.json", out)
    table = Table(title=f"{artifact.model_name} on {source} ({context}, {window}-character windows)")
    for col in ("split", "characters", "loss (nats/char)", "bits per character"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, res in results.items():
        table.add_row(name, f"{res['chars']:,}", f"{res['loss']:.4f}", f"{res['bpc']:.4f}")
    textlab.show(table)
    return out


def generate(artifact: textlab.Artifact,
             prompt: Annotated[str, Argument(help="Text to continue (empty: start from a new line).")] = "", *,
             max_new: Annotated[int, Option(min=1, help="Characters to generate.")] = 500,
             temperature: Annotated[float, Option(min=0.0, help="Sampling temperature (0: greedy).")] = 0.8,
             top_k: Annotated[int, Option(min=0, help="Sample among the k most likely characters (0: all).")] = 20,
             sampling_seed: Annotated[Optional[int], Option(help="Seed for reproducible samples.")] = None,
             unknown: Annotated[Literal["error", "unk", "drop"], Option(
                 help="Prompt characters outside the vocabulary: stop with an error, read them as ⁇, "
                      "or drop them.")] = "error") -> dict:
    """Continue a prompt, streaming the new characters (GLA: constant memory per character)."""
    import sys

    import torch
    from textlab.console import json_mode

    from .generate import generate_ids

    voc = _vocab_of(artifact)
    text = gdata.normalize(prompt) or "\n"
    missing = gdata.unknown_chars(text, voc)
    if missing and unknown == "error":
        shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise textlab.UsageError(f"the prompt has {len(missing)} character(s) the model does not know: {shown}",
                                 hint="use --unknown unk to read them as ⁇ or --unknown drop to remove them")
    if missing and unknown == "drop":
        text = "".join(ch for ch in text if ch in voc.stoi) or "\n"
    ids = gdata.encode(text, voc).long()
    model = _model_of(artifact)
    gen = torch.Generator().manual_seed(sampling_seed) if sampling_seed is not None else None
    streaming = not json_mode()  # under --json the text comes back in the JSON document only
    if streaming:
        sys.stdout.write(gdata.decode(ids.tolist(), voc))
        sys.stdout.flush()

    def emit(i: int) -> None:
        if streaming:
            sys.stdout.write(gdata.decode([i], voc))
            sys.stdout.flush()

    new, stats = generate_ids(model, ids, max_new, temperature=temperature, top_k=top_k, generator=gen,
                              on_token=emit)
    if streaming:
        sys.stdout.write("\n")
        sys.stdout.flush()
    rate = stats.rate()
    textlab.status(f"{stats.new_chars} characters in {stats.decode_s:.2f} s ({rate or 0:,.0f} characters/s); "
                   f"prompt of {stats.prompt_chars} read in {stats.prefill_s * 1000:.0f} ms; "
                   f"{'state' if artifact.model_name == 'gla' else 'KV cache'} {format_bytes(stats.cache_bytes)}")
    return {"model": artifact.model_name, "prompt": gdata.decode(ids.tolist(), voc), "text": gdata.decode(new, voc),
            "chars_per_s": rate, "prefill_ms": stats.prefill_s * 1000, "cache_bytes": stats.cache_bytes}


def format_bytes(n: int) -> str:
    """1,000 bytes, 12.5 KiB, 3.2 MiB: never '0 KiB' for a small state."""
    if n < 1024:
        return f"{n:,} bytes"
    if n < 1024 ** 2:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / 1024 ** 2:,.1f} MiB"


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
