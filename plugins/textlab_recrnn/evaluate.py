"""Evaluation: accuracy per difficulty x recurrence steps in one pass, and adaptive (KL) exit.

`steps_table` runs the prelude once, iterates the core up to max(steps) and decodes a copy of the
state at each requested step, so the whole table costs one pass of max(steps) iterations plus one
coda pass per requested step. The initial state comes from a seeded generator (`state_seed`), so
a table is reproducible; `draws` > 1 repeats it from other initial states.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .data import Split


def _batches(split: Split, batch_size: int):
    for lo in range(0, len(split), batch_size):
        idx = torch.arange(lo, min(lo + batch_size, len(split)))
        length = split.length[idx]
        yield idx, split.seq[idx, : int(length.max())], length


def state_generator(seed: int, draw: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(10_007 * int(seed) + 97 * int(draw) + 1)


def group_key(g: str) -> tuple:
    """Columns in order: d0, d1, ..., d10, then types by name."""
    return (0, int(g[1:]), "") if g[:1] == "d" and g[1:].isdigit() else (1, 0, g)


@torch.no_grad()
def steps_table(model: torch.nn.Module, split: Split, steps: Sequence[int], *, batch_size: int = 256,
                state_seed: int = 0, draws: int = 1, device: Any = "cpu", bar: Any = None) -> dict:
    """Per draw and requested step: the predicted answer of every record (one trajectory per batch).

    Returns {"steps": [...], "correct": tensor [draws, len(steps), N] (bool), "loss": [draws, len(steps)]}.
    `bar` (a `textlab.progress` bar) advances by the records of each batch, draw after draw.
    """
    steps = sorted(set(int(s) for s in steps))
    n = len(split)
    correct = torch.zeros(draws, len(steps), n, dtype=torch.bool)
    loss = torch.zeros(draws, len(steps), dtype=torch.float64)
    col = {s: j for j, s in enumerate(steps)}
    for draw in range(draws):
        gen = state_generator(state_seed, draw)
        for idx, ids, length in _batches(split, batch_size):
            ans = split.answer[idx].to(device)
            for step, logits in model.trajectory(ids.to(device), steps, positions=(length - 1).to(device), generator=gen):
                j = col[step]
                correct[draw, j, idx] = (logits.argmax(-1) == ans).cpu()
                loss[draw, j] += F.cross_entropy(logits.float(), ans, reduction="sum").item()
            if bar is not None:
                bar.advance(len(idx))
    return {"steps": steps, "correct": correct, "loss": loss / n}


def accuracy_at(model: torch.nn.Module, split: Split, ood: list[bool], r: int, *, pad_id: int = 0,
                batch_size: int = 256, state_seed: int = 0) -> dict:
    """Answer accuracy and loss at r steps: all, in-distribution, out-of-distribution, per group."""
    device = next(model.parameters()).device
    res = steps_table(model, split, [r], batch_size=batch_size, state_seed=state_seed, device=device)
    hit = res["correct"][0, 0].float()
    summary = summarize(hit, split.groups(), ood)
    summary["loss"] = float(res["loss"][0, 0])
    return summary


def summarize(hit: torch.Tensor, groups: list[str], ood: list[bool]) -> dict:
    """Mean of `hit` over all records, ID, OOD (nan when empty) and each group."""
    ood_t = torch.tensor(ood, dtype=torch.bool)
    by: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by[g].append(i)

    def mean(mask_or_idx: Any) -> float:
        x = hit[mask_or_idx]
        return float(x.mean()) if x.numel() else math.nan

    return {"all": mean(slice(None)), "id": mean(~ood_t), "ood": mean(ood_t),
            "groups": {g: mean(torch.tensor(ix)) for g, ix in by.items()}}


@torch.no_grad()
def kl_exit(model: torch.nn.Module, split: Split, *, max_steps: int, threshold: float, min_steps: int = 1,
            batch_size: int = 256, state_seed: int = 0, device: Any = "cpu", bar: Any = None) -> dict:
    """Adaptive depth: each record exits at the first step i >= min_steps where
    KL(p_{i-1} || p_i) of its answer distribution is below `threshold` (p_0 = uniform), else at
    max_steps. Records do not interact (causal attention within a sequence), so running a batch to
    max_steps and reading each record's exit step gives the same answers as stopping it early.

    Returns per record: exit step, correct at exit, and correct at max_steps.
    """
    n = len(split)
    exit_step = torch.full((n,), max_steps, dtype=torch.long)
    correct = torch.zeros(n, dtype=torch.bool)
    correct_max = torch.zeros(n, dtype=torch.bool)
    gen = state_generator(state_seed)
    for idx, ids, length in _batches(split, batch_size):
        ans = split.answer[idx].to(device)
        prev = None
        done = torch.zeros(len(idx), dtype=torch.bool, device=device)
        for step, logits in model.trajectory(ids.to(device), [max_steps], positions=(length - 1).to(device),
                                             generator=gen, every=True):
            logp = F.log_softmax(logits.float(), -1)
            if prev is None:
                prev = torch.full_like(logp, -math.log(logp.shape[-1]))
            kl = (prev.exp() * (prev - logp)).sum(-1)
            prev = logp
            hit = logits.argmax(-1) == ans
            now = ~done & (kl < threshold) & (step >= min_steps) if step < max_steps else ~done
            rows = idx[now.cpu()]
            exit_step[rows] = step
            correct[rows] = hit[now].cpu()
            done |= now
            if step == max_steps:
                correct_max[idx] = hit.cpu()
        if bar is not None:
            bar.advance(len(idx))
    return {"exit_step": exit_step, "correct": correct, "correct_max": correct_max}


# ============================================================================ plots
def plot_steps(path: Path, steps: list[int], rows: dict[str, list[float]], *, chance: float, train_mean: int | None,
               title: str, errors: dict[str, list[float]] | None = None) -> None:
    """Accuracy against steps (log2 x axis), one line per group, chance dashed, training mean marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    cmap = plt.get_cmap("viridis")
    names = list(rows)
    for i, name in enumerate(names):
        colour = cmap(i / max(1, len(names) - 1))
        ys = rows[name]
        err = (errors or {}).get(name)
        ax.errorbar(steps, ys, yerr=err, marker="o", ms=3, lw=1.4, color=colour, label=name, capsize=2)
    ax.axhline(chance, ls="--", color="grey", lw=1, label=f"chance {chance:.2f}")
    if train_mean:
        ax.axvline(train_mean, ls=":", color="red", lw=1, label=f"training mean r={train_mean}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps)
    ax.set_xticklabels([str(s) for s in steps])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recurrence steps at test time")
    ax.set_ylabel("answer accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_exit(path: Path, hist: dict[str, dict[int, int]], max_steps: int, title: str) -> None:
    """Histogram of exit steps, one row of bars per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(hist)
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.1 + 0.9 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        xs = list(range(1, max_steps + 1))
        ax.bar(xs, [hist[name].get(x, 0) for x in xs], color="tab:blue")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("exit step")
    axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
