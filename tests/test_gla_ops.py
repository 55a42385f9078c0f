"""The GLA operator: recurrent (the definition), parallel and chunkwise forms agree."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from textlab_gla import ops
from textlab_gla.ops import gla_chunk, gla_parallel, gla_recurrent, gla_step

torch.set_num_threads(1)

# gate strength s: g = logsigmoid(s z) / 16. s = 1: ordinary gates (α ≈ 0.92-1, the fast chunk
# path); s = 16: strong (α down to ~0.1); s = 200: near-total forgetting (g down to about -50 per
# step, the sub-chunk path with log-space diagonal blocks).
STRENGTHS = (1, 16, 200)
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (2e-5, 5e-5)}  # (outputs, gradients), relative


def make(B=2, H=2, T=130, K=16, V=24, s=1.0, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, z = (torch.randn(B, H, T, K, generator=gen, dtype=dtype) for _ in range(3))
    v = torch.randn(B, H, T, V, generator=gen, dtype=dtype)
    g = F.logsigmoid(z * s) / 16
    return [x.requires_grad_() for x in (q, k, v, g)]


def outputs_and_grads(form, xs, initial_state=None, forward_in=contextlib.nullcontext, **kw):
    """Output, final state and gradients of a fixed random projection of both (the forward pass
    inside the context `forward_in()`, the backward outside it)."""
    with forward_in():
        o, S = form(*xs, initial_state=initial_state, output_final_state=True, **kw)
    gen = torch.Generator().manual_seed(123)
    loss = (o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() \
        + (S * torch.randn(S.shape, generator=gen, dtype=S.dtype)).sum()
    inputs = xs + ([initial_state] if initial_state is not None else [])
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    grads = [torch.zeros_like(x) if d is None else d for x, d in zip(inputs, grads)]
    return o.detach(), S.detach(), grads


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def assert_close(got, ref, dtype):
    tol_o, tol_g = TOL[dtype]
    assert rel(got[0], ref[0]) < tol_o, ("output", rel(got[0], ref[0]))
    assert rel(got[1], ref[1]) < tol_o, ("final state", rel(got[1], ref[1]))
    for i, (a, b) in enumerate(zip(got[2], ref[2])):
        scale = b.abs().max().item() or 1.0  # a gradient that is exactly zero (g_0 without a state)
        err = (a - b).abs().max().item() / scale
        assert err < tol_g, ("gradient", "qkvgS"[i], err)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("s", STRENGTHS)
@pytest.mark.parametrize("T", [1, 7, 130, 200])
def test_three_forms_agree_in_outputs_and_gradients(dtype, s, T):
    xs = make(T=T, s=s, dtype=dtype)
    ref = outputs_and_grads(gla_recurrent, xs)
    assert_close(outputs_and_grads(gla_parallel, xs), ref, dtype)
    for path in ("auto", "subchunk", "exact"):
        assert_close(outputs_and_grads(gla_chunk, xs, path=path), ref, dtype)
    assert_close(outputs_and_grads(gla_chunk, xs, chunk_size=32, sub_chunk=8, path="subchunk"), ref, dtype)


def test_only_strongly_forgetting_chunks_take_the_sub_chunk_path(monkeypatch):
    chunks = []
    real = ops._subchunk_intra
    monkeypatch.setattr(ops, "_subchunk_intra", lambda q, *a: chunks.append(q.shape[0]) or real(q, *a))
    gla_chunk(*make(T=128, s=1))  # B 2 x H 2 x 2 chunks of 64, ordinary gates: one matmul per chunk
    assert chunks == []
    gla_chunk(*make(T=128, s=200))
    assert chunks == [8]  # every chunk forgets more than ~31 nats
    q, k, v, g = make(s=1)
    strong = g.detach().clone()
    strong[0, 1, 64:128] = -5.0  # one chunk of one head forgets 320 nats per channel (float64 limit: 248)
    chunks.clear()
    ref = outputs_and_grads(gla_recurrent, [q, k, v, strong.requires_grad_()])
    assert_close(outputs_and_grads(gla_chunk, [q, k, v, strong]), ref, torch.float64)
    assert chunks == [1]


def test_definition_on_a_hand_computed_case():
    # one head, dk = dv = 1, scale 1: o_t = q_t * sum_{j<=t} k_j v_j * prod_{j<s<=t} alpha_s
    q = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 1, 3, 1)
    k = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64).view(1, 1, 3, 1)
    v = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64).view(1, 1, 3, 1)
    alpha = torch.tensor([0.5, 0.5, 0.25], dtype=torch.float64).view(1, 1, 3, 1)
    expected = torch.tensor([1.0, 2 * (0.5 * 1 + 10), 3 * (0.25 * (0.5 * 1 + 10) + 100)], dtype=torch.float64)
    for form in (gla_recurrent, gla_parallel, gla_chunk):
        o, _ = form(q, k, v, alpha.log(), scale=1.0)
        assert torch.allclose(o.flatten(), expected, rtol=1e-12), form.__name__


@pytest.mark.parametrize("s", STRENGTHS)
def test_state_hand_off(s):
    """Chunk over a prefix, then the rest (recurrent steps or chunk form) from the returned state,
    equals one pass over the whole sequence; gradients flow through the state."""
    q, k, v, g = make(T=150, s=s)
    whole, S_whole = gla_recurrent(q, k, v, g, output_final_state=True)
    cut = 70
    head, S = gla_chunk(q[:, :, :cut], k[:, :, :cut], v[:, :, :cut], g[:, :, :cut], output_final_state=True)
    steps, S_rec = [], S
    for t in range(cut, 150):
        o, S_rec = gla_step(q[:, :, t], k[:, :, t], v[:, :, t], g[:, :, t], S_rec)
        steps.append(o)
    assert rel(torch.cat([head, torch.stack(steps, 2)], 2), whole) < 1e-12
    assert rel(S_rec, S_whole) < 1e-12
    tail, S_chunk = gla_chunk(q[:, :, cut:], k[:, :, cut:], v[:, :, cut:], g[:, :, cut:], initial_state=S,
                              output_final_state=True)
    assert rel(tail, whole[:, :, cut:]) < 1e-12 and rel(S_chunk, S_whole) < 1e-12
    # gradients with respect to a given initial state agree too
    S0 = torch.randn(2, 2, 16, 24, dtype=torch.float64, requires_grad=True)
    ref = outputs_and_grads(gla_recurrent, [q, k, v, g], initial_state=S0)
    assert_close(outputs_and_grads(gla_chunk, [q, k, v, g], initial_state=S0), ref, torch.float64)
    assert_close(outputs_and_grads(gla_parallel, [q, k, v, g], initial_state=S0), ref, torch.float64)


@pytest.mark.parametrize("path", ["auto", "exact"])
def test_gradcheck_chunk_form(path):
    q, k, v, g = make(B=1, H=1, T=21, K=3, V=2, s=1 if path == "auto" else 40)
    S0 = torch.randn(1, 1, 3, 2, dtype=torch.float64, requires_grad=True)

    def f(q, k, v, g, S0):
        o, S = gla_chunk(q, k, v, g, initial_state=S0, output_final_state=True, chunk_size=8, sub_chunk=4, path=path)
        return o, S

    assert torch.autograd.gradcheck(f, (q, k, v, g, S0), eps=1e-6, atol=1e-7)


def test_no_nan_gradients_with_extreme_gates():
    q, k, v, _ = make(T=100, dtype=torch.float32)
    z = torch.full((2, 2, 100, 16), -2e5)  # log-gates of about -1e4 per step: everything forgotten
    z[:, :, ::3] = 30.0  # ... except at every third step (α = 1)
    for g in (F.logsigmoid(z) / 16, torch.zeros(2, 2, 100, 16)):
        g = g.requires_grad_()
        for form in (gla_chunk, gla_parallel):
            o, S = form(q, k, v, g, output_final_state=True)
            grads = torch.autograd.grad(o.sum() + S.sum(), (q, k, v, g))
            assert torch.isfinite(o).all() and torch.isfinite(S).all(), form.__name__
            assert all(torch.isfinite(d).all() for d in grads), form.__name__


def test_float32_inputs_keep_float32_states_and_bfloat16_works():
    q, k, v, g = (x.detach() for x in make(T=40, dtype=torch.float32))
    _, S = gla_chunk(q, k, v, g, output_final_state=True)
    assert S.dtype == torch.float32
    o16, S16 = gla_chunk(*(x.bfloat16() for x in (q, k, v, g)), output_final_state=True)
    assert o16.dtype == torch.bfloat16 and S16.dtype == torch.float32
    o32, _ = gla_chunk(q, k, v, g)
    assert rel(o16.float(), o32) < 0.05


@pytest.mark.parametrize("form", [gla_chunk, gla_parallel, gla_recurrent])
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("s", [1, 200])
def test_autocast_leaves_the_operators_in_float32(form, low, s):
    # `--precision bf16/fp16` runs the forward pass under autocast (the backward outside it, as the
    # engine does): the operators compute in float32 all the same (their matmuls would otherwise
    # come out in the low precision, and the chunk form's own backward met tensors of two dtypes:
    # "expected scalar type Float but found BFloat16")
    xs = make(T=70, s=s, dtype=torch.float32)
    plain = outputs_and_grads(form, xs)
    mixed = outputs_and_grads(form, xs, forward_in=lambda: torch.autocast("cpu", dtype=low))
    assert mixed[0].dtype == mixed[1].dtype == torch.float32
    for a, b in zip([mixed[0], mixed[1], *mixed[2]], [plain[0], plain[1], *plain[2]]):
        assert torch.equal(a, b)


# ============================================================================ fla's kernel (GPU) beside the own operator
def test_the_own_operator_runs_without_fla_or_a_gpu(monkeypatch):
    from textlab_gla import model as M

    assert M.chunk_kernel("cpu") == "textlab"
    monkeypatch.setattr(M, "_fla_chunk_gla", lambda: None)  # fla not installed
    assert M.chunk_kernel("cuda") == "textlab"
    monkeypatch.setattr(M, "_fla_chunk_gla", lambda: object())  # installed: only a CUDA device uses it
    assert M.chunk_kernel("cpu") == "textlab" and M.chunk_kernel("cuda:0") == "fla"


@pytest.mark.parametrize("head_first_argument", [True, False])
def test_the_model_hands_fla_time_major_tensors_and_reads_its_output(monkeypatch, head_first_argument):
    # a stand-in for fla's chunk_gla (the own operator behind fla's signature): the model's output
    # through the fla path equals its own path, so the layout and the arguments are right
    from textlab_gla import model as M
    from textlab_gla.config import GLAConfig

    calls = []

    def own_time_major(q, k, v, g, scale, initial_state, output_final_state):
        t = lambda x: x.transpose(1, 2)  # noqa: E731  [B, T, H, D] <-> [B, H, T, D]
        o, S = gla_chunk(t(q), t(k), t(v), t(g), scale=scale, initial_state=initial_state,
                         output_final_state=output_final_state)
        return t(o), S

    def old_fla(q, k, v, g, scale=None, initial_state=None, output_final_state=False, head_first=True):
        calls.append(head_first)
        assert head_first is False  # time-major
        return own_time_major(q, k, v, g, scale, initial_state, output_final_state)

    def new_fla(q, k, v, g, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
        calls.append(None)
        return own_time_major(q, k, v, g, scale, initial_state, output_final_state)

    fake = old_fla if head_first_argument else new_fla
    torch.manual_seed(0)
    net = M.build_gla(GLAConfig(vocab_size=40, d_model=32, layers=2, heads=2), None).double()
    x = torch.randint(0, 40, (2, 150))
    own, own_cache = net(x, return_cache=True)
    monkeypatch.setattr(M, "_fla_chunk_gla", lambda: fake)
    monkeypatch.setattr(M, "chunk_kernel", lambda device: "fla")
    via, via_cache = net(x, return_cache=True)
    assert len(calls) == 2
    assert torch.allclose(own, via, rtol=1e-10, atol=1e-12)
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-12) for a, b in zip(own_cache, via_cache))


def _fla_on_cuda() -> str | None:
    """Why the agreement test cannot run here, or None if it can."""
    from textlab_gla import model as M

    if M._fla_chunk_gla() is None:
        return "flash-linear-attention (fla) is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


@pytest.mark.skipif(_fla_on_cuda() is not None, reason=str(_fla_on_cuda()))
@pytest.mark.parametrize("s", (1, 16))
def test_fla_kernel_agrees_with_the_own_operator(s):
    from textlab_gla import model as M

    xs = [x.detach().float().cuda().requires_grad_() for x in make(T=200, K=32, V=32, s=s, dtype=torch.float32)]
    S0 = torch.randn(2, 2, 32, 32, device="cuda", requires_grad=True)
    own = outputs_and_grads(gla_chunk, xs, initial_state=S0)

    def fla_form(q, k, v, g, initial_state=None, output_final_state=False):
        t = lambda x: x.transpose(1, 2).contiguous()  # noqa: E731
        o, S = M.fla_chunk(t(q), t(k), t(v), t(g), scale=q.shape[-1] ** -0.5, initial_state=initial_state,
                           output_final_state=output_final_state)
        return o.transpose(1, 2), S

    theirs = outputs_and_grads(fla_form, xs, initial_state=S0)
    for a, b in zip([own[0], own[1], *own[2]], [theirs[0], theirs[1], *theirs[2]]):
        assert torch.allclose(a, b, rtol=2e-3, atol=2e-3), (a - b).abs().max()
