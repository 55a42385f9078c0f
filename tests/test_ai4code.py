"""ai4code: the metric, the data layout, the grouped split, and prep from real .ipynb files."""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import random
from pathlib import Path

import pytest

import textlab
from textlab_ai4code import data as D
from textlab_ai4code import features as F
from textlab_ai4code import metrics as M


# ============================================================================ the metric
def brute_inversions(a):
    return sum(1 for i, j in itertools.combinations(range(len(a)), 2) if a[i] > a[j])


def kaggle_kendall_tau(ground_truth, predictions):
    """Kaggle's published metric (Ryan Holbrook's notebook), re-typed here as the reference."""
    def count_inversions(a):
        inversions = 0
        sorted_so_far = []
        for i, u in enumerate(a):
            j = bisect.bisect(sorted_so_far, u)
            inversions += i - j
            sorted_so_far.insert(j, u)
        return inversions

    total_inversions = 0
    total_2max = 0
    for gt, pred in zip(ground_truth, predictions):
        ranks = [gt.index(x) for x in pred]
        total_inversions += count_inversions(ranks)
        n = len(gt)
        total_2max += n * (n - 1)
    return 1 - 4 * total_inversions / total_2max


def test_inversions_match_a_brute_force_count():
    rng = random.Random(0)
    for _ in range(400):
        n = rng.randrange(0, 40)
        a = list(range(n))
        rng.shuffle(a)
        assert M.count_inversions(a) == brute_inversions(a)
    assert M.count_inversions(list(range(30, 0, -1))) == 30 * 29 // 2


def test_single_notebook_tau_equals_scipy():
    from scipy.stats import kendalltau, spearmanr

    rng = random.Random(1)
    for _ in range(100):
        n = rng.randrange(2, 60)
        truth = [f"c{i}" for i in range(n)]
        pred = truth[:]
        rng.shuffle(pred)
        ranks = [truth.index(c) for c in pred]
        expected = kendalltau(range(n), ranks).statistic
        assert M.kendall_tau([truth], [pred]) == pytest.approx(expected, abs=1e-12)
        stats = M.notebook_stats(truth, pred, {c: "markdown" for c in truth})
        assert stats["tau"] == pytest.approx(expected, abs=1e-12)
        assert stats["spearman"] == pytest.approx(spearmanr(range(n), ranks).statistic, abs=1e-12)


def test_pooled_tau_matches_kaggle_code_and_is_not_the_mean():
    rng = random.Random(2)
    truths, preds = [], []
    for k in range(30):
        n = rng.randrange(2, 50)
        t = [f"{k}-{i}" for i in range(n)]
        p = t[:]
        for _ in range(rng.randrange(0, n)):  # some swaps
            i, j = rng.randrange(n), rng.randrange(n)
            p[i], p[j] = p[j], p[i]
        truths.append(t)
        preds.append(p)
    assert M.kendall_tau(truths, preds) == pytest.approx(kaggle_kendall_tau(truths, preds), abs=1e-12)
    # 4 cells reversed + 10 cells perfect: pooled 1 - 4*6/(12+90), mean of taus (-1 + 1) / 2
    t4, t10 = list("abcd"), [str(i) for i in range(10)]
    assert M.kendall_tau([t4, t10], [t4[::-1], t10]) == pytest.approx(1 - 24 / 102)
    stats = [M.notebook_stats(t, p, {c: "code" for c in t}) for t, p in ((t4, t4[::-1]), (t10, t10))]
    assert M.summarize(stats)["mean_tau"] == pytest.approx(0.0)
    assert M.summarize(stats)["kendall_tau"] == pytest.approx(1 - 24 / 102)


def test_gap_accuracy_and_position_error_by_hand():
    types = {"c1": "code", "c2": "code", "m1": "markdown", "m2": "markdown"}
    s = M.notebook_stats(["c1", "m1", "c2", "m2"], ["m1", "c1", "c2", "m2"], types)
    assert s["gap_hits"] == 1 and s["markdown"] == 2 and s["abs_err"] == 1  # m1 one cell early, m2 right
    summary = M.summarize([s])
    assert summary["gap_accuracy"] == 0.5 and summary["position_mae"] == 0.5
    buckets = M.by_bucket([s])
    assert set(buckets) == {"1-10", "all"}


def test_a_prediction_that_is_not_a_permutation_is_refused():
    with pytest.raises(textlab.DataError, match="not a permutation"):
        M.kendall_tau([["a", "b", "c"]], [["a", "b", "b"]])
    with pytest.raises(textlab.DataError):
        M.kendall_tau([["a", "b"]], [["a", "b", "x"]])


# ============================================================================ layout, split
def make_notebooks(n_groups: int = 12, per_group: int = 2) -> list[D.Notebook]:
    out = []
    for g in range(n_groups):
        for k in range(per_group):
            cells = [("markdown", f"# Title {g}"), ("code", f"import x{g}"), ("markdown", "text"),
                     ("code", f"x{g}.run({k})"), ("markdown", "end")]
            out.append(D.kaggle_notebook(f"{g:07x}{k:07x}", cells, ancestor=f"{g:08x}"))
    return out


def test_kaggle_layout_round_trip(tmp_path):
    nbs = make_notebooks(3, 1)
    D.write_layout(tmp_path / "nb", nbs)
    obj = json.loads((tmp_path / "nb" / "train" / f"{nbs[0].id}.json").read_text())
    types = list(obj["cell_type"].values())
    assert types == ["code", "code", "markdown", "markdown", "markdown"]  # code first, in order; markdown after
    code_src = [obj["source"][c] for c, t in obj["cell_type"].items() if t == "code"]
    assert code_src == ["import x0", "x0.run(0)"]
    back = D.load_notebooks(tmp_path / "nb")
    assert [nb.id for nb in back] == sorted(nb.id for nb in nbs)
    nb = back[0]
    truth = {x.id: x for x in nbs}[nb.id]
    assert nb.order == truth.order and nb.ancestor == truth.ancestor
    assert [nb.sources[nb.index(c)] for c in nb.order][0] == "# Title 0"
    assert nb.gaps() == {nb.order[0]: 0, nb.order[2]: 1, nb.order[4]: 2}
    assert all(len(c) == 8 for c in nb.cell_ids) and len(nb.id) == 14


def test_malformed_layouts_are_one_clear_error(tmp_path):
    nbs = make_notebooks(2, 1)
    root = tmp_path / "nb"
    D.write_layout(root, nbs)
    with pytest.raises(textlab.DataError, match="no such folder"):
        D.load_notebooks(tmp_path / "missing")
    (root / "train_orders.csv").write_text("id,order\nx,y\n")
    with pytest.raises(textlab.DataError, match="no column 'cell_order'"):
        D.load_notebooks(root)
    D.write_layout(root, nbs)
    rows = (root / "train_orders.csv").read_text().splitlines()
    (root / "train_orders.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(textlab.DataError, match="has no order for notebook"):
        D.load_notebooks(root)
    assert len(D.load_notebooks(root, need_orders=False)) == 2  # generate does not need orders
    D.write_layout(root, nbs)
    first = sorted((root / "train").glob("*.json"))[0]
    first.write_text("{not json")
    with pytest.raises(textlab.DataError, match="not valid JSON"):
        D.load_notebooks(root)
    first.write_text(json.dumps({"cell_type": {"a": "code"}, "source": {"b": "x"}}))
    with pytest.raises(textlab.DataError, match="different cells"):
        D.load_notebooks(root)
    first.write_text(json.dumps({"cell_type": {"a": "raw"}, "source": {"a": "x"}}))
    with pytest.raises(textlab.DataError, match="unknown cell type"):
        D.load_notebooks(root)
    (root / "train_orders.csv").unlink()
    D.write_layout(root, nbs)
    (root / "train_orders.csv").unlink()
    with pytest.raises(textlab.DataError, match="no orders file"):
        D.load_notebooks(root)


def test_grouped_split_keeps_ancestors_together_and_is_seeded():
    nbs = make_notebooks(20, 3)
    train, valid = D.grouped_split(nbs, 0.2, seed=7)
    assert {nb.ancestor for nb in train}.isdisjoint({nb.ancestor for nb in valid})
    assert len(train) + len(valid) == 60 and 12 <= len(valid) <= 15
    again = D.grouped_split(nbs, 0.2, seed=7)
    assert [nb.id for nb in again[1]] == [nb.id for nb in valid]
    other = D.grouped_split(nbs, 0.2, seed=8)
    assert [nb.id for nb in other[1]] != [nb.id for nb in valid]
    assert D.grouped_split(nbs, 0.0, seed=7) == (nbs, [])
    with pytest.raises(textlab.UsageError):
        D.grouped_split(nbs, 1.5)
    with pytest.raises(textlab.DataError, match="too few"):
        D.grouped_split(make_notebooks(1, 3), 0.2)


def test_gap_keys_pick_the_median_gap():
    import numpy as np

    # one markdown cell, 3 code cells (4 gaps): mass 0.3 / 0.3 / 0.0 / 0.4 -> median is gap 1
    logits = np.log(np.array([0.3, 0.3, 1e-9, 0.4]))
    key = F.gap_keys(logits, 1, 3)[0]
    assert 0.5 < key < 1.5
    nb = D.kaggle_notebook("00000000000001", [("code", "a"), ("code", "b"), ("code", "c"), ("markdown", "m")])
    order = F.order_from_keys(nb, np.array([key]))
    assert [nb.cell_types[nb.index(c)] for c in order] == ["code", "markdown", "code", "code"]


# ============================================================================ prep from .ipynb
def nb4(cells, language="python", **meta):
    return {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
            "metadata": {"kernelspec": {"name": language, "language": language}, **meta}}


def code(src, outputs=True):
    return {"cell_type": "code", "source": src, "metadata": {}, "execution_count": 1,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": ["SECRET OUTPUT\n"]}] if outputs else []}


def md(src):
    return {"cell_type": "markdown", "source": src, "metadata": {}}


def write_notebooks(folder: Path) -> None:
    folder.mkdir(parents=True)
    good = nb4([md("# Loading\nWe read the data."), code(["import pandas as pd\n", "df = pd.read_csv('a.csv')"]),
                code("   \n"), md(""), {"cell_type": "raw", "source": "raw text", "metadata": {}},
                md(["## Plot\n", "A histogram ![x](data:image/png;base64," + "A" * 80 + ")"]), code("df.hist()")])
    (folder / "good.ipynb").write_text(json.dumps(good))
    (folder / "sub").mkdir()
    v3 = {"nbformat": 3, "metadata": {"language": "python"}, "worksheets": [{"cells": [
        {"cell_type": "heading", "level": 2, "source": ["Old style"]},
        {"cell_type": "code", "input": ["x = 1"], "language": "python", "outputs": []},
        {"cell_type": "markdown", "source": "Some words"},
        {"cell_type": "code", "input": "print(x)", "outputs": []}]}]}
    (folder / "sub" / "v3.ipynb").write_text(json.dumps(v3))
    (folder / "sub" / ".ipynb_checkpoints").mkdir()
    (folder / "sub" / ".ipynb_checkpoints" / "v3-checkpoint.ipynb").write_text(json.dumps(v3))
    (folder / "zcopy.ipynb").write_text(json.dumps(good))  # an exact duplicate
    (folder / "r.ipynb").write_text(json.dumps(nb4([md("# R"), code("x <- 1")], language="R")))
    (folder / "only_code.ipynb").write_text(json.dumps(nb4([code("a = 1"), code("b = 2")])))
    (folder / "broken.ipynb").write_text('{"cells": [')
    (folder / "list.ipynb").write_text("[1, 2, 3]")
    (folder / "notype.ipynb").write_text(json.dumps(nb4([{"source": "x"}, md("y"), code("z")])))
    (folder / "badsource.ipynb").write_text(json.dumps(nb4([md({"a": 1}), code("z")])))
    (folder / "latin1.ipynb").write_bytes(json.dumps(nb4([md("caf\u00e9"), code("z")])).encode("utf-8").replace(
        b"caf\\u00e9", "café".encode("latin-1")))


def test_prep_converts_real_notebooks_and_skips_bad_ones(cli, tmp_path):
    write_notebooks(tmp_path / "nbs")
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", tmp_path / "out", "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["found"] == 10 and report["kept"] == 2 and report["skipped"] == 8
    reasons = report["reasons"]
    assert reasons["duplicate of another notebook"] == 1
    assert reasons["not Python"] == 1
    assert reasons["not valid JSON"] == 1 and reasons["not a notebook (no cells)"] == 1
    assert reasons["malformed cell (no cell_type)"] == 1 and reasons["malformed cell (source is not text)"] == 1
    assert reasons["not UTF-8"] == 1
    assert any(r.startswith("too few cells") for r in reasons)
    assert {s["path"] for s in report["skipped_files"]} >= {"broken.ipynb", "r.ipynb", "zcopy.ipynb"}

    nbs = {nb.id: nb for nb in D.load_notebooks(tmp_path / "out")}
    assert len(nbs) == 2
    ids = {row["path"]: row["id"] for row in csv.DictReader(open(tmp_path / "out" / "sources.csv"))}
    good = nbs[ids["good.ipynb"]]
    text = [good.sources[good.index(c)] for c in good.order]
    assert text == ["# Loading\nWe read the data.", "import pandas as pd\ndf = pd.read_csv('a.csv')",
                    "## Plot\nA histogram ![x](data:image/png;base64,<omitted>)", "df.hist()"]
    raw = (tmp_path / "out" / "train" / f"{good.id}.json").read_text()
    assert "SECRET OUTPUT" not in raw and "raw text" not in raw
    old = nbs[ids["sub/v3.ipynb"]]
    assert [old.sources[old.index(c)] for c in old.order] == ["## Old style", "x = 1", "Some words", "print(x)"]
    assert list(csv.DictReader(open(tmp_path / "out" / "train_ancestors.csv")))[0]["ancestor_id"]

    # stable ids: again, into a fresh folder, the same notebook and cell ids
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", tmp_path / "out2", "--json")
    again = {nb.id: nb for nb in D.load_notebooks(tmp_path / "out2")}
    assert {k: v.order for k, v in again.items()} == {k: v.order for k, v in nbs.items()}
    # --language any keeps the R notebook
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", tmp_path / "out3",
              "--language", "any", "--json")
    assert json.loads(res.out)["kept"] == 3


def test_prep_refuses_to_overwrite_and_reports_missing_input(cli, tmp_path):
    write_notebooks(tmp_path / "nbs")
    assert cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", tmp_path / "out").code == 0
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", tmp_path / "out")
    assert res.code == 2 and len(res.err_lines) == 1 and "--overwrite" in res.err
    assert cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", tmp_path / "out", "--overwrite").code == 0
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "nothing", "--out", tmp_path / "o")
    assert res.code == 2 and len(res.err_lines) == 1 and "no such folder" in res.err
    (tmp_path / "empty").mkdir()
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "empty", "--out", tmp_path / "o")
    assert res.code == 2 and "no .ipynb files" in res.err
    res = cli("prep", "ai4code", "--out", tmp_path / "o")
    assert res.code == 2 and len(res.err_lines) == 1 and "--from-notebooks" in res.err


def test_prep_that_would_keep_nothing_leaves_the_old_output(cli, tmp_path):
    write_notebooks(tmp_path / "nbs")
    out = tmp_path / "out"
    assert cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", out).code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(list((out / "train").iterdir())) == 2
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", out, "--overwrite",
              "--min-markdown", "50")
    assert res.code == 2 and len(res.err_lines) == 1, res.err
    assert "none of the 10 notebooks" in res.err and "too few cells" in res.err and "nothing was written" in res.err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # into a new folder: nothing at all
    res = cli("prep", "ai4code", "--from-notebooks", tmp_path / "nbs", "--out", tmp_path / "new", "--min-code", "50")
    assert res.code == 2 and len(res.err_lines) == 1 and not (tmp_path / "new").exists()
