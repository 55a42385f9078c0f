"""ai4code's ranker at any size: trees from LightGBM as tensors, features of sampled pairs, notebooks read
from their files when used, views kept on disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textlab_ai4code import data as D
from textlab_ai4code import features as F
from textlab_ai4code import trees as T
from textlab_ai4code.sample import load_sample


def _numpy_walk(forest: T.Forest, X: np.ndarray) -> np.ndarray:
    """How textlab 0.1 walked its trees (numpy, all trees a level at a time): the reference for old checkpoints."""
    feature, thr, left, right, roots = forest._compact()
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, width = X.shape
    node = np.tile(roots, n)
    base = np.arange(n, dtype=np.int64).repeat(len(roots)) * width
    flat, act = X.reshape(-1), np.flatnonzero(~forest.leaf[node])
    while len(act):
        nd = node[act]
        nd = np.where(flat[base[act] + feature[nd]] <= thr[nd], left[nd], right[nd])
        node[act] = nd
        act = act[~forest.leaf[nd]]
    return forest.baseline + forest.value[node].reshape(n, len(roots)).sum(1)


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 12)).astype(np.float32)
    X[:, 3] = np.round(X[:, 3] * 3)  # few distinct values: thresholds between them
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 0.1 * X[:, 3] + rng.normal(0, 0.2, n) > 1.0).astype(int)
    return X, y


def test_lightgbm_trees_as_tensors_predict_what_lightgbm_predicts(monkeypatch):
    lgb = pytest.importorskip("lightgbm")
    X, y = _data()
    booster = lgb.train({"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1},
                        lgb.Dataset(X, y), num_boost_round=30)
    forest = T.from_lightgbm(booster.model_to_string())
    assert forest.n_trees == 30
    want = booster.predict(X, raw_score=True)
    assert np.array_equal(forest.predict(X), want)
    monkeypatch.setattr(T, "PARALLEL_ROWS", 100)  # the threaded walk gives the same numbers
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert np.array_equal(forest.predict(X), want)
    finally:
        torch.set_num_threads(torch_threads)
    # through the checkpoint's tensors, and averaged as stage 1 averages its two halves
    back = T.Forest.from_tensors(forest.to_tensors("s"), "s")
    assert np.array_equal(back.predict(X), want)
    assert np.allclose(T.Forest.average([forest, back]).predict(X), want, rtol=0, atol=1e-12)
    # a model whose trees are single leaves (nothing to split on)
    flat = lgb.train({"objective": "binary", "min_data_in_leaf": 10_000, "verbose": -1}, lgb.Dataset(X, y),
                     num_boost_round=3)
    assert np.allclose(T.from_lightgbm(flat.model_to_string()).predict(X), flat.predict(X, raw_score=True))


def test_trees_of_old_checkpoints_predict_as_they_did():
    """Rankers of textlab 0.1/0.2 hold scikit-learn's trees in the same arrays: the compiled walk gives
    what the numpy walk gave."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _data(seed=1)
    clf = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=15, random_state=0).fit(X, y)
    parts = {k: [] for k in ("feature", "threshold", "left", "right", "leaf", "value", "roots")}
    offset = 0
    for (predictor,) in clf._predictors:  # how textlab 0.1 exported them
        nodes = predictor.nodes
        parts["roots"].append(offset)
        parts["feature"].append(nodes["feature_idx"].astype(np.int64))
        parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
        parts["left"].append(nodes["left"].astype(np.int64) + offset)
        parts["right"].append(nodes["right"].astype(np.int64) + offset)
        parts["leaf"].append(nodes["is_leaf"].astype(bool))
        parts["value"].append(nodes["value"].astype(np.float64))
        offset += len(nodes)
    forest = T.Forest(*(np.concatenate(parts[k]) for k in ("feature", "threshold", "left", "right", "leaf", "value")),
                      roots=np.array(parts["roots"]), baseline=float(np.ravel(clf._baseline_prediction)[0]))
    got = forest.predict(X)
    assert np.allclose(got, _numpy_walk(forest, X), rtol=0, atol=1e-12)
    assert np.allclose(got, clf.decision_function(X), rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def views():
    from textlab_ai4code.rankfit import ranker_text

    notebooks = [nb for nb in D.load_notebooks(load_sample("train"))[:30] if nb.markdown and nb.code]
    text = ranker_text(notebooks, 0, 1 << 12)
    return [F.View(nb, text) for nb in notebooks]


def test_features_of_sampled_pairs_are_the_rows_of_the_full_table(views):
    rng = np.random.default_rng(0)
    for v in views:
        prior = rng.random(v.M)
        full = F.pair_features(v, prior)
        assert full.shape == (v.M * (v.C + 1), len(F.PAIR_FEATURES))
        m, j = F.all_pairs(v.M, v.C)
        keep = rng.random(len(m)) < 0.2
        assert np.array_equal(F.pair_features(v, prior, m[keep], j[keep]), full[keep])
        z = rng.normal(size=len(m))
        assert np.array_equal(F.stage2_features(v, z, m[keep], j[keep]), F.stage2_features(v, z)[keep])


def test_a_view_read_back_from_disk_gives_the_same_features(views, tmp_path):
    from textlab_ai4code.rankfit import ViewStore

    store = ViewStore(tmp_path / "views.f32")
    for v in views:
        store.add(v)
    for k in (len(views) - 1, 0, 5):
        v, back = views[k], store[k]
        prior = np.linspace(0, 1, v.M)
        assert np.array_equal(F.pair_features(v, prior), F.pair_features(back, prior))
        assert np.array_equal(back.true_gaps(), v.true_gaps())
    store.close()
    assert (tmp_path / "views.f32").stat().st_size == 4 * sum(F.View.size(v.M, v.C) for v in views)


def test_sampling_keeps_every_true_gap_and_about_the_share_of_wrong_ones(views):
    from textlab_ai4code.rankfit import sample_pairs

    kept = wrong = 0
    for k, v in enumerate(views):
        m, j, y = sample_pairs(v, 0.3, np.random.default_rng([0, k]))
        assert y.sum() == v.M and np.array_equal(j[y], v.true_gaps())  # one true gap per markdown cell
        kept += int((~y).sum())
        wrong += v.M * v.C
    assert 0.25 < kept / wrong < 0.35


def test_notebook_files_read_the_same_notebooks_when_used(tmp_path):
    notebooks = D.load_notebooks(load_sample("train"))[:25]
    D.write_layout(tmp_path / "nb", notebooks)
    eager = D.load_notebooks(tmp_path / "nb")
    lazy = D.load_notebooks(tmp_path / "nb", lazy=True)
    assert isinstance(lazy, D.NotebookFiles) and len(lazy) == len(eager)
    assert [nb.__dict__ | {"_index": None} for nb in lazy] == [nb.__dict__ | {"_index": None} for nb in eager]
    assert D.cell_counts(lazy) == D.cell_counts(eager) and D.ancestors(lazy) == D.ancestors(eager)
    tr, va = D.grouped_split(lazy, 0.3, 5)
    tr2, va2 = D.grouped_split(eager, 0.3, 5)
    assert isinstance(tr, D.NotebookFiles) and [nb.id for nb in tr] == [nb.id for nb in tr2]
    assert [nb.id for nb in va] == [nb.id for nb in va2] and [nb.id for nb in lazy[3:6]] == [nb.id for nb in eager[3:6]]
