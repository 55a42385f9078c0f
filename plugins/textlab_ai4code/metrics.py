"""The competition metric and the other permutation metrics, per notebook and pooled.

Kendall tau as Kaggle computed it (Ryan Holbrook's "Competition Metric" notebook): for each
notebook, take the true position of every cell in predicted order and count the inversions
S_i; then, once over the whole set,

    K = 1 - 4 * sum_i S_i / sum_i n_i (n_i - 1)

Inversions are pooled over notebooks (long notebooks weigh about n^2); it is not the mean of
per-notebook taus. For one notebook it equals Kendall's tau (no ties). Everything here is plain
Python.
"""

from __future__ import annotations

from typing import Sequence

import textlab

# Notebook length buckets (number of cells) for the per-bucket tables.
BUCKETS = ((1, 10), (11, 25), (26, 50), (51, 100), (101, None))


def count_inversions(values: Sequence[float]) -> int:
    """Pairs i < j with values[i] > values[j], by merge sort in O(n log n)."""
    a = list(values)
    inv = 0
    width = 1
    n = len(a)
    buf = a[:]
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if a[j] < a[i]:
                    buf[k] = a[j]
                    inv += mid - i
                    j += 1
                else:
                    buf[k] = a[i]
                    i += 1
                k += 1
            buf[k:hi] = a[i:mid] + a[j:hi]
        a, buf = buf, a
        width *= 2
    return inv


def true_ranks(truth: Sequence[str], pred: Sequence[str], nb_id: str = "?") -> list[int]:
    """Position in the true order of each predicted cell, in predicted order (must be a permutation)."""
    where = {c: i for i, c in enumerate(truth)}
    if len(pred) != len(truth) or len(set(pred)) != len(pred) or any(c not in where for c in pred):
        raise textlab.DataError(f"the predicted order of notebook {nb_id} is not a permutation of its cells")
    return [where[c] for c in pred]


def kendall_tau(truths: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]) -> float:
    """The competition score: inversions pooled over all notebooks."""
    inv = total = 0
    for t, p in zip(truths, preds):
        inv += count_inversions(true_ranks(t, p))
        total += len(t) * (len(t) - 1)
    return 1 - 4 * inv / total if total else float("nan")


def notebook_stats(truth: Sequence[str], pred: Sequence[str], types: dict[str, str], nb_id: str = "?") -> dict:
    """Per-notebook counts from which every metric is computed (and pooled)."""
    ranks = true_ranks(truth, pred, nb_id)
    n = len(truth)
    inv = count_inversions(ranks)
    d2 = sum((i - r) ** 2 for i, r in enumerate(ranks))
    # gap = number of code cells before a markdown cell, in each order
    gap_true, gap_pred = _gaps(truth, types), _gaps(pred, types)
    md = [c for c in truth if types[c] != "code"]
    pos_true = {c: i for i, c in enumerate(truth)}
    pos_pred = {c: i for i, c in enumerate(pred)}
    return {
        "n": n,
        "inversions": inv,
        "pairs2": n * (n - 1),  # 2 x number of pairs, as in Kaggle's formula
        "tau": 1 - 4 * inv / (n * (n - 1)) if n > 1 else None,
        "spearman": 1 - 6 * d2 / (n * (n * n - 1)) if n > 1 else None,
        "markdown": len(md),
        "gap_hits": sum(gap_true[c] == gap_pred[c] for c in md),
        "abs_err": sum(abs(pos_true[c] - pos_pred[c]) for c in md),
    }


def _gaps(order: Sequence[str], types: dict[str, str]) -> dict[str, int]:
    out, seen = {}, 0
    for c in order:
        if types[c] == "code":
            seen += 1
        else:
            out[c] = seen
    return out


def summarize(stats: Sequence[dict]) -> dict:
    """Pooled and averaged metrics over notebooks' stats."""
    if not stats:
        return {"notebooks": 0}
    pairs2 = sum(s["pairs2"] for s in stats)
    taus = [s["tau"] for s in stats if s["tau"] is not None]
    rhos = [s["spearman"] for s in stats if s["spearman"] is not None]
    md = sum(s["markdown"] for s in stats)
    return {
        "notebooks": len(stats),
        "cells": sum(s["n"] for s in stats),
        "kendall_tau": 1 - 4 * sum(s["inversions"] for s in stats) / pairs2 if pairs2 else float("nan"),
        "mean_tau": sum(taus) / len(taus) if taus else float("nan"),
        "spearman": sum(rhos) / len(rhos) if rhos else float("nan"),
        "gap_accuracy": sum(s["gap_hits"] for s in stats) / md if md else float("nan"),
        "position_mae": sum(s["abs_err"] for s in stats) / md if md else float("nan"),
    }


def bucket_name(lo: int, hi: int | None) -> str:
    return f"{lo}-{hi}" if hi else f">{lo - 1}"


def by_bucket(stats: Sequence[dict]) -> dict[str, dict]:
    """`summarize` per notebook-length bucket (cells per notebook), then over all."""
    out = {}
    for lo, hi in BUCKETS:
        part = [s for s in stats if s["n"] >= lo and (hi is None or s["n"] <= hi)]
        if part:
            out[bucket_name(lo, hi)] = summarize(part)
    out["all"] = summarize(stats)
    return out


METRIC_HELP = {
    "kendall_tau": "the competition score: 1 - 4 * pooled inversions / sum n(n-1)",
    "mean_tau": "mean of per-notebook Kendall taus",
    "spearman": "mean of per-notebook Spearman rank correlations",
    "gap_accuracy": "share of markdown cells placed between the right two code cells",
    "position_mae": "mean |predicted - true| position of markdown cells, in cells",
}
