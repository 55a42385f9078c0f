"""The compiled inner loops (numba): pair generation and the SGNS updates.

Why compiled loops and not batched torch: see the README ("Where the time goes"). In short, an
SGNS step is 6 dot products of 100 floats per pair and 7 random rows read and written; a
batched torch step spends its time gathering rows into temporaries and scattering them back
(index_select, bmm, index_add_), not in arithmetic. A loop that works on the rows in place,
with the rows of one window kept in cache, is several times faster per pair.

Conventions (word2vec.c and gensim): `syn0` holds the input ("word") vectors, `syn1` the output
vectors; for a centre word w and a context word c, the row syn0[c] learns to predict w against
`negative` words drawn from the unigram distribution raised to 0.75. The centre word, not the
context, is the positive target, as in word2vec.c.

Shared negatives (the default, `shared=True`): the negatives are drawn once per centre word and
used for every context word of its window (Ji et al. 2016, "Parallelizing Word2Vec in Shared
and Distributed Memory"). The window's inputs (about 2 x 3 rows) and targets (1 + negative rows)
are read once and updated together: ~12 row reads per centre instead of ~40, which is where the
speed comes from. `shared=False` is the classic loop (fresh negatives per pair).

Random numbers: word2vec.c's 64-bit linear congruential generator, seeded per job, so a job's
draws do not depend on which thread runs it or when.

All functions release the GIL (`nogil`): the training loop runs one job per thread
(Hogwild: threads update the shared matrices without locks, as word2vec.c and gensim do).

Prefetching (`prefetch=True`): while a centre word's rows are updated, the rows the next centre
will read are already on their way into the cache: its positive row, its negatives (the
generator is deterministic, so they are drawn ahead exactly as they will be drawn) and the
context word entering its window. With a vocabulary of millions of words nearly every one of
those rows is a cache miss; waiting for them one by one was most of the kernel's time. The
hint changes no number (a test trains with and without it and compares the matrices).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from textlab.jit import prefetch_row

MAX_EXP = np.float32(6.0)  # beyond |score| > 6 the sigmoid is taken as 0 or 1 (word2vec.c)
_MUL = np.uint64(25214903917)
_ADD = np.uint64(11)
_S16 = np.uint64(16)
_MASK32 = np.uint64(0xFFFFFFFF)


@njit(nogil=True, cache=True, inline="always")
def _next(rnd):
    return rnd * _MUL + _ADD


@njit(nogil=True, cache=True, inline="always")
def _u32(rnd):
    return (rnd >> _S16) & _MASK32


@njit(nogil=True, cache=True, inline="always")
def _prefetch_targets(rnd, threshold, alias, syn1, centre, negative, ahead):
    """Prefetch the rows of syn1 that `_negatives(rnd, ..., centre, ...)` will give: the same draws, into `ahead`."""
    _, nt = _negatives(rnd, threshold, alias, centre, negative, ahead)
    for j in range(nt):
        prefetch_row(syn1, ahead[j])


@njit(nogil=True, cache=True)
def _subsample(ids, a, b, keep, buf, rnd):
    """Copy the kept words of ids[a:b] into buf; return (count, rnd)."""
    n = 0
    for i in range(a, b):
        w = ids[i]
        rnd = _next(rnd)
        if keep[w] >= _u32(rnd):
            buf[n] = w
            n += 1
    return n, rnd


@njit(nogil=True, cache=True)
def make_pairs(ids, offsets, s0, s1, keep, window, seed, out_t, out_c):
    """(centre, context) pairs of sentences s0..s1-1 into out_t/out_c; return (pairs, kept words)."""
    rnd = np.uint64(seed)
    longest = 0
    for s in range(s0, s1):
        longest = max(longest, offsets[s + 1] - offsets[s])
    buf = np.empty(longest, dtype=np.int32)
    p = 0
    kept = 0
    win = np.uint64(window)
    for s in range(s0, s1):
        n, rnd = _subsample(ids, offsets[s], offsets[s + 1], keep, buf, rnd)
        kept += n
        for pos in range(n):
            rnd = _next(rnd)
            reduced = np.int64(_u32(rnd) % win)
            lo = max(0, pos - window + reduced)
            hi = min(n, pos + window + 1 - reduced)
            for c in range(lo, hi):
                if c != pos:
                    out_t[p] = buf[pos]
                    out_c[p] = buf[c]
                    p += 1
    return p, kept


@njit(nogil=True, cache=True, inline="always")
def _negatives(rnd, threshold, alias, centre, negative, tg):
    """tg[0] = centre, tg[1:] = negatives drawn with the alias table (the centre is skipped)."""
    tg[0] = centre
    nt = 1
    v = np.uint64(threshold.shape[0])
    for _ in range(negative):
        rnd = _next(rnd)
        j = (rnd >> _S16) % v
        rnd = _next(rnd)
        t = np.int32(j) if threshold[j] >= _u32(rnd) else alias[j]
        if t != centre:
            tg[nt] = t
            nt += 1
    return rnd, nt


@njit(nogil=True, cache=True, fastmath=True)
def _update(syn0, syn1, ctxs, m, tg, nt, alpha, g_buf, delta, want_loss):
    """One SGNS step for inputs syn0[ctxs[:m]] against targets syn1[tg[:nt]] (tg[0] positive).

    Scores and gradients are computed from the current rows, then syn1 and syn0 are updated:
    for m == 1 this is exactly word2vec.c's per-pair update. Returns the loss if asked, else 0.
    """
    dim = syn0.shape[1]
    loss = 0.0
    for i in range(m):
        r0 = ctxs[i]
        for j in range(nt):
            r1 = tg[j]
            f = np.float32(0.0)
            for k in range(dim):
                f += syn0[r0, k] * syn1[r1, k]
            label = np.float32(1.0) if j == 0 else np.float32(0.0)
            if f > MAX_EXP:
                g = (label - np.float32(1.0)) * alpha
            elif f < -MAX_EXP:
                g = label * alpha
            else:
                g = (label - np.float32(1.0) / (np.float32(1.0) + np.exp(-f))) * alpha
            g_buf[i, j] = g
            if want_loss:
                x = -f if j == 0 else f  # loss = log(1 + exp(x))
                loss += x if x > 30.0 else math.log1p(math.exp(x))
    for i in range(m):
        for k in range(dim):
            delta[i, k] = np.float32(0.0)
        for j in range(nt):
            g = g_buf[i, j]
            r1 = tg[j]
            for k in range(dim):
                delta[i, k] += g * syn1[r1, k]
    for j in range(nt):
        r1 = tg[j]
        for i in range(m):
            g = g_buf[i, j]
            r0 = ctxs[i]
            for k in range(dim):
                syn1[r1, k] += g * syn0[r0, k]
    for i in range(m):
        r0 = ctxs[i]
        for k in range(dim):
            syn0[r0, k] += delta[i, k]
    return loss


@njit(nogil=True, cache=True)
def train_window(ids, offsets, s0, s1, keep, threshold, alias, syn0, syn1, window, negative,
                 alpha0, alpha1, seed, shared, loss_every, prefetch):
    """Train on sentences s0..s1-1, making pairs on the fly (subsampling, shrunk windows).

    The learning rate goes linearly from alpha0 to alpha1 over the job's words. The loss is
    computed for one centre word in `loss_every` (an unbiased sample; computing it for every
    pair costs a log per dot product). Returns (kept words, pairs, loss sum, pairs in loss sum).
    """
    rnd = np.uint64(seed)
    longest = 0
    for s in range(s0, s1):
        longest = max(longest, offsets[s + 1] - offsets[s])
    buf = np.empty(longest, dtype=np.int32)
    ctxs = np.empty(2 * window, dtype=np.int32)
    tg = np.empty(negative + 1, dtype=np.int32)
    ahead = np.empty(negative + 1, dtype=np.int32)
    g_buf = np.empty((2 * window, negative + 1), dtype=np.float32)
    delta = np.empty((2 * window, syn0.shape[1]), dtype=np.float32)
    total = max(1, offsets[s1] - offsets[s0])
    base = offsets[s0]
    win = np.uint64(window)
    kept = 0
    pairs = 0
    loss = 0.0
    loss_n = 0
    centres = 0
    for s in range(s0, s1):
        alpha = np.float32(alpha0 + (alpha1 - alpha0) * ((offsets[s] - base) / total))
        n, rnd = _subsample(ids, offsets[s], offsets[s + 1], keep, buf, rnd)
        kept += n
        for pos in range(n):
            rnd = _next(rnd)
            reduced = np.int64(_u32(rnd) % win)
            lo = max(0, pos - window + reduced)
            hi = min(n, pos + window + 1 - reduced)
            centre = buf[pos]
            centres += 1
            want = centres % loss_every == 0
            if shared:
                m = 0
                for c in range(lo, hi):
                    if c != pos:
                        ctxs[m] = buf[c]
                        m += 1
                if m == 0:
                    continue
                rnd, nt = _negatives(rnd, threshold, alias, centre, negative, tg)
                if prefetch and pos + 1 < n:  # the next centre: its window draw, then its negatives
                    _prefetch_targets(_next(rnd), threshold, alias, syn1, buf[pos + 1], negative, ahead)
                    if pos + 1 + window < n:
                        prefetch_row(syn0, buf[pos + 1 + window])
                loss += _update(syn0, syn1, ctxs, m, tg, nt, alpha, g_buf, delta, want)
                pairs += m
                if want:
                    loss_n += m
            else:
                for c in range(lo, hi):
                    if c == pos:
                        continue
                    ctxs[0] = buf[c]
                    rnd, nt = _negatives(rnd, threshold, alias, centre, negative, tg)
                    loss += _update(syn0, syn1, ctxs, 1, tg, nt, alpha, g_buf, delta, want)
                    pairs += 1
                    if want:
                        loss_n += 1
    return kept, pairs, loss, loss_n


@njit(nogil=True, cache=True)
def train_pairs(targets, contexts, i0, i1, threshold, alias, syn0, syn1, negative, alpha0, alpha1,
                seed, shared, loss_every, max_group, prefetch):
    """Train on pairs i0..i1-1 of a shard. With `shared`, consecutive pairs with the same target
    (a centre word's window, as `pairs` writes them) share their negatives, as in train_window.
    Returns (pairs, loss sum, pairs in loss sum)."""
    rnd = np.uint64(seed)
    ctxs = np.empty(max_group, dtype=np.int32)
    tg = np.empty(negative + 1, dtype=np.int32)
    ahead = np.empty(negative + 1, dtype=np.int32)
    g_buf = np.empty((max_group, negative + 1), dtype=np.float32)
    delta = np.empty((max_group, syn0.shape[1]), dtype=np.float32)
    total = max(1, i1 - i0)
    loss = 0.0
    loss_n = 0
    groups = 0
    i = i0
    while i < i1:
        centre = targets[i]
        m = 0
        if shared:
            while i + m < i1 and targets[i + m] == centre and m < max_group:
                ctxs[m] = contexts[i + m]
                m += 1
        else:
            ctxs[0] = contexts[i]
            m = 1
        alpha = np.float32(alpha0 + (alpha1 - alpha0) * ((i - i0) / total))
        rnd, nt = _negatives(rnd, threshold, alias, centre, negative, tg)
        nxt = i + m
        if prefetch and nxt < i1:  # the next group: its negatives and its first contexts
            _prefetch_targets(rnd, threshold, alias, syn1, targets[nxt], negative, ahead)
            for c in range(nxt, min(i1, nxt + (m if shared else 1))):
                prefetch_row(syn0, contexts[c])
        groups += 1
        want = groups % loss_every == 0
        loss += _update(syn0, syn1, ctxs, m, tg, nt, alpha, g_buf, delta, want)
        if want:
            loss_n += m
        i += m
    return i1 - i0, loss, loss_n
