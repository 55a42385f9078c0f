"""The compiled inner loops of bow's training (numba): a split's bags, a batch's bags, word
dropout, and Adagrad on the rows a batch touched.

`hash_bags` is `model.bag_rows` for the mix64 hash in one pass per row (the whole-tensor version
made a dozen temporaries of the split's size); the test compares it with the padded batches'
`ngram_ids`.

`take_bags` and `drop_words` do in one pass each what took four and five torch operations a step
(`Bags.take`, the dropout of `ngram_bag`), with the same result: the same random numbers
(drawn by torch, so seeds and exact resume hold) and the same rule.

The gradient of an embedding bag comes with one row per occurrence of an id in the batch (about
15,000 at batch 256, many of them repeats of frequent words). torch's own path, and the plugin's
whole-tensor one before this kernel, sort them to sum the repeats (`coalesce`), then read and
write the touched rows of the sums and of the table in three more passes over random rows of
two 134 MB tables. Here: one pass sums the repeats into a small scratch table (a row's slot is
found through `slot`, -1 where the row is not in this batch), a second updates each touched row
once, with the rows `AHEAD` (16) steps ahead already being fetched (`textlab.jit.prefetch_row`).
The arithmetic is torch's Adagrad (sum += g², w -= lr · g / (√sum + eps)) on float32 tables, the
step itself in float64; the order in which a row's repeats are summed and the rounding differ
(a few ulps; the test compares with torch).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from textlab.jit import prefetch, prefetch_row

AHEAD = 16  # rows hinted this many steps before they are updated


@njit(nogil=True, cache=True, inline="always")
def _mix64(h):
    """splitmix64's finaliser (model._mix64): multiplications wrap, shifts made logical by masks."""
    h = (h ^ ((h >> 30) & ((1 << 34) - 1))) * -4658895280553007687
    h = (h ^ ((h >> 27) & ((1 << 37) - 1))) * -7723592293110705685
    return h ^ ((h >> 31) & ((1 << 33) - 1))


@njit(nogil=True, cache=True)
def hash_bags(ids, offsets, max_len, vocab_size, buckets, ngrams):
    """Every row's words (its first `max_len`), then its n-grams hashed with mix64 -> (ids, offsets [N + 1])."""
    rows = len(offsets) - 1
    bag_offsets = np.zeros(rows + 1, np.int64)
    longest = 1
    for r in range(rows):
        n_tok = min(offsets[r + 1] - offsets[r], max_len)
        longest = max(longest, n_tok)
        size = n_tok
        for n in range(2, ngrams + 1):
            size += max(n_tok - (n - 1), 0)
        bag_offsets[r + 1] = bag_offsets[r] + size
    out = np.empty(bag_offsets[rows], np.int64)
    h = np.empty(longest, np.int64)
    for r in range(rows):
        a, at = offsets[r], bag_offsets[r]
        n_tok = min(offsets[r + 1] - a, max_len)
        for i in range(n_tok):
            h[i] = np.int64(ids[a + i])
            out[at + i] = h[i]
        at += n_tok
        for n in range(2, ngrams + 1):  # h[i]: the hash of the n-gram starting at i, from the (n-1)-gram's
            for i in range(n_tok - (n - 1)):
                h[i] = _mix64(h[i] * -7046029254386353131 + np.int64(ids[a + i + n - 1]) + n)
                out[at + i] = vocab_size + h[i] % buckets
            at += max(n_tok - (n - 1), 0)
    return out, bag_offsets


@njit(nogil=True, cache=True)
def take_bags(ids, offsets, rows):
    """The bags of `rows`, flat: (ids, starts [len(rows)]) from a split's `ids` and `offsets` [N + 1]."""
    n = 0
    for r in rows:
        n += offsets[r + 1] - offsets[r]
    out = np.empty(n, ids.dtype)
    starts = np.empty(len(rows), np.int64)
    at = 0
    for b in range(len(rows)):
        starts[b] = at
        for i in range(offsets[rows[b]], offsets[rows[b] + 1]):
            out[at] = ids[i]
            at += 1
    return out, starts


@njit(nogil=True, cache=True)
def drop_words(ids, starts, u, p):
    """Word dropout: keep ids[i] where u[i] >= p, and every bag's first id -> (ids, starts)."""
    out = np.empty(len(ids), ids.dtype)
    new_starts = np.empty(len(starts), np.int64)
    at = 0
    b = 0
    for i in range(len(ids)):
        first = False
        while b < len(starts) and starts[b] == i:  # (an empty bag starts where the next one does)
            new_starts[b] = at
            b += 1
            first = True
        if first or u[i] >= p:
            out[at] = ids[i]
            at += 1
    while b < len(starts):
        new_starts[b] = at
        b += 1
    return out[:at], new_starts


@njit(nogil=True, cache=True)
def adagrad_rows(weight, sums, rows, values, slot, order, grad, lr, eps):
    """Adagrad step for the rows of a sparse gradient given one row per occurrence (`rows` [n],
    `values` [n, dim]); `slot` [V] int32 all -1 (left so), `order` [>= n] int64 and `grad`
    [>= n, dim] float32 scratch. Returns how many distinct rows were updated."""
    n, dim = values.shape
    u = 0
    for i in range(n):
        if i + AHEAD < n:
            prefetch(slot, rows[i + AHEAD])
        r = rows[i]
        s = slot[r]
        if s < 0:
            s = u
            slot[r] = u
            order[u] = r
            for d in range(dim):
                grad[u, d] = 0.0
            u += 1
        for d in range(dim):
            grad[s, d] += values[i, d]
    for s in range(u):
        if s + AHEAD < u:
            prefetch_row(weight, order[s + AHEAD])
            prefetch_row(sums, order[s + AHEAD])
        r = order[s]
        slot[r] = -1
        for d in range(dim):
            g = grad[s, d]
            acc = sums[r, d] + g * g
            sums[r, d] = acc
            weight[r, d] -= lr * (g / (math.sqrt(acc) + eps))
    return u


class AdagradRows:
    """`adagrad_rows` for one table, with its scratch buffers: `slot` made once, `order` and `grad`
    grown with headroom when a batch has more occurrences than they hold."""

    def __init__(self, rows: int, dim: int) -> None:
        self.slot = np.full(rows, -1, dtype=np.int32)
        self.order, self.grad = np.empty(0, np.int64), np.empty((0, dim), np.float32)

    def step(self, weight, sums, rows, values, lr: float, eps: float) -> int:
        if len(self.order) < len(rows):
            self.order = np.empty(2 * len(rows), np.int64)
            self.grad = np.empty((2 * len(rows), self.grad.shape[1]), np.float32)
        return adagrad_rows(weight, sums, rows, values, self.slot, self.order, self.grad, lr, eps)
