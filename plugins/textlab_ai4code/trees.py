"""Gradient-boosted trees as plain tensors: trained with scikit-learn, predicted with numpy.

scikit-learn's HistGradientBoostingClassifier fits the trees; `export` flattens them into
arrays (feature, threshold, left, right, leaf, value), which a checkpoint stores as tensors, and
`Forest.predict` walks all trees at once with numpy. So `eval` and `generate` load a ranker with
`weights_only=True` and never need scikit-learn or a pickle.
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

    def predict(self, X: np.ndarray, chunk: int = 8192, desc: str | None = None) -> np.ndarray:
        """The raw score (log-odds) of each row.

        All (row, tree) pairs of a chunk descend together, one level per step, and pairs that
        reached a leaf drop out, so the work follows the trees' real depths.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        n, width = X.shape if X.ndim == 2 else (0, 0)
        out = np.full(n, self.baseline, dtype=np.float64)
        if self.n_trees == 0 or n == 0:
            return out
        feature, thr, left, right, roots = self._compact()
        flat, leaf, trees = X.reshape(-1), self.leaf, self.n_trees
        with textlab.progress(n, desc or "trees", unit="row", enabled=None if desc else False) as bar:
            for lo in range(0, n, chunk):
                m = min(chunk, n - lo)
                node = np.tile(roots, m)  # pair p is (row lo + p // trees, tree p % trees)
                base = (np.arange(m, dtype=np.int64) + lo).repeat(trees) * width
                act = np.flatnonzero(~leaf[node])
                while len(act):
                    nd = node[act]
                    nd = np.where(flat[base[act] + feature[nd]] <= thr[nd], left[nd], right[nd])
                    node[act] = nd
                    act = act[~leaf[nd]]
                out[lo:lo + m] += self.value[node].reshape(m, trees).sum(1)
                bar.advance(m)
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


def export(clf) -> Forest:
    """Flatten a fitted binary HistGradientBoostingClassifier (numeric features, no missing values)."""
    feats, thr, left, right, leaf, value, roots = [], [], [], [], [], [], []
    offset = 0
    for iteration in clf._predictors:
        nodes = iteration[0].nodes
        roots.append(offset)
        feats.append(nodes["feature_idx"].astype(np.int64))
        thr.append(nodes["num_threshold"].astype(np.float64))
        left.append(nodes["left"].astype(np.int64) + offset)
        right.append(nodes["right"].astype(np.int64) + offset)
        leaf.append(nodes["is_leaf"].astype(bool))
        value.append(nodes["value"].astype(np.float64))
        offset += len(nodes)
    if not roots:
        return Forest(*(np.zeros(0, dt) for dt in (np.int64, np.float64, np.int64, np.int64, bool, np.float64, np.int64)),
                      baseline=float(np.ravel(clf._baseline_prediction)[0]))
    return Forest(np.concatenate(feats), np.concatenate(thr), np.concatenate(left), np.concatenate(right),
                  np.concatenate(leaf), np.concatenate(value), np.array(roots, dtype=np.int64),
                  baseline=float(np.ravel(clf._baseline_prediction)[0]))
