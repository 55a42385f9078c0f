"""A small recurrent-depth transformer (Huginn-style) and a non-looped baseline of the same size.

    ids -> embedding x sqrt(h) -> prelude P -> e
    s_0 ~ truncated normal, std sqrt(2/5)                      (random initial state)
    s_i = core(adapter(concat(s_{i-1}, e)))   i = 1..r         (the input is re-injected every step)
    logits = head(ln_f(coda(ln_f(s_r))))                       (one final norm, used twice; tied head)

Every block is a "sandwich" block, x' = n2(x + attn(n1 x)); x'' = n4(x' + mlp(n3 x')), with causal
attention, RoPE (base 50 000), a learnable bias on q and k only, and a gated-SiLU MLP.
Training draws r per optimizer step from a log-normal-Poisson distribution (`sample_depth`), runs
the first r - k iterations without gradients and backpropagates through the last k.

`decode` works on any state, so `trajectory` iterates once and decodes a copy of the state at each
requested step; `Plain` (the baseline) has the same interface and ignores the number of steps.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import RecrnnConfig


# ============================================================================ depth sampling
def sample_depth(mean: int, backprop: int, generator: torch.Generator, sigma: float = 0.5) -> tuple[int, int]:
    """Huginn's log-normal-Poisson: tau ~ N(log(mean) - sigma^2/2, sigma), r = Poisson(e^tau) + 1.

    Returns (n, k): n = max(r - backprop, 0) iterations without gradients, then k = min(backprop, r)
    with gradients. E[r] = mean + 1.
    """
    tau = torch.randn((), generator=generator, dtype=torch.float64) * sigma + (math.log(mean) - sigma**2 / 2)
    r = int(torch.poisson(torch.exp(tau).reshape(1), generator=generator).item()) + 1
    return max(r - backprop, 0), min(backprop, r)


def depth_generator(seed: int, step: int) -> torch.Generator:
    """The generator of optimizer step `step` of a run with seed `seed` (a rerun draws the same r)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + 514_229 + int(step)) % (2**63))


# ============================================================================ building blocks
def rope_tables(length: int, head_dim: int, base: float, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight, self.eps).to(x.dtype)


class Block(nn.Module):
    """Causal attention + gated-SiLU MLP, as a sandwich block (or pre-norm)."""

    def __init__(self, dim: int, heads: int, inner: int, sandwich: bool):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim {dim} must split into {heads} heads of even size")
        self.heads, self.sandwich = heads, sandwich
        self.n1, self.n3 = RMSNorm(dim), RMSNorm(dim)
        self.n2, self.n4 = (RMSNorm(dim), RMSNorm(dim)) if sandwich else (None, None)
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.qk_bias = nn.Parameter(torch.zeros(2 * dim))
        self.proj = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, 2 * inner, bias=False)
        self.mlp_proj = nn.Linear(inner, dim, bias=False)

    def attn(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        h = x.shape[-1]
        qkv = self.wqkv(x)
        qk = rearrange(qkv[..., : 2 * h] + self.qk_bias, "b t (two h d) -> two b h t d", two=2, h=self.heads)
        v = rearrange(qkv[..., 2 * h:], "b t (h d) -> b h t d", h=self.heads)
        q, k = apply_rope(qk, *rope)  # q and k rotated together: [2, b, heads, t, head_dim]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(rearrange(y, "b h t d -> b t (h d)"))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc(x).chunk(2, dim=-1)
        return self.mlp_proj(F.silu(gate) * value)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.n1(x), rope)
        if self.sandwich:
            x = self.n2(x)
        x = x + self.mlp(self.n3(x))
        if self.sandwich:
            x = self.n4(x)
        return x


def truncated_normal(shape: tuple, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Normal(0, std) truncated at +-3 std, by inverse CDF of a uniform draw. Unlike
    `nn.init.trunc_normal_` (rejection sampling) the first values do not depend on the shape."""
    lo = 0.5 * (1 + math.erf(-3 / math.sqrt(2)))
    u = torch.rand(shape, generator=generator, dtype=torch.float64) * (1 - 2 * lo) + lo
    return (torch.erfinv(2 * u - 1) * (std * math.sqrt(2))).float()


def init_weights(model: nn.Module, dim: int, effective_depth: float) -> None:
    """Huginn's "takase" init: std sqrt(2/(5h)), out-projections / sqrt(2 L_eff), truncated at 3 std."""
    std = math.sqrt(2 / (5 * dim))
    out_std = std / math.sqrt(2 * effective_depth)
    for name, p in model.named_parameters():
        if p.dim() < 2 or name.startswith("mix."):
            continue  # norm weights stay 1, q/k biases 0, the token mix keeps its own start
        s = out_std if name.endswith(("proj.weight", "mlp_proj.weight")) else std
        nn.init.trunc_normal_(p, 0.0, s, -3 * s, 3 * s)


# ============================================================================ the models
class TokenMix(nn.Module):
    """x_t + sum_j R_j x_{t-j} for j = 1..w-1: a causal convolution over the embeddings whose taps
    start as random orthogonal maps, so each neighbour lands in its own recoverable subspace (with
    equal taps, a position could not tell its own token from the one two places back). An option,
    not part of Huginn: a position sees its neighbours without an attention layer having to learn
    to look there first ("smeared keys", Canon layers)."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.width = width
        self.conv = nn.Conv1d(dim, dim, width, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()  # the last tap (the position itself) stays 0: x_t enters through the residual
            for j in range(width - 1):
                nn.init.orthogonal_(self.conv.weight[:, :, j])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pad(x.transpose(1, 2), (self.width - 1, 0))
        return x + self.conv(y).transpose(1, 2)


class _Base(nn.Module):
    """What both models share: embedding (x sqrt h), tied head, RoPE tables, readout."""

    looped = False

    def __init__(self, config: RecrnnConfig):
        super().__init__()
        self.config = config
        self.emb = nn.Embedding(config.vocab_size, config.dim)
        self.ln_f = RMSNorm(config.dim)
        self.mix = TokenMix(config.dim, config.token_mix) if config.token_mix else None
        self._rope: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def rope(self, length: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        key = (length, str(device))
        if key not in self._rope:
            self._rope[key] = rope_tables(length, self.config.dim // self.config.heads, self.config.rope_base, device)
        return self._rope[key]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids) * math.sqrt(self.config.dim)
        return self.mix(x) if self.mix is not None else x

    def head(self, x: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        """Tied LM head after the final norm; only at `positions` (one per row) when given."""
        if positions is not None:
            x = x[torch.arange(x.shape[0], device=x.device), positions]
        return self.ln_f(x) @ self.emb.weight.t()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class RecurrentDepth(_Base):
    """Prelude, looped core with a concat adapter, coda (see the module docstring)."""

    looped = True

    def __init__(self, config: RecrnnConfig):
        super().__init__(config)
        c = config
        inner = int(round(c.mlp_ratio * c.dim))
        sandwich = c.norm == "sandwich"
        self.prelude = nn.ModuleList(Block(c.dim, c.heads, inner, sandwich) for _ in range(c.prelude))
        self.core = nn.ModuleList(Block(c.dim, c.heads, inner, sandwich) for _ in range(c.core))
        self.coda = nn.ModuleList(Block(c.dim, c.heads, inner, sandwich) for _ in range(c.coda))
        self.adapter = nn.Linear(2 * c.dim, c.dim, bias=False) if c.injection == "concat" else None
        init_weights(self, c.dim, c.prelude + c.coda + c.core * c.mean_recurrence)

    # -- the pieces, usable one by one (eval iterates and decodes copies)
    def encode(self, ids: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        rope = self.rope(ids.shape[1], ids.device)
        x = self.embed(ids)
        for block in self.prelude:
            x = block(x, rope)
        return x, rope

    def initial_state(self, e: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Truncated normal, effective std sqrt(2/5) x state_scale. Drawn position-major, so a
        position's s_0 does not depend on how long the (padded) sequence is."""
        std = math.sqrt(2 / 5) * self.config.state_scale
        b, t, h = e.shape
        if std == 0:
            return torch.zeros_like(e)
        return (truncated_normal((t, b, h), std, generator).transpose(0, 1)).to(e.device, e.dtype)

    def step(self, s: torch.Tensor, e: torch.Tensor, rope: tuple) -> torch.Tensor:
        x = self.adapter(torch.cat([s, e], dim=-1)) if self.adapter is not None else s + e
        for block in self.core:
            x = block(x, rope)
        return x

    def decode(self, s: torch.Tensor, rope: tuple, positions: torch.Tensor | None = None) -> torch.Tensor:
        x = self.ln_f(s) if self.config.coda_norm else s
        for block in self.coda:
            x = block(x, rope)
        return self.head(x, positions)

    # -- training / fixed-depth forward
    def forward(self, ids: torch.Tensor, steps: int | tuple[int, int] | None = None,
                positions: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Logits after `steps` iterations: an int r (all without gradients when not training... see
        below) or a pair (n, k): n iterations without gradients, then k with gradients.

        An int r means (0, r) in training mode (gradients through every step) and is the plain
        inference path otherwise; None means the training mean.
        """
        if steps is None:
            steps = self.config.mean_recurrence
        n, k = (0, steps) if isinstance(steps, int) else steps
        e, rope = self.encode(ids)
        s = self.initial_state(e, generator)
        if n:
            with torch.no_grad():
                for _ in range(n):
                    s = self.step(s, e, rope)
        for _ in range(k):
            s = self.step(s, e, rope)
        return self.decode(s, rope, positions)

    @torch.no_grad()
    def trajectory(self, ids: torch.Tensor, steps: Sequence[int], positions: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, every: bool = False) -> Iterable[tuple[int, torch.Tensor]]:
        """One pass: iterate up to max(steps) and yield (step, logits of a copy of the state) at each
        requested step (at every step with `every=True`)."""
        wanted = set(steps)
        e, rope = self.encode(ids)
        s = self.initial_state(e, generator)
        for i in range(1, max(steps) + 1):
            s = self.step(s, e, rope)
            if every or i in wanted:
                yield i, self.decode(s.clone(), rope, positions)


class Plain(_Base):
    """The non-looped baseline: prelude + core + coda layers stacked once, no adapter, MLP widened
    so that the parameter count matches `RecurrentDepth` of the same config."""

    def __init__(self, config: RecrnnConfig):
        super().__init__(config)
        c = config
        layers = c.prelude + c.core + c.coda
        inner = matched_inner(c)
        self.blocks = nn.ModuleList(Block(c.dim, c.heads, inner, c.norm == "sandwich") for _ in range(layers))
        init_weights(self, c.dim, layers)

    def forward(self, ids: torch.Tensor, steps: Any = None, positions: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        rope = self.rope(ids.shape[1], ids.device)
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, rope)
        return self.head(x, positions)

    @torch.no_grad()
    def trajectory(self, ids: torch.Tensor, steps: Sequence[int], positions: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, every: bool = False) -> Iterable[tuple[int, torch.Tensor]]:
        logits = self.forward(ids, positions=positions)
        for i in range(1, max(steps) + 1):
            if every or i in set(steps):
                yield i, logits


def matched_inner(c: RecrnnConfig) -> int:
    """MLP width of the baseline whose parameter count is closest to the looped model's."""
    layers = c.prelude + c.core + c.coda
    inner = int(round(c.mlp_ratio * c.dim))
    extra = 2 * c.dim * c.dim if c.injection == "concat" else 0  # the adapter the baseline lacks
    return inner + int(round(extra / (3 * c.dim * layers)))


def build_recurrent(config: RecrnnConfig, vocab: Any = None) -> RecurrentDepth:
    return RecurrentDepth(_checked(config))


def build_plain(config: RecrnnConfig, vocab: Any = None) -> Plain:
    return Plain(_checked(config))


def _checked(config: RecrnnConfig) -> RecrnnConfig:
    from textlab import UsageError

    if config.injection not in ("concat", "add"):
        raise UsageError(f"injection must be concat or add, not {config.injection!r}")
    if config.norm not in ("sandwich", "prenorm"):
        raise UsageError(f"norm must be sandwich or prenorm, not {config.norm!r}")
    if config.dim % config.heads or (config.dim // config.heads) % 2:
        raise UsageError(f"--dim {config.dim} must split into --heads {config.heads} heads of even size")
    if config.mean_recurrence < 1 or config.backprop_depth < 1:
        raise UsageError("--mean-recurrence and --backprop-depth must be at least 1")
    return config


Mode = Literal["full", "single"]


def losses(model: nn.Module, seq: torch.Tensor, length: torch.Tensor, mode: str, pad_id: int,
           steps: Any, generator: torch.Generator | None = None, aux: torch.Tensor | None = None,
           aux_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Loss of one batch, and the answer loss / accuracy (comparable between the two modes).

    full:   next-token cross-entropy on every non-pad position of input + answer + </a>
    single: cross-entropy of the answer token only; the head runs at the answer position only
    aux (single mode only): plus `aux_weight` x cross-entropy of the per-statement targets
    (ids at `;` positions, -100 elsewhere); the head then runs at every position.
    """
    rows = torch.arange(seq.shape[0], device=seq.device)
    pos = length - 1  # the position that predicts the answer
    answer = seq[rows, length]
    out: dict[str, torch.Tensor] = {}
    if mode == "single":
        width = int(length.max())
        if aux is None:
            logits = model(seq[:, :width], steps, positions=pos, generator=generator)
            ans_logits = logits
        else:
            logits = model(seq[:, :width], steps, generator=generator)
            ans_logits = logits[rows, pos]
            target = aux[:, :width]
            aux_loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
            hit = (logits.argmax(-1) == target)[target >= 0]
            out = {"aux_loss": aux_loss.detach(), "aux_accuracy": hit.float().mean()}
        ans_loss = F.cross_entropy(ans_logits, answer)
        loss = ans_loss if aux is None else ans_loss + aux_weight * aux_loss
    else:
        inp, tgt = seq[:, :-1], seq[:, 1:]
        logits = model(inp, steps, generator=generator)
        mask = tgt != pad_id
        loss = F.cross_entropy(logits[mask], tgt[mask])
        ans_logits = logits[rows, pos]
        ans_loss = F.cross_entropy(ans_logits, answer)
    correct = (ans_logits.argmax(-1) == answer).float()
    return {"loss": loss, "answer_loss": ans_loss.detach(), "answer_accuracy": correct.mean(), **out}


def load_matched(model: nn.Module, artifact: Any, vocab: list[str]) -> int:
    """Load `artifact`'s weights into `model` (same sizes, possibly another vocabulary): embedding rows
    are matched by token, tokens the checkpoint lacks keep their fresh initialisation. Returns how
    many tokens were carried over."""
    import textlab

    state = dict(artifact.state_dict)
    old_vocab = list(artifact.vocab or [])
    key = "emb.weight"
    if key not in state or len(old_vocab) != state[key].shape[0]:
        raise textlab.CheckpointError(f"{artifact.path}: no embedding matching its vocabulary")
    old_index = {t: i for i, t in enumerate(old_vocab)}
    rows = model.state_dict()[key].clone()
    pairs = [(i, old_index[t]) for i, t in enumerate(vocab) if t in old_index]
    if pairs:
        new_ids, old_ids = map(torch.tensor, zip(*pairs))
        rows[new_ids] = state[key][old_ids].to(rows.dtype)
    state[key] = rows
    textlab.load_weights(model, state, source=artifact.path)
    return len(pairs)
