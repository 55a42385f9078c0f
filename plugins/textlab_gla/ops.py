"""The gated linear attention operator in three equivalent forms (plain PyTorch, CPU-friendly).

Per head, with row vectors q_t, k_t (dk), v_t (dv), log forget gate g_t = log α_t <= 0 (dk)
and state S_t (dk x dv):

    S_t = Diag(exp(g_t)) S_{t-1} + k_tᵀ v_t          o_t = (scale · q_t) S_t

The state is updated before it is read, so o_t sees its own token; key j is decayed by the
gates of steps j+1 .. t, never by its own gate.

* `gla_recurrent`: the definition, a loop over time (tests, and one decoding step: `gla_step`).
* `gla_parallel`: the closed form, O(T²·dk) memory; tests only.
* `gla_chunk`: the chunkwise-parallel form used for training and prefill (see below).

All take `q, k, g: [B, H, T, dk]`, `v: [B, H, T, dv]`, an optional `initial_state [B, H, dk, dv]`
and return `(o [B, H, T, dv], final_state or None)`. `scale` (default dk^-1/2) multiplies q.
Cumulative log-gates and states are kept in float32 (float64 stays float64).

Chunk form. The sequence is cut into chunks of C tokens; `Bc` is the cumulative log-gate
restarted at each chunk start (non-increasing), `Bl` its last row.

1. Inter-chunk: a loop over the T/C chunks carries the state,
   `S[n+1] = exp(Bl) ⊙ S[n] + (K ⊙ exp(Bl - Bc))ᵀ V`, and `O_inter = (Q ⊙ exp(Bc)) S[n]`.
   Every exponent is <= 0.
2. Intra-chunk: `A[i, j] = Σ_c q_ic k_jc exp(Bc_ic - Bc_jc)` for j <= i, then `O += A V`.
   a. A chunk that forgets less than `limit` nats in every channel (≈31 in float32, 248 in
      float64) uses one matmul, `A = tril((Q ⊙ exp(Bc)) (K ⊙ exp(-Bc))ᵀ)`: both factors stay
      within exp(±limit), so nothing overflows or underflows and the product is exact. This is
      what ordinary gates do, and it is the training hot path (`_FastChunk`, backward by hand).
   b. A chunk that forgets more (g is unbounded below) uses the paper's secondary-level
      chunking (`_subchunk_intra`): sub-chunks of c tokens, each read relative to r_a, the
      cumulative gate just before it; earlier sub-chunks reach it through their states (keys
      decayed to the end of their sub-chunk, then from sub-chunk to sub-chunk: exponents <= 0).
      The diagonal c x c blocks use one matmul while the sub-chunk forgets less than `limit`,
      else the elementwise log-space form with the exponent masked to -inf before `exp` (never
      exponentiating a positive number). Correct for any gate.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _outside_autocast(fn):
    """Run an operator with autocast off: each computes in float32 or wider (`_acc_dtype`) by design,
    and under `--precision bf16/fp16` autocast would turn its matmuls back to the low precision
    (the exponentials of cumulative gates need float32; the chunk form's hand-written backward
    would meet tensors of two dtypes). The output keeps the inputs' dtype, as without autocast."""

    @functools.wraps(fn)
    def run(q, *args, **kwargs):
        if torch.is_autocast_enabled(q.device.type):
            with torch.autocast(q.device.type, enabled=False):
                return fn(q, *args, **kwargs)
        return fn(q, *args, **kwargs)

    return run


def safe_limit(dtype: torch.dtype) -> float:
    """Largest exponent the factorised diagonal blocks may use: ~31 in float32, ~248 in float64."""
    return 0.35 * math.log(torch.finfo(dtype).max)


# ----------------------------------------------------------------------------- recurrent form
@_outside_autocast
def gla_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, state: torch.Tensor | None,
             scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One recurrent step: q, k, g `[B, H, dk]`, v `[B, H, dv]`, state `[B, H, dk, dv]` (None = zeros)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    acc = _acc_dtype(q.dtype)
    kv = k.to(acc).unsqueeze(-1) * v.to(acc).unsqueeze(-2)
    state = kv if state is None else state * g.to(acc).exp().unsqueeze(-1) + kv
    o = ((q.to(acc) * scale).unsqueeze(-2) @ state).squeeze(-2)
    return o.to(v.dtype), state


@_outside_autocast
def gla_recurrent(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False):
    """The definition: a Python loop over time."""
    state = None if initial_state is None else initial_state.to(_acc_dtype(q.dtype))
    outs = []
    for t in range(q.shape[2]):
        o, state = gla_step(q[:, :, t], k[:, :, t], v[:, :, t], g[:, :, t], state, scale)
        outs.append(o)
    if state is None:  # T == 0
        B, H, _, K = q.shape
        state = q.new_zeros(B, H, K, v.shape[-1], dtype=_acc_dtype(q.dtype))
    return torch.stack(outs, 2) if outs else v.clone(), (state if output_final_state else None)


# ----------------------------------------------------------------------------- parallel form
@_outside_autocast
def gla_parallel(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False):
    """Closed form `o_t = Σ_{j<=t} [Σ_c q_tc k_jc exp(G_tc - G_jc)] v_j` (+ the initial state's share).

    The exponent G_t - G_j is summed directly from the gates j+1..t (no difference of two
    large cumulative sums) and masked to -inf above the diagonal before `exp`.
    """
    B, H, T, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    acc = _acc_dtype(q.dtype)
    q, k, v, g = (x.to(acc) for x in (q, k, v, g))
    q = q * scale
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # [t, s]: s <= t
    M = g.unsqueeze(2).expand(B, H, T, T, K).masked_fill(~causal[..., None], 0.0)  # M[t, s] = g_s (s <= t)
    seg = M.flip(-2).cumsum(-2).flip(-2) - M  # seg[t, j] = Σ_{j<s<=t} g_s
    seg = seg.masked_fill(~causal[..., None], float("-inf"))
    A = (q.unsqueeze(3) * k.unsqueeze(2) * seg.exp()).sum(-1)  # [B, H, t, j]
    o = A @ v
    G = g.cumsum(2)
    if initial_state is not None:
        o = o + (q * G.exp()) @ initial_state.to(acc)
    final = None
    if output_final_state:
        tail = g.flip(2).cumsum(2).flip(2) - g  # Σ_{s>j} g_s
        final = (k * tail.exp()).transpose(-1, -2) @ v
        if initial_state is not None:
            final = final + G[:, :, -1].exp().unsqueeze(-1) * initial_state.to(acc)
    return o, final


# ----------------------------------------------------------------------------- chunk form
@_outside_autocast
def gla_chunk(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False,
              chunk_size: int = 64, sub_chunk: int = 16, path: str = "auto"):
    """Chunkwise-parallel form (see the module docstring).

    `path`: "auto" (one matmul per chunk where that is safe, secondary-level chunking for the
    chunks that forget more), "subchunk" (secondary-level chunking for every chunk) or "exact"
    (that, with every diagonal sub-chunk block in log space). All three give the same result;
    the tests compare them.
    """
    B, H, T, K = q.shape
    V = v.shape[-1]
    if chunk_size % sub_chunk:
        raise ValueError(f"chunk_size {chunk_size} must be a multiple of sub_chunk {sub_chunk}")
    if path not in ("auto", "subchunk", "exact"):
        raise ValueError(f"unknown path {path!r}")
    scale = K ** -0.5 if scale is None else scale
    out_dtype = v.dtype
    acc = _acc_dtype(q.dtype)
    # short inputs (prompts) are padded to a whole sub-chunk, not to a whole chunk
    C = min(chunk_size, -(-max(T, 1) // sub_chunk) * sub_chunk)
    pad = (-T) % C
    q, k, v, g = (x.to(acc) for x in (q, k, v, g))
    if pad:  # zeros everywhere; g = 0 (α = 1) carries the state through the padding unchanged
        q, k, v, g = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v, g))
    N = (T + pad) // C
    q, k, g = (x.reshape(B, H, N, C, K) for x in (q, k, g))
    v = v.reshape(B, H, N, C, V)
    limit = safe_limit(acc)
    # chunks that forget more than `limit` nats in some channel cannot use the one-matmul
    # intra-chunk product: their intra part comes from secondary-level chunking instead
    if path == "auto":
        unsafe = (g.sum(-2) < -limit).any(-1)  # [B, H, N]
    else:
        unsafe = torch.ones(B, H, N, dtype=torch.bool, device=q.device)
    any_unsafe = bool(unsafe.any())
    S0 = None if initial_state is None else initial_state.to(acc)
    o, state = _FastChunk.apply(q, k, v, g, S0, scale, unsafe if any_unsafe else None, limit)
    if any_unsafe:
        idx = unsafe.nonzero(as_tuple=True)
        Bc = g[idx].cumsum(-2)
        o = o.index_put(idx, _subchunk_intra(q[idx] * scale, k[idx], v[idx], Bc, sub_chunk, path == "exact"),
                        accumulate=True)
    o = o.reshape(B, H, N * C, V)[:, :, :T].to(out_dtype)
    return o, (state if output_final_state else None)


def _subchunk_intra(q, k, v, Bc, c: int, force_exact: bool) -> torch.Tensor:
    """Intra-chunk output `A V` with secondary-level chunking: q, k, Bc [m, C, K], v [m, C, V].

    Sub-chunk a is read relative to r_a, the cumulative gate just before it. Earlier sub-chunks
    reach it through their states (each key decayed to the end of its sub-chunk, then from
    sub-chunk to sub-chunk: all exponents <= 0). The diagonal c x c blocks use one matmul
    while the sub-chunk forgets less than `safe_limit`, else the log-space elementwise form.
    """
    m, C, K = q.shape
    V = v.shape[-1]
    ns = C // c
    qs, ks, bs = (x.reshape(m, ns, c, K) for x in (q, k, Bc))
    vs = v.reshape(m, ns, c, V)
    e = bs[..., -1, :]  # [m, ns, K]: Bc at the end of each sub-chunk
    r = F.pad(e[..., :-1, :], (0, 0, 1, 0))  # Bc just before each sub-chunk
    qt = qs * (bs - r.unsqueeze(-2)).exp()  # factors <= 1
    o = _diagonal_blocks(qs, ks, bs, qt, r, force_exact) @ vs
    if ns > 1:
        U = (ks * (e.unsqueeze(-2) - bs).exp()).transpose(-1, -2) @ vs  # [m, ns, K, V]
        span = (e - r).exp().unsqueeze(-1)  # decay across each sub-chunk
        S = torch.zeros_like(U[:, 0])
        states = [S]
        for a in range(1, ns):
            S = S * span[:, a - 1] + U[:, a - 1]
            states.append(S)
        o = o + qt @ torch.stack(states, 1)
    return o.reshape(m, C, V)


class _FastChunk(torch.autograd.Function):
    """The chunk form with the backward written out by hand: far fewer (and larger) operations
    than autograd's. The intra-chunk product is skipped for the chunks marked `unsafe` (they
    forget more than `limit`); the caller adds their intra part from `_subchunk_intra`.

    Per chunk (all [.., C, K] or [.., C, V]): Bc = cumsum(g), qe = s·q·exp(Bc),
    ki = k·exp(-Bc) (<= exp(limit)), kd = ki·exp(Bl) = k·exp(Bl - Bc) (<= 1),
    A = tril(qe kiᵀ), o = A v + qe S_in, S_out = exp(Bl) ⊙ S_in + kdᵀ v.
    Backward: dA = tril(do vᵀ), dqe = dA ki + do S_inᵀ, dki = dAᵀ qe, dv = Aᵀ do + kd dS_out,
    dkd = v dS_outᵀ, states in reverse; then dq = s·exp(Bc)·dqe, dk = (dki + exp(Bl)·dkd)·exp(-Bc),
    dBc = qe·dqe - ki·dki - kd·dkd (+ the chunk-decay terms on the last row) and
    dg = reverse cumsum of dBc within the chunk.

    Layout: inputs are [B, H, N, C, D] and may be strided views of a time-major [B, T, H, D]
    projection; `o` and the gradients are written time-major through `out=`, so the model's
    transposes back to [B, T, H, D] are free (no copies on the way in or out).
    """

    @staticmethod
    def forward(ctx, q, k, v, g, S0, scale, unsafe, limit):
        B, H, N, C, K = q.shape
        V = v.shape[-1]
        mask = ~_causal_mask(C, q.device)
        v = v.contiguous()
        Bc = g.cumsum(-2)
        eB = Bc.exp().contiguous()
        qe = torch.mul(eB, q).mul_(scale)
        eBl = eB[..., -1:, :]  # [B, H, N, 1, K]
        if unsafe is None:  # every chunk is safe: exp(-Bc) <= exp(limit)
            fac_i = fac_d = None
            ki = torch.div(k, eB, out=torch.empty_like(eB))
            kd = ki * eBl
        else:  # ki clamped (finite; unused where unsafe: A is zeroed there), kd exact (<= 1)
            fac_i = Bc.neg().clamp_(max=limit).exp_().contiguous()
            fac_d = (Bc[..., -1:, :] - Bc).exp_().contiguous()
            ki = torch.mul(fac_i, k)
            kd = torch.mul(fac_d, k)
            mask = mask | unsafe[..., None, None]
        A = (qe @ ki.transpose(-1, -2)).masked_fill_(mask, 0.0)
        U = kd.transpose(-1, -2) @ v  # [B, H, N, K, V]
        decay = eBl.transpose(-1, -2)  # [B, H, N, K, 1]
        states = torch.empty(B, H, N, K, V, dtype=q.dtype, device=q.device)  # the state entering chunk n
        S = torch.empty(B, H, K, V, dtype=q.dtype, device=q.device)  # the final state
        if S0 is None:
            states[:, :, 0].zero_()
        else:
            states[:, :, 0].copy_(S0)
        for n in range(N):
            torch.addcmul(U[:, :, n], states[:, :, n], decay[:, :, n], out=states[:, :, n + 1] if n + 1 < N else S)
        o = _time_major(B, H, N, C, V, q)
        if N > 1 or S0 is not None:
            torch.add(A @ v, qe @ states, out=o)
        else:
            torch.matmul(A, v, out=o)
        ctx.save_for_backward(eB, qe, ki, kd, v, A, states, unsafe, fac_i, fac_d)
        ctx.scale, ctx.has_S0 = scale, S0 is not None
        return o, S

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do, dS):
        eB, qe, ki, kd, v, A, states, unsafe, fac_i, fac_d = ctx.saved_tensors
        B, H, N, C, K = qe.shape
        V = v.shape[-1]
        mask = ~_causal_mask(C, qe.device)
        if unsafe is not None:
            mask = mask | unsafe[..., None, None]
        do = torch.zeros_like(v) if do is None else do.contiguous()
        dA = (do @ v.transpose(-1, -2)).masked_fill_(mask, 0.0)
        dqe = dA @ ki
        dqe.add_(do @ states.transpose(-1, -2))
        dki = dA.transpose(-1, -2) @ qe
        # the states, in reverse: dU[n] is the gradient of the state leaving chunk n
        QO = qe.transpose(-1, -2) @ do  # [B, H, N, K, V]: chunk n's queries' share of dS_in[n]
        eBl = eB[..., -1:, :]
        decay = eBl.transpose(-1, -2)
        dU = torch.empty_like(states)
        dS0 = torch.empty(B, H, K, V, dtype=qe.dtype, device=qe.device) if ctx.has_S0 else None
        if dS is None:
            dU[:, :, N - 1].zero_()
        else:
            dU[:, :, N - 1].copy_(dS)
        for n in range(N - 1, -1, -1):
            if n or dS0 is not None:
                torch.addcmul(QO[:, :, n], dU[:, :, n], decay[:, :, n], out=dU[:, :, n - 1] if n else dS0)
        d_decay = (states * dU).sum(-1)  # [B, H, N, K]: gradient of exp(Bl) through the state update
        dkd = v @ dU.transpose(-1, -2)  # [B, H, N, C, K]
        dv = _time_major(B, H, N, C, V, qe)
        torch.add(A.transpose(-1, -2) @ do, kd @ dU, out=dv)
        dq = torch.mul(dqe, eB, out=_time_major(B, H, N, C, K, qe)).mul_(ctx.scale)
        if fac_i is None:
            dk = torch.addcmul(dki, dkd, eBl, out=_time_major(B, H, N, C, K, qe)).div_(eB)
        else:
            dk = torch.mul(dki, fac_i, out=_time_major(B, H, N, C, K, qe)).addcmul_(dkd, fac_d)
        kdd = kd * dkd
        dB = qe * dqe
        dB.sub_(ki * dki).sub_(kdd)
        dB[..., -1, :] += kdd.sum(-2) + eBl.squeeze(-2) * d_decay
        # dg = reverse cumsum of dB within each chunk (= chunk total - inclusive cumsum + dB)
        dg = torch.sub(dB.sum(-2, keepdim=True), dB.cumsum(-2), out=_time_major(B, H, N, C, K, qe)).add_(dB)
        return dq, dk, dv, dg, dS0, None, None, None


def _time_major(B: int, H: int, N: int, C: int, D: int, like: torch.Tensor) -> torch.Tensor:
    """An empty [B, H, N, C, D] tensor laid out as [B, N, C, H, D] (time before heads)."""
    return torch.empty(B, N, C, H, D, dtype=like.dtype, device=like.device).permute(0, 3, 1, 2, 4)


def _causal_mask(n: int, device) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def _strict_lower(n: int, device) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril(-1)


def _diagonal_blocks(qs, ks, bs, qt, r, force_exact: bool) -> torch.Tensor:
    """A within each sub-chunk: [.., c, c], lower triangular including the diagonal.

    Fast path: `qt @ (k ⊙ exp(r - Bc))ᵀ`; the key factor is at most exp(span), span = how much
    the sub-chunk forgets. Blocks with span > `safe_limit` are recomputed in log space.
    """
    c = qs.shape[-2]
    limit = safe_limit(qs.dtype)
    kt = ks * (r.unsqueeze(-2) - bs).clamp(max=limit).exp()  # clamp: unsafe blocks stay finite
    A = (qt @ kt.transpose(-1, -2)).masked_fill(~_causal_mask(c, qs.device), 0.0)
    span = r - bs[..., -1, :]  # [.., K] >= 0
    unsafe = torch.ones(span.shape[:-1], dtype=torch.bool, device=qs.device) if force_exact else (span > limit).any(-1)
    if not bool(unsafe.any()):
        return A
    idx = unsafe.nonzero(as_tuple=True)
    keep = torch.ones(unsafe.shape, dtype=A.dtype, device=A.device).masked_fill(unsafe, 0.0)[..., None, None]
    exact = torch.zeros_like(A).index_put(idx, _exact_block(qs[idx], ks[idx], bs[idx]))
    return A * keep + exact


def _exact_block(qs: torch.Tensor, ks: torch.Tensor, bs: torch.Tensor) -> torch.Tensor:
    """Diagonal sub-chunk blocks elementwise in log space: [m, c, K] -> [m, c, c]."""
    c = qs.shape[-2]
    E = bs.unsqueeze(-2) - bs.unsqueeze(-3)  # [m, i, j, K] = Bc_i - Bc_j
    E = E.masked_fill(~_causal_mask(c, qs.device)[..., None], float("-inf"))
    return (qs.unsqueeze(-2) * ks.unsqueeze(-3) * E.exp()).sum(-1)


FORMS = {"chunk": gla_chunk, "recurrent": gla_recurrent, "parallel": gla_parallel}


def gla(q, k, v, g, *, form: str = "chunk", **kwargs):
    """Dispatch to one of the three forms by name."""
    return FORMS[form](q, k, v, g, **kwargs)
