"""Gradient-boosted trees as plain tensors: fitted with LightGBM, predicted with a compiled walk.

LightGBM fits the trees (`rankfit.py`); `Forest.from_lightgbm` parses its text model into flat
arrays (feature, threshold, left, right, leaf, value), which a checkpoint stores as tensors, and
`Forest.predict` walks them (numba). So `eval` and `generate` load a ranker with
`weights_only=True` and need neither LightGBM nor a pickle. Rankers of textlab 0.1 and 0.2 hold
trees that scikit-learn fitted, flattened into the same arrays: they load and predict the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import textlab


@dataclass
class Forest:
    """Flattened trees: node arrays, each tree's root, and the constant added to the sum of leaves."""

    feature: np.ndarray  # int64 [nodes]
    threshold: np.ndarray  # float64 [nodes]: x <= threshold goes left
    left: np.ndarray  # int64 [nodes] (global node index)
    right: np.ndarray  # int64 [nodes]
    leaf: np.ndarray  # bool [nodes]
    value: np.ndarray  # float64 [nodes]
    roots: np.ndarray  # int64 [trees]
    baseline: float = 0.0
    _cache: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def _compact(self) -> tuple:
        """int32 node arrays, and float32 thresholds rounded down so float32 features split exactly
        as scikit-learn's float64 comparison does."""
        if self._cache is None:
            thr = self.threshold.astype(np.float32)
            over = thr.astype(np.float64) > self.threshold
            thr[over] = np.nextafter(thr[over], np.float32(-np.inf))
            self._cache = (self.feature.astype(np.int32), thr, self.left.astype(np.int32),
                           self.right.astype(np.int32), self.roots.astype(np.int32))
        return self._cache

    def predict(self, X: np.ndarray, chunk: int = 65536, desc: str | None = None) -> np.ndarray:
        """The raw score (log-odds) of each row: the baseline plus the leaf of each tree."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        n = X.shape[0] if X.ndim == 2 else 0
        out = np.full(n, self.baseline, dtype=np.float64)
        if self.n_trees == 0 or n == 0:
            return out
        feature, thr, left, right, roots = self._compact()
        leaf, value = self.leaf.astype(np.bool_), self.value.astype(np.float64)
        with textlab.progress(n, desc or "trees", unit="row", enabled=None if desc else False) as bar:
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                _walk(X[lo:hi], feature, thr, left, right, leaf, value, roots, out[lo:hi])
                bar.advance(hi - lo)
        return out

    def to_tensors(self, prefix: str) -> dict:
        import torch

        return {f"{prefix}.feature": torch.from_numpy(self.feature.astype(np.int64)),
                f"{prefix}.threshold": torch.from_numpy(self.threshold.astype(np.float64)),
                f"{prefix}.left": torch.from_numpy(self.left.astype(np.int64)),
                f"{prefix}.right": torch.from_numpy(self.right.astype(np.int64)),
                f"{prefix}.leaf": torch.from_numpy(self.leaf.astype(bool)),
                f"{prefix}.value": torch.from_numpy(self.value.astype(np.float64)),
                f"{prefix}.roots": torch.from_numpy(self.roots.astype(np.int64)),
                f"{prefix}.baseline": torch.tensor(float(self.baseline), dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, state: dict, prefix: str) -> "Forest":
        try:
            parts = {k: state[f"{prefix}.{k}"].numpy() for k in
                     ("feature", "threshold", "left", "right", "leaf", "value", "roots")}
            baseline = float(state[f"{prefix}.baseline"])
        except (KeyError, AttributeError):
            raise textlab.CheckpointError(f"the checkpoint has no trees named {prefix!r}") from None
        return cls(baseline=baseline, **parts)

    @classmethod
    def average(cls, forests: list["Forest"]) -> "Forest":
        """One forest whose score is the mean of the given forests' scores."""
        k = len(forests)
        offset, parts = 0, []
        for f in forests:
            parts.append((f.feature, f.threshold, f.left + offset, f.right + offset, f.leaf, f.value / k,
                          f.roots + offset))
            offset += len(f.feature)
        cat = [np.concatenate([p[i] for p in parts]) for i in range(7)]
        return cls(*cat, baseline=sum(f.baseline for f in forests) / k)


_EMPTY = (np.int64, np.float64, np.int64, np.int64, bool, np.float64, np.int64)


def _tree_fields(block: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in block.splitlines() if "=" in line)


def from_lightgbm(text: str) -> Forest:
    """Flatten LightGBM's text model (`Booster.model_to_string()`) of a binary objective with numeric splits.

    Each tree's internal nodes come first, then its leaves; a child index < 0 is leaf ~index. A
    split sends x <= threshold left; no feature here is ever missing, so the missing-value
    direction never applies (a model that splits on categories or treats zeros as missing is refused).
    """
    parts = []
    offset = 0
    for block in text.split("\nTree=")[1:]:
        f = _tree_fields(block.split("\n\n")[0])
        n_leaves = int(f["num_leaves"])
        values = np.array(f["leaf_value"].split(), dtype=np.float64)
        if n_leaves == 1:
            parts.append((np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.int64),
                          np.ones(1, bool), values[:1], offset))
            offset += 1
            continue
        decision = np.array(f["decision_type"].split(), dtype=np.int64)
        if (decision & 1).any() or (((decision >> 2) & 3) == 1).any():
            raise textlab.CheckpointError("a LightGBM tree splits on a category or on zero as missing; "
                                          "the ranker's trees are numeric")
        n_int = n_leaves - 1
        child = [np.array(f[k].split(), dtype=np.int64) for k in ("left_child", "right_child")]
        left, right = ((np.where(c >= 0, c, n_int + ~c) + offset) for c in child)
        parts.append((np.concatenate([np.array(f["split_feature"].split(), dtype=np.int64), np.zeros(n_leaves, np.int64)]),
                      np.concatenate([np.array(f["threshold"].split(), dtype=np.float64), np.zeros(n_leaves)]),
                      np.concatenate([left, np.zeros(n_leaves, np.int64)]),
                      np.concatenate([right, np.zeros(n_leaves, np.int64)]),
                      np.concatenate([np.zeros(n_int, bool), np.ones(n_leaves, bool)]),
                      np.concatenate([np.zeros(n_int), values]), offset))
        offset += n_int + n_leaves
    if not parts:
        return Forest(*(np.zeros(0, dt) for dt in _EMPTY))
    cat = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    return Forest(*cat, roots=np.array([p[6] for p in parts], dtype=np.int64))


PARALLEL_ROWS = 50_000  # below this, starting threads costs more than it saves


def _walk_rows(X, feature, thr, left, right, leaf, value, roots, out):  # pragma: no cover - compiled below
    """Add each row's sum of leaf values to out; compiled twice (numba runs prange as range when not parallel)."""
    for i in prange(X.shape[0]):
        s = 0.0
        for t in range(roots.shape[0]):
            node = roots[t]
            while not leaf[node]:
                node = left[node] if X[i, feature[node]] <= thr[node] else right[node]
            s += value[node]
        out[i] += s


try:
    from numba import njit, prange

    _serial = njit(nogil=True, cache=True)(_walk_rows)
    _parallel = njit(nogil=True, cache=True, parallel=True)(_walk_rows)

    def _walk(X, *args) -> None:
        """The compiled walk; over rows in parallel, on as many threads as torch uses (`--threads`), when there are many."""
        import numba
        import torch

        threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        if threads == 1 or len(X) < PARALLEL_ROWS:
            _serial(X, *args)
        else:
            numba.set_num_threads(threads)
            _parallel(X, *args)
except ImportError:  # pragma: no cover - numba is a dependency; plain Python is slow but right
    prange = range
    _walk = _walk_rows
