"""The SGNS model: two embedding matrices, and a batched torch update for GPUs.

The model is two tables of `vocab_size x dim` floats: `in_vectors` (the word vectors users
keep, gensim's `wv`) and `out_vectors` (gensim's `syn1neg`). Training updates them in place:
on a CPU with the compiled kernels of `kernels.py`, on a GPU (or with `--backend torch`) with
`torch_step` below. Both touch only the rows of the words in a step (sparse updates); there is
no optimizer state, as in word2vec.c: plain SGD with a linearly decaying learning rate.
"""

from __future__ import annotations

from typing import Any

from .config import SGNSConfig  # noqa: F401  (the model's configuration)


def build_sgns(config: SGNSConfig, vocab: Any = None) -> Any:
    """The module a checkpoint loads into (`artifact.build_model()`)."""
    import torch

    class SGNS(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.in_vectors = torch.nn.Parameter(torch.zeros(config.vocab_size, config.dim), requires_grad=False)
            self.out_vectors = torch.nn.Parameter(torch.zeros(config.vocab_size, config.dim), requires_grad=False)

        def forward(self, targets: Any, contexts: Any, negatives: Any) -> Any:
            """Mean SGNS loss of (target, context) pairs against negatives [B, K]."""
            v = self.in_vectors[contexts]
            u = self.out_vectors[torch.cat([targets[:, None], negatives], 1)]
            scores = torch.bmm(u, v.unsqueeze(2)).squeeze(2)
            return -(torch.nn.functional.logsigmoid(scores[:, 0])
                     + torch.nn.functional.logsigmoid(-scores[:, 1:]).sum(1)).mean()

    return SGNS()


def init_vectors(vocab_size: int, dim: int, seed: int) -> tuple[Any, Any]:
    """word2vec.c / gensim initialisation: in-vectors uniform in [-0.5/dim, 0.5/dim), out-vectors 0."""
    import numpy as np

    import textlab

    rng = np.random.default_rng(seed % 2**64)  # --seed -1 is a seed too (the same draws as before for seed >= 0)
    # huge pages (textlab.huge_zeros): the kernels read rows of both at random
    syn0 = rng.random(out=textlab.huge_zeros((vocab_size, dim)), dtype=np.float32)  # in place: no temporary copy
    syn0 -= np.float32(0.5)  # (a vocabulary of 2.5M words and 100 dimensions is 1 GB a matrix)
    syn0 /= np.float32(dim)
    syn1 = textlab.huge_zeros((vocab_size, dim))
    return syn0, syn1


def torch_negatives(threshold: Any, alias: Any, shape: tuple[int, ...], generator: Any) -> Any:
    """Draws from the alias table (see data.alias_table) on the table's device."""
    import torch

    v = threshold.shape[0]
    j = torch.randint(0, v, shape, generator=generator, device=threshold.device)
    u = torch.randint(0, 2**32 - 1, shape, generator=generator, device=threshold.device, dtype=torch.int64)
    return torch.where(threshold[j] >= u, j, alias[j])


def window_groups(targets: Any, max_group: int) -> Any:
    """Group ids of pairs for shared negatives: a run of consecutive pairs with the same target (a
    centre word's window, as the pairs are made and stored), cut every `max_group` pairs, as the
    compiled kernels group them. -> int64 [n], 0, 0, 1, ..."""
    import torch

    n = len(targets)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=targets.device)
    pos = torch.arange(n, device=targets.device)
    change = torch.ones(n, dtype=torch.bool, device=targets.device)
    change[1:] = targets[1:] != targets[:-1]
    run_start = torch.cummax(torch.where(change, pos, torch.zeros_like(pos)), 0).values
    starts = change | ((pos - run_start) % max(1, max_group) == 0)
    return torch.cumsum(starts.long(), 0) - 1


def torch_step(syn0: Any, syn1: Any, targets: Any, contexts: Any, negatives: Any, lr: float) -> tuple[float, int]:
    """One batched SGNS step with manual sparse updates (index_add_ into the touched rows).

    Same update as the compiled kernel's per-pair loop, for a whole batch at once: scores and
    gradients from the current rows, then the rows are moved. Returns (loss sum, pairs).
    """
    import torch

    v = syn0.index_select(0, contexts)  # [B, d]
    rows = torch.cat([targets[:, None], negatives], 1)  # [B, 1 + K]
    u = syn1.index_select(0, rows.reshape(-1)).view(rows.shape[0], rows.shape[1], -1)  # [B, 1 + K, d]
    scores = torch.bmm(u, v.unsqueeze(2)).squeeze(2)  # [B, 1 + K]
    label = torch.zeros_like(scores)
    label[:, 0] = 1.0
    g = (label - torch.sigmoid(scores)) * lr
    syn0.index_add_(0, contexts, torch.bmm(g.unsqueeze(1), u).squeeze(1))
    syn1.index_add_(0, rows.reshape(-1), (g.unsqueeze(2) * v.unsqueeze(1)).reshape(-1, v.shape[1]))
    loss = -(torch.nn.functional.logsigmoid(scores[:, 0]) + torch.nn.functional.logsigmoid(-scores[:, 1:]).sum(1))
    return float(loss.sum()), int(rows.shape[0])
