"""The two models: a Gated Linear Attention LM and a same-size softmax Transformer.

Both are Llama-style ("Transformer++") pre-norm stacks over characters:

    h = x + Mixer(RMSNorm(x))          y = h + SwiGLU(RMSNorm(h))

embedding -> N blocks -> RMSNorm -> LM head (tied to the embedding by default, as in the
paper's 340M configuration). The mixer is the GLA layer (no position embedding at all) or
causal multi-head softmax attention with rotary position embeddings (PyTorch SDPA). With
expand_k = 0.5 and expand_v = 1 the GLA layer has the parameter budget of attention (≈ 4 d²
plus a tiny low-rank gate), so the two models have the same size.

Both models share one interface:
  forward(idx) -> logits                                  (training, evaluation)
  forward(idx, cache=..., return_cache=True) -> (logits, cache)
  prefill(idx, max_len) -> (logits, cache)                (generation: read the prompt)
  step(token, cache) -> (logits, cache)                   (generation: one new token)
For GLA the cache is one dk x dv state per layer and head: constant in the length. For the
Transformer it is a key/value cache that grows with the length.

The GLA operator of the chunk form (training, evaluation, prefill) is `chunk_kernel(device)`: the
flash-linear-attention package's Triton kernel (`fla.ops.gla.chunk_gla`) when that package is
installed and the tensors are on a CUDA device, this plugin's own `ops.gla_chunk` everywhere else.
Both compute the same function (tests/test_gla_ops.py compares them where fla can run).
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import GLAConfig, TransformerConfig
from .ops import gla_chunk, gla_parallel, gla_recurrent

KERNELS = ("fla", "textlab")  # fla's Triton kernel (CUDA), or this plugin's own chunk form (ops.gla_chunk)


_OPERATOR = {"chunk": gla_chunk}  # this plugin's chunk form, as the model calls it (see opaque_to_compiler)


def opaque_to_compiler() -> None:
    """Under `torch.compile`, run this plugin's chunk-form operator as one opaque call, as SDPA is
    for the Transformer: the compiler fuses the projections, gates, norms and MLP around it and does
    not unroll its loop over chunks (N = T / 64 copies of the state update). It imports
    torch._dynamo (a second or two), so only runs that compile call it (train.py, benchmarks/gla.py)."""
    _OPERATOR["chunk"] = torch.compiler.disable(gla_chunk)


def _fla_chunk_gla():
    """fla's `chunk_gla`, or None where the package (or Triton under it) cannot be imported."""
    try:
        from fla.ops.gla import chunk_gla
    except Exception:  # noqa: BLE001 - not installed, no Triton, no CUDA build: the own operator
        return None
    return chunk_gla


def chunk_kernel(device) -> str:
    """Which chunk-form GLA operator runs on `device`: "fla" on CUDA with fla installed, else "textlab"."""
    return "fla" if torch.device(device).type == "cuda" and _fla_chunk_gla() is not None else "textlab"


def fla_chunk(q, k, v, g, *, scale, initial_state=None, output_final_state=False):
    """fla's chunk_gla on time-major inputs q, k, g `[B, T, H, dk]`, v `[B, T, H, dv]` -> (o `[B, T, H, dv]`, state).

    fla's versions differ: up to 0.1 `head_first=True` was the default (time-major needs
    `head_first=False`); later versions take time-major inputs only and have no such argument.
    """
    import inspect

    chunk_gla = _fla_chunk_gla()
    kw = {"head_first": False} if "head_first" in inspect.signature(chunk_gla).parameters else {}
    return chunk_gla(q, k, v, g, scale=scale, initial_state=initial_state, output_final_state=output_final_state, **kw)


def swiglu_width(d: int, ratio: int = 4) -> int:
    """256 · ceil(int(d · ratio · 2/3) / 256): d = 256 -> 768."""
    return 256 * math.ceil(int(d * ratio * 2 / 3) / 256)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class SwiGLU(nn.Module):
    """W_down(silu(W_gate z) ⊙ W_up z), no biases; W_gate and W_up are the two halves of one
    matrix (`gate_up`), applied as two matmuls: splitting one product's output made the backward
    pass concatenate the two [B, T, hidden] gradients (7-15% of the block's time, eager)."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gate_up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, h = self.gate_up.weight, self.hidden
        return self.down(F.silu(F.linear(x, w[:h])) * F.linear(x, w[h:]))


# ============================================================================ GLA
class GLALayer(nn.Module):
    """The GLA token mixer (notes §3). q, k, v, the output gate r and the first gate stage
    share one input projection matrix (`proj`), applied slice by slice (`_project`)."""

    def __init__(self, cfg: GLAConfig):
        super().__init__()
        d, H = cfg.d_model, cfg.heads
        self.key_dim, self.value_dim = int(d * cfg.expand_k), int(d * cfg.expand_v)
        if self.key_dim % H or self.value_dim % H:
            raise ValueError(f"d_model {d} with expand_k {cfg.expand_k} does not split into {H} heads")
        self.H, self.dk, self.dv = H, self.key_dim // H, self.value_dim // H
        self.rank, self.normalizer = cfg.gate_low_rank, cfg.gate_logit_normalizer
        self.chunk_size, self.sub_chunk = cfg.chunk_size, cfg.sub_chunk
        self.eps = 1e-5
        self.splits = [self.key_dim, self.key_dim, self.value_dim, self.value_dim, self.rank]
        self.proj = nn.Linear(d, sum(self.splits), bias=False)  # q | k | v | r | gate stage 1
        self.gate_up = nn.Linear(self.rank, self.key_dim, bias=True)  # gate stage 2
        self.o_norm = nn.Parameter(torch.ones(self.dv))  # per-head RMSNorm, weight shared by heads
        self.out = nn.Linear(self.value_dim, d, bias=False)

    def log_gate(self, z: torch.Tensor) -> torch.Tensor:
        """g = log α = logsigmoid(z W_α2 + b) / τ  (<= 0)."""
        return F.logsigmoid(self.gate_up(z)) / self.normalizer

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, form: str = "chunk",
                return_state: bool = False):
        B, T, _ = x.shape
        if form == "recurrent" and T == 1:
            return self._step(x, state)
        q, k, v, r, z = self._project(x)
        g = self.log_gate(z)
        kw = dict(scale=self.dk ** -0.5, initial_state=state, output_final_state=return_state)
        if form == "chunk" and chunk_kernel(x.device) == "fla":  # time-major in and out
            q, k, g, v = (rearrange(t, "b t (h d) -> b t h d", h=self.H) for t in (q, k, g, v))
            o, state = fla_chunk(q, k, v, g, **kw)
        else:
            o, state = self._own_operator(form, q, k, v, g, kw)
        o = F.rms_norm(o, (self.dv,), self.o_norm, self.eps)
        o = o * F.silu(rearrange(r, "b t (h d) -> b t h d", h=self.H))
        return self.out(rearrange(o, "b t h d -> b t (h d)")), state

    def _project(self, x: torch.Tensor) -> list[torch.Tensor]:
        """q, k, v, r and the first gate stage: one matmul per slice of `proj`'s weight, so each comes
        out contiguous. The operator writes its gradients in that layout; split from one product,
        they were strided views, and the backward concatenated the five gradients (eager) or
        copied each to the views' strides (compiled: 0.8 s of a 7.8 s step at T = 512)."""
        out, at = [], 0
        for n in self.splits:
            out.append(F.linear(x, self.proj.weight[at:at + n]))
            at += n
        return out

    def _own_operator(self, form: str, q, k, v, g, kw: dict):
        """This plugin's operator in the form asked for -> (o [B, T, H, dv] time-major, state)."""
        q, k, g, v = (rearrange(t, "b t (h d) -> b h t d", h=self.H) for t in (q, k, g, v))
        if form == "chunk":
            o, state = _OPERATOR["chunk"](q, k, v, g, chunk_size=self.chunk_size, sub_chunk=self.sub_chunk, **kw)
        elif form == "recurrent":
            o, state = gla_recurrent(q, k, v, g, **kw)
        elif form == "parallel":
            o, state = gla_parallel(q, k, v, g, **kw)
        else:
            raise ValueError(f"unknown form {form!r}")
        return rearrange(o, "b h t d -> b t h d"), state

    def _step(self, x: torch.Tensor, state: torch.Tensor | None):
        """One token (x [B, 1, d]): the recurrent definition with as few operations as possible
        (decoding is dominated by per-operation overhead at batch 1, so plain reshapes here)."""
        B = x.shape[0]
        H, dk, dv = self.H, self.dk, self.dv
        q, k, v, r, z = self.proj(x[:, 0]).split(self.splits, -1)
        acc = torch.promote_types(x.dtype, torch.float32)
        kv = k.reshape(B, H, dk, 1).to(acc) * v.reshape(B, H, 1, dv).to(acc)  # k_tᵀ v_t
        if state is not None:  # S_t = Diag(α_t) S_{t-1} + k_tᵀ v_t
            kv = torch.addcmul(kv, state, self.log_gate(z).reshape(B, H, dk, 1).to(acc).exp())
        o = (q.reshape(B, H, 1, dk).to(acc) * self.dk ** -0.5) @ kv  # o_t = s q_t S_t
        o = F.rms_norm(o.reshape(B, H, dv).to(x.dtype), (dv,), self.o_norm, self.eps) * F.silu(r.reshape(B, H, dv))
        return self.out(o.reshape(B, 1, self.value_dim)), kv


class Block(nn.Module):
    def __init__(self, d: int, eps: float, mixer: nn.Module):
        super().__init__()
        self.norm1 = RMSNorm(d, eps)
        self.mixer = mixer
        self.norm2 = RMSNorm(d, eps)
        self.mlp = SwiGLU(d, swiglu_width(d))

    def forward(self, x, cache=None, **kw):
        h, cache = self.mixer(self.norm1(x), cache, **kw)
        x = x + h
        return x + self.mlp(self.norm2(x)), cache


class _LM(nn.Module):
    """Embedding, blocks (with the subclass's token mixer), final norm and head."""

    mixer: type

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, eps = cfg.d_model, cfg.norm_eps
        self.vocab_size = cfg.vocab_size
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.blocks = nn.ModuleList(Block(d, eps, self.mixer(cfg)) for _ in range(cfg.layers))
        self.norm = RMSNorm(d, eps)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        for m in self.modules():  # fla's init: N(0, 0.02) weights, zero biases, norm weights 1
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, cfg.init_std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, idx: torch.Tensor, cache: list | None = None, return_cache: bool = False, **kw):
        x = self.embed(idx)
        new = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, None if cache is None else cache[i], **self._block_kwargs(return_cache, **kw))
            new.append(c)
        logits = self.head(self.norm(x))
        return (logits, new) if return_cache else logits

    def _block_kwargs(self, return_cache: bool, **kw) -> dict:
        return kw

    prefill_kwargs: dict = {}
    step_kwargs: dict = {}

    def prefill(self, idx: torch.Tensor, max_len: int | None = None):
        """Read a prompt [B, T]; returns the last logits [B, V] and the generation cache."""
        kw = {k: (max_len if k == "max_len" else v) for k, v in self.prefill_kwargs.items()}
        logits, cache = self(idx, return_cache=True, **kw)
        return logits[:, -1], cache

    def step(self, token: torch.Tensor, cache: list):
        """One new token per sequence (ids [B]); returns its logits [B, V] and the updated cache."""
        logits, cache = self(token[:, None], cache, return_cache=True, **self.step_kwargs)
        return logits[:, -1], cache

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class GLALM(_LM):
    mixer = GLALayer
    # the prompt is read with the chunk form, each new token with one recurrent step per layer
    prefill_kwargs = {"form": "chunk"}
    step_kwargs = {"form": "recurrent"}

    def _block_kwargs(self, return_cache: bool, form: str = "chunk") -> dict:
        return {"form": form, "return_state": return_cache}


# ============================================================================ Transformer
class KVCache:
    """Preallocated keys and values [B, H, max_len, dh] and how many positions are filled."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, max_len: int):
        B, H, T, dh = k.shape
        self.k = k.new_empty(B, H, max(max_len, T), dh)
        self.v = v.new_empty(B, H, max(max_len, T), dh)
        self.k[:, :, :T] = k
        self.v[:, :, :T] = v
        self.length = T

    def append(self, k: torch.Tensor, v: torch.Tensor):
        T = k.shape[2]
        if self.length + T > self.k.shape[2]:  # grow (doubling) if the caller asked for too little
            grow = max(self.k.shape[2], T)
            self.k = torch.cat([self.k, self.k.new_empty(*self.k.shape[:2], grow, self.k.shape[3])], 2)
            self.v = torch.cat([self.v, self.v.new_empty(*self.v.shape[:2], grow, self.v.shape[3])], 2)
        self.k[:, :, self.length:self.length + T] = k
        self.v[:, :, self.length:self.length + T] = v
        self.length += T
        return self.k[:, :, :self.length], self.v[:, :, :self.length]

    def nbytes(self) -> int:
        return (self.k.numel() + self.v.numel()) * self.k.element_size()


_ROPE: dict = {}


def _rope_table(n: int, dh: int, base: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [>= n, dh/2], computed once and grown by doubling (decoding asks every step)."""
    key = (dh, base, str(device), dtype)
    cos, sin = _ROPE.get(key, (None, None))
    if cos is None or cos.shape[0] < n:
        size = max(n, 2 * (cos.shape[0] if cos is not None else 1024))
        with torch.inference_mode(False), torch.no_grad():  # usable later by training, even if made while generating
            inv = 1.0 / (base ** (torch.arange(0, dh, 2, dtype=torch.float64, device=device) / dh))
            ang = torch.arange(size, dtype=torch.float64, device=device)[:, None] * inv
            cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
        _ROPE[key] = (cos, sin)
    return cos, sin


def rope(x: torch.Tensor, pos0: int, base: float) -> torch.Tensor:
    """Rotary position embedding (rotate-half convention) for positions pos0 .. pos0 + T - 1."""
    T, dh = x.shape[-2], x.shape[-1]
    cos, sin = _rope_table(pos0 + T, dh, base, x.device, x.dtype)
    cos, sin = cos[pos0:pos0 + T], sin[pos0:pos0 + T]
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class Attention(nn.Module):
    """Causal multi-head softmax attention with RoPE, through `scaled_dot_product_attention`."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d, H = cfg.d_model, cfg.heads
        if d % H:
            raise ValueError(f"d_model {d} does not split into {H} heads")
        self.H, self.dh, self.base = H, d // H, cfg.rope_base
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, return_cache: bool = False,
                max_len: int | None = None):
        B, T, d = x.shape
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.H)
        pos0 = cache.length if cache is not None else 0
        q, k = rope(q, pos0, self.base), rope(k, pos0, self.base)
        if cache is not None:
            k, v = cache.append(k, v)
            mask = None
            if T > 1:  # several new queries after a filled cache: bottom-right aligned causal mask
                mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - T)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            if return_cache:
                cache = KVCache(k, v, max_len or T)
        return self.out(rearrange(o, "b h t d -> b t (h d)")), cache


class TransformerLM(_LM):
    mixer = Attention
    # the prompt is read with causal SDPA into a key/value cache preallocated for max_len positions
    prefill_kwargs = {"max_len": None}

    def _block_kwargs(self, return_cache: bool, max_len: int | None = None) -> dict:
        return {"return_cache": return_cache, "max_len": max_len}


def cache_nbytes(cache: list) -> int:
    """Bytes held by a generation cache (GLA states or KV caches)."""
    return sum(c.nbytes() if isinstance(c, KVCache) else c.numel() * c.element_size() for c in cache)


# ============================================================================ builders (ModelSpec.build)
def check_config(config) -> None:
    """Raise ValueError for sizes that do not split into heads (before any data is read)."""
    d, H = config.d_model, config.heads
    if isinstance(config, GLAConfig):
        kd, vd = int(d * config.expand_k), int(d * config.expand_v)
        if kd % H or vd % H or kd < H or vd < H:
            raise ValueError(f"d_model {d} with expand_k {config.expand_k} does not split into {H} heads")
        if config.chunk_size % config.sub_chunk:
            raise ValueError(f"chunk_size {config.chunk_size} is not a multiple of sub_chunk {config.sub_chunk}")
    elif d % H or (d // H) % 2:
        raise ValueError(f"d_model {d} does not split into {H} heads of even size")



def _vocab_size(config, vocab) -> int:
    if config.vocab_size:
        return config.vocab_size
    if isinstance(vocab, dict) and vocab.get("itos"):
        return len(vocab["itos"])
    raise ValueError("the model needs a vocabulary (or vocab_size in its config)")


def build_gla(config: GLAConfig, vocab) -> GLALM:
    check_config(config)
    config.vocab_size = _vocab_size(config, vocab)
    return GLALM(config)


def build_transformer(config: TransformerConfig, vocab) -> TransformerLM:
    check_config(config)
    config.vocab_size = _vocab_size(config, vocab)
    return TransformerLM(config)
