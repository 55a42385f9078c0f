"""Scoring a character LM: bits per character over windows or streams, and the eval verb."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import textlab

from . import data as gdata
from .config import EvalOptions

LN2 = math.log(2.0)


@torch.no_grad()
def evaluate_ids(model, ids: torch.Tensor, seq_len: int, *, batch_size: int = 16, max_chars: int | None = None,
                 context: str = "window", device=None, shard: bool = False, bar=None) -> dict:
    """Mean loss (nats per character) and bits per character on a stream of ids.

    `context="window"`: non-overlapping windows of `seq_len` characters, each read from scratch
    (what both models can do). `context="stream"` (GLA): `batch_size` contiguous streams, read
    window by window with the recurrent state carried over, so every character sees all the text
    before it in its stream. `shard` spreads the windows over torchrun ranks.
    """
    device = device or next(model.parameters()).device
    n = len(ids) - 1 if max_chars is None else min(len(ids) - 1, max_chars)
    if n < 1:
        raise textlab.DataError("nothing to evaluate: the text has fewer than 2 characters")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0

    def nll(x, y, cache=None):
        out = model(x.to(device), cache=cache, return_cache=cache is not None or context == "stream")
        logits, cache = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.to(device).reshape(-1), reduction="sum")
        return float(loss), cache

    if context == "stream":
        B = max(1, min(batch_size, n // max(seq_len, 1) or 1))
        L = n // B
        streams = ids[: B * L + 1]
        base = torch.arange(B) * L
        cache = None
        for s in range(0, L, seq_len):
            w = min(seq_len, L - s)
            idx = base[:, None] + s + torch.arange(w + 1)
            win = streams[idx].long()
            loss, cache = nll(win[:, :-1], win[:, 1:], cache)
            total, count = total + loss, count + win[:, 1:].numel()
            if bar is not None:
                bar.advance(w * B)
    else:
        full = n // seq_len
        starts = torch.arange(full) * seq_len
        if shard:
            starts = textlab.distributed.shard(starts)
        for i in range(0, len(starts), batch_size):
            x, y = gdata.gather_windows(ids, starts[i:i + batch_size], seq_len)
            loss, _ = nll(x, y)
            total, count = total + loss, count + y.numel()
            if bar is not None:
                bar.advance(y.numel())
        rest = n - full * seq_len
        if rest and (not shard or textlab.distributed.rank() == 0):
            w = ids[full * seq_len: full * seq_len + rest + 1].long()[None]
            loss, _ = nll(w[:, :-1], w[:, 1:])
            total, count = total + loss, count + rest
            if bar is not None:
                bar.advance(rest)
        if shard:
            total, count = textlab.distributed.all_reduce_sum([total, float(count)])
            count = int(count)
    if was_training:
        model.train()
    loss = total / max(count, 1)
    return {"loss": loss, "bpc": loss / LN2, "chars": count}



def vocab_of(artifact: textlab.Artifact) -> textlab.Vocab:
    voc = artifact.vocab
    if not isinstance(voc, dict) or not voc.get("itos"):
        raise textlab.CheckpointError(f"{artifact.path} holds no character vocabulary: not a gla checkpoint")
    try:
        return textlab.Vocab.from_dict(voc)
    except textlab.DataError as exc:
        raise textlab.CheckpointError(f"{artifact.path}: {exc.message}") from None


def evaluate_artifact(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Loss (nats per character) and bits per character of a checkpoint on the valid and/or test split."""
    from rich.table import Table

    voc = vocab_of(artifact)
    extra = artifact.extra
    if opts.context == "stream" and artifact.model_name != "gla":
        raise textlab.UsageError("--context stream carries the recurrent state: only for --model gla runs")
    source, _ = artifact.data_source(opts.data)
    window = opts.seq_len or int(extra.get("seq_len") or 512)
    texts = gdata.load_texts(source, ("valid", "test") if opts.split == "both" else (opts.split,))
    model = artifact.build_model()
    results = {}
    for name, text in texts.items():
        ids = gdata.encode(text, voc)
        n = min(len(ids) - 1, opts.max_chars or len(ids))
        if opts.context == "stream":  # B streams of n // B characters each
            n -= n % max(1, min(opts.batch_size, n // window or 1))
        with textlab.progress(n, f"eval {name}", unit="char") as bar:
            res = evaluate_ids(model, ids, window, batch_size=opts.batch_size, max_chars=opts.max_chars,
                               context=opts.context, device=artifact.device, bar=bar)
        unknown = int((ids[: res["chars"] + 1] == voc.unk_id).sum())
        results[name] = {**res, "unk_chars": unknown}
    out = {"model": artifact.model_name, "data": source, "context": opts.context, "seq_len": window,
           "checkpoint": str(artifact.path), "splits": results}
    textlab.write_json(artifact.output_dir("eval", data=source) / "bpc.json", out)
    table = Table(title=f"{artifact.model_name} on {source} ({opts.context}, {window}-character windows)")
    for col in ("split", "characters", "loss (nats/char)", "bits per character"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, res in results.items():
        table.add_row(name, f"{res['chars']:,}", f"{res['loss']:.4f}", f"{res['bpc']:.4f}")
    textlab.show(table)
    return out
