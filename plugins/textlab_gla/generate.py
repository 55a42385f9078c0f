"""Sampling text from either model: prefill the prompt once, then one step per new character.

GLA reads the prompt with the chunk form and keeps one dk x dv state per layer and head, so a
new character costs the same time and memory at position 10 and at position 100,000. The
Transformer reads the prompt with causal SDPA and keeps a key/value cache (preallocated for
prompt + new characters) that every new character attends over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

import textlab

from . import data as gdata
from .config import GenerateOptions
from .model import cache_nbytes


@dataclass
class GenerationStats:
    prompt_chars: int
    new_chars: int = 0
    prefill_s: float = 0.0
    step_times: list[float] = field(default_factory=list)  # seconds per new character
    cache_bytes: int = 0

    @property
    def decode_s(self) -> float:
        return sum(self.step_times)

    def rate(self, first: int | None = None, last: int | None = None) -> float | None:
        """New characters per second, over all steps or the first/last N."""
        times = self.step_times
        if first:
            times = times[:first]
        if last:
            times = times[-last:]
        return len(times) / sum(times) if times and sum(times) > 0 else None


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Next ids [B] from logits [B, V]: greedy at temperature 0, else softmax(logits / T) over
    the `top_k` most likely (0 = all)."""
    logits = logits.float()
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate_ids(model, prompt: torch.Tensor, max_new: int, *, temperature: float = 0.8, top_k: int = 20,
                 generator: torch.Generator | None = None, on_token: Callable[[int], None] | None = None,
                 stop: Callable[[], bool] | None = None) -> tuple[list[int], GenerationStats]:
    """Generate up to `max_new` ids after `prompt` (1-D ids). `on_token(id)` is called as each
    id is drawn (streaming); `stop()` may end early (Ctrl-C)."""
    model.eval()
    stats = GenerationStats(prompt_chars=int(prompt.numel()))
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    logits, cache = model.prefill(prompt[None].to(device), max_len=prompt.numel() + max_new)
    stats.prefill_s = time.perf_counter() - t0
    out: list[int] = []
    for i in range(max_new):
        t = time.perf_counter()
        token = sample_next(logits, temperature, top_k, generator)
        out.append(int(token[0]))
        if on_token is not None:
            on_token(out[-1])
        logits, cache = model.step(token, cache)  # also after the last one: equal cost per character
        stats.step_times.append(time.perf_counter() - t)
        if stop is not None and stop():
            break
    stats.new_chars = len(out)
    stats.cache_bytes = cache_nbytes(cache)
    return out, stats


def generate_text(artifact: textlab.Artifact, opts: GenerateOptions) -> dict:
    """The generate verb: continue a prompt, streaming the new characters to stdout."""
    import sys

    from textlab.console import json_mode

    from .evaluate import vocab_of

    voc = vocab_of(artifact)
    text = gdata.normalize(opts.prompt) or "\n"
    missing = gdata.unknown_chars(text, voc)
    if missing and opts.unknown == "error":
        shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise textlab.UsageError(f"the prompt has {len(missing)} character(s) the model does not know: {shown}",
                                 hint="use --unknown unk to read them as ⁇ or --unknown drop to remove them")
    if missing and opts.unknown == "drop":
        text = "".join(ch for ch in text if ch in voc.stoi) or "\n"
    ids = gdata.encode(text, voc).long()
    model = artifact.build_model()
    gen = torch.Generator().manual_seed(opts.sampling_seed) if opts.sampling_seed is not None else None
    streaming = not json_mode()  # under --json the text comes back in the JSON document only
    if streaming:
        sys.stdout.write(gdata.decode(ids.tolist(), voc))
        sys.stdout.flush()

    def emit(i: int) -> None:
        if streaming:
            sys.stdout.write(gdata.decode([i], voc))
            sys.stdout.flush()

    new, stats = generate_ids(model, ids, opts.max_new, temperature=opts.temperature, top_k=opts.top_k,
                              generator=gen, on_token=emit)
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
