"""recrnn mechanics without learning: shapes, depth sampler, truncated backprop, decoding copies, losses."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from textlab_recrnn.config import RecrnnConfig
from textlab_recrnn.model import (Plain, RecurrentDepth, build_plain, build_recurrent, depth_generator, losses,
                                  matched_inner, sample_depth)


torch.set_num_threads(1)  # the machine is shared: one thread is faster than two here


def tiny(**kw) -> RecrnnConfig:
    base = dict(vocab_size=20, dim=16, heads=2, prelude=1, core=2, coda=1, mean_recurrence=4, backprop_depth=2,
                pad_id=19)
    base.update(kw)
    return RecrnnConfig(**base)


def batch(b=3, t=9, v=19, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, v, (b, t), generator=g)


def graph_nodes(tensor: torch.Tensor) -> int:
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(f for f, _ in fn.next_functions)
    return len(seen)


def test_shapes_full_and_answer_positions():
    torch.manual_seed(0)
    model = build_recurrent(tiny())
    ids = batch()
    assert model(ids, 3).shape == (3, 9, 20)
    assert model(ids, (2, 1), positions=torch.tensor([8, 4, 0])).shape == (3, 20)
    plain = build_plain(tiny())
    assert plain(ids).shape == (3, 9, 20)
    assert plain(ids, positions=torch.tensor([1, 2, 3])).shape == (3, 20)


def test_initial_state_statistics_and_zero_state():
    model = build_recurrent(tiny(dim=64, heads=4))
    e = torch.zeros(64, 40, 64)
    s = model.initial_state(e, torch.Generator().manual_seed(1))
    std = math.sqrt(2 / 5)
    assert abs(float(s.std()) - std * 0.986) < 0.02  # a normal truncated at 3 std has std 0.986 sigma
    assert float(s.abs().max()) <= 3 * std + 1e-6
    assert torch.equal(s, model.initial_state(e, torch.Generator().manual_seed(1)))
    zero = build_recurrent(tiny(state_scale=0.0)).initial_state(e)
    assert not zero.any()


def test_parameter_counts_match_between_looped_and_baseline():
    for cfg in (tiny(), tiny(dim=64, heads=4), RecrnnConfig(vocab_size=2207), tiny(injection="add")):
        a = build_recurrent(cfg).num_parameters()
        b = build_plain(cfg).num_parameters()
        assert abs(a - b) / a < 0.01, (cfg, a, b)
    assert matched_inner(tiny(injection="add")) == 48  # no adapter to make up for


def test_sampler_distribution_and_reproducibility():
    draws = [sample_depth(8, 4, depth_generator(0, step)) for step in range(10_000)]
    r = [n + k for n, k in draws]
    assert abs(statistics.mean(r) - 9.0) < 0.15  # E[r] = mean + 1
    assert 7 <= statistics.median(r) <= 9
    assert all(k == min(4, n + k) and n == max(n + k - 4, 0) for n, k in draws)
    assert min(r) >= 1
    share_full = sum(1 for x in r if x <= 4) / len(r)
    assert 0.05 < share_full < 0.3  # steps that backpropagate through every iteration
    again = [sample_depth(8, 4, depth_generator(0, step)) for step in range(200)]
    assert again == draws[:200]
    other = [sample_depth(8, 4, depth_generator(1, step)) for step in range(200)]
    assert other != draws[:200]


def test_no_grad_iterations_build_no_graph_and_gradients_reach_prelude_and_adapter():
    torch.manual_seed(0)
    model = build_recurrent(tiny())
    ids = batch()
    short = model(ids, (0, 2), generator=torch.Generator().manual_seed(3))
    long = model(ids, (6, 2), generator=torch.Generator().manual_seed(3))
    assert graph_nodes(long) == graph_nodes(short)  # the 6 extra no-grad iterations left nothing behind
    long.square().mean().backward()
    for name in ("prelude.0.wqkv.weight", "adapter.weight", "core.0.fc.weight", "coda.0.proj.weight", "emb.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # (n, k) computes the same function as n + k plain iterations
    with torch.no_grad():
        plain = model(ids, 8, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(long.detach(), plain, atol=1e-5)


def test_decoding_copies_in_one_pass_equals_separate_runs():
    torch.manual_seed(0)
    model = build_recurrent(tiny()).eval()
    ids = batch(b=4, t=11)
    pos = torch.tensor([10, 3, 7, 0])
    steps = [1, 2, 3, 5, 8]
    got = dict(model.trajectory(ids, steps, positions=pos, generator=torch.Generator().manual_seed(7)))
    assert sorted(got) == steps
    with torch.no_grad():
        for r in steps:
            fresh = model(ids, r, positions=pos, generator=torch.Generator().manual_seed(7))
            assert torch.allclose(got[r], fresh, atol=1e-5), r
    # the steps differ from each other (the state really moves)
    assert not torch.allclose(got[1], got[8])
    every = list(model.trajectory(ids, [4], positions=pos, generator=torch.Generator().manual_seed(7), every=True))
    assert [s for s, _ in every] == [1, 2, 3, 4]


def test_baseline_ignores_steps():
    torch.manual_seed(0)
    model = Plain(tiny()).eval()
    ids = batch()
    outs = dict(model.trajectory(ids, [1, 4, 16]))
    assert torch.equal(outs[1], outs[16])


def test_full_and_single_losses():
    torch.manual_seed(0)
    cfg = tiny()
    model = build_recurrent(cfg)
    pad = cfg.pad_id
    # two sequences: input of 5 and 3 tokens, then answer and </a> (id 18), right-padded
    seq = torch.tensor([[1, 2, 3, 4, 5, 7, 18], [6, 2, 9, 11, 18, pad, pad]])
    length = torch.tensor([5, 3])
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    single = losses(model, seq, length, "single", pad, (1, 2), generator=gen())
    full = losses(model, seq, length, "full", pad, (1, 2), generator=gen())
    # the answer prediction is the same in both modes (causal model, right padding)
    assert torch.allclose(single["answer_loss"], full["answer_loss"], atol=1e-5)
    assert torch.allclose(single["loss"], single["answer_loss"])
    # the full loss is the mean next-token loss over the 6 + 4 real targets
    with torch.no_grad():
        logits = model(seq[:, :-1], (1, 2), generator=gen())
    tgt = seq[:, 1:]
    mask = tgt != pad
    assert mask.sum() == 10
    manual = torch.nn.functional.cross_entropy(logits[mask], tgt[mask])
    assert torch.allclose(full["loss"].detach(), manual, atol=1e-5)
    assert not torch.allclose(full["loss"].detach(), full["answer_loss"])
    # per-statement targets add a term; the answer loss is still reported alone
    aux = torch.full_like(seq, -100)
    aux[0, 3] = 4
    with_aux = losses(model, seq, length, "single", pad, (1, 2), generator=gen(), aux=aux)
    assert torch.allclose(with_aux["answer_loss"], single["answer_loss"], atol=1e-5)
    assert with_aux["loss"] > with_aux["answer_loss"] and "aux_accuracy" in with_aux


def test_pad_tokens_do_not_change_real_positions():
    torch.manual_seed(0)
    cfg = tiny()
    model = build_recurrent(cfg).eval()
    ids = batch(b=2, t=6)
    padded = torch.cat([ids, torch.full((2, 4), cfg.pad_id)], 1)
    with torch.no_grad():
        a = model(ids, 3, generator=torch.Generator().manual_seed(0))
        b = model(padded, 3, generator=torch.Generator().manual_seed(0))
    assert b.shape[1] == 10
    assert torch.allclose(a, b[:, :6], atol=1e-5)


@pytest.mark.parametrize("norm,injection,mix", [("prenorm", "concat", 0), ("sandwich", "add", 0),
                                                ("sandwich", "concat", 3)])
def test_variants_build_and_run(norm, injection, mix):
    model = build_recurrent(tiny(norm=norm, injection=injection, token_mix=mix))
    assert model(batch(), (1, 1)).shape == (3, 9, 20)
    assert (model.adapter is None) == (injection == "add")
    assert (model.mix is None) == (mix == 0)


@pytest.mark.parametrize("build", [build_recurrent, build_plain])
def test_every_model_is_causal(build):
    """Changing a token changes no prediction before it (attention and the token mix are causal)."""
    torch.manual_seed(0)
    model = build(tiny(token_mix=3)).eval()
    ids = batch(b=2, t=10)
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 19
    with torch.no_grad():
        a = model(ids, 3, generator=torch.Generator().manual_seed(0))
        b = model(changed, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_token_mix_adds_rotated_neighbours():
    model = build_recurrent(tiny(token_mix=3))
    w = model.mix.conv.weight.detach()
    x = torch.randn(1, 5, 16)
    y = model.mix(x).detach()
    assert torch.allclose(y[0, 3], x[0, 3] + w[:, :, 0] @ x[0, 1] + w[:, :, 1] @ x[0, 2], atol=1e-5)
    assert torch.allclose(y[0, 0], x[0, 0])
    for j in (0, 1):  # each past tap is a rotation: the neighbour can be read back exactly
        assert torch.allclose(w[:, :, j] @ w[:, :, j].t(), torch.eye(16), atol=1e-5)
    assert not w[:, :, 2].any()


def test_coda_norm_is_the_final_norm_applied_before_the_coda():
    """coda_norm=True (Huginn, and what a config without the field gets) normalises the state before the
    coda; False feeds the state to the coda as it is. Same weights, different logits."""
    assert RecrnnConfig().coda_norm is True  # checkpoints written before the option load as they were
    torch.manual_seed(0)
    huginn = build_recurrent(tiny(coda_norm=True)).eval()
    plain = build_recurrent(tiny(coda_norm=False)).eval()
    plain.load_state_dict(huginn.state_dict())
    with torch.no_grad():
        huginn.ln_f.weight.fill_(2.0)
        plain.ln_f.weight.fill_(2.0)
        s = torch.randn(2, 7, 16) * 3
        rope = huginn.rope(7, "cpu")
        expected = huginn.head(huginn.coda[0](huginn.ln_f(s), rope), None)
        assert torch.allclose(huginn.decode(s, rope), expected, atol=1e-5)
        assert torch.allclose(plain.decode(s, rope), plain.head(plain.coda[0](s, rope), None), atol=1e-5)
        assert not torch.allclose(huginn.decode(s, rope), plain.decode(s, rope), atol=1e-3)
