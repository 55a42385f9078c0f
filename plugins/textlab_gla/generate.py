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
