"""recrnn data: deterministic generators with correct answers, the folder format and its loader."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch

import textlab
from textlab_recrnn import data as D

torch.set_num_threads(1)


def follow(input_text: str) -> tuple[int, int, set]:
    """An evaluator written apart from the generator: (answer, hops, root literals) of a program."""
    tokens = D.tokenize(input_text)
    assert tokens[-2] == "<?>"
    stmts = [tokens[i:i + 3] for i in range(0, len(tokens) - 2, 3)]
    defs = {lhs: (rhs, op) for rhs, op, lhs in stmts}
    assert len(defs) == len(stmts), "a variable is defined twice"
    roots = {int(rhs.strip("<>")) for rhs, _, _ in stmts if rhs.strip("<>").isdigit()}
    var, total, hops = tokens[-1], 0, 0
    while True:
        rhs, op = defs[var]
        total += int(op.strip("<>"))
        if rhs.strip("<>").isdigit():
            return (int(rhs.strip("<>")) + total) % 10, hops, roots
        var, hops = rhs, hops + 1


@pytest.mark.parametrize("order", ["shuffled", "topological"])
def test_varchain_answers_difficulty_and_chains_are_exact(order):
    s = D.ChainSettings(statements=10, chains=3, order=order)
    rng = random.Random(5)
    for d in range(s.max_difficulty() + 1):
        for _ in range(30):
            rec = D.chain_example(rng, d, s)
            answer, hops, roots = follow(rec["input_text"])
            assert rec["target_text"] == rec["input_text"] + f"<{answer}></a>"
            assert hops == d == rec["difficulty"]
            assert len(roots) == 3  # three chains, distinct root literals
            assert D.chain_value(rec["input_text"]) == answer
            tokens = D.tokenize(rec["input_text"])
            assert len(tokens) == 3 * 10 + 2
            if order == "topological":  # every right-hand variable is defined before it is used
                defined = set()
                for i in range(0, 30, 3):
                    rhs, lhs = tokens[i], tokens[i + 2]
                    assert rhs.strip("<>").isdigit() or rhs in defined
                    defined.add(lhs)


def test_pchase_has_no_arithmetic_and_a_literal_answer():
    s = D.ChainSettings(statements=8, chains=4, arithmetic=False)
    rng = random.Random(1)
    for d in range(5):
        rec = D.chain_example(rng, d, s)
        answer, hops, roots = follow(rec["input_text"])
        assert answer in roots and hops == d
        assert set(t for t in D.tokenize(rec["input_text"]) if t[1] in "+-") == {"<+0>"}


def test_folders_are_deterministic_per_seed_and_splits_do_not_overlap():
    s = D.ChainSettings(statements=7, chains=2)
    a = D.make_chain_folder(s, seed=3, train_max=2, n_train=300, n_valid=5, n_test=7)
    b = D.make_chain_folder(s, seed=3, train_max=2, n_train=300, n_valid=5, n_test=7)
    c = D.make_chain_folder(s, seed=4, train_max=2, n_train=300, n_valid=5, n_test=7)
    assert a == b and a["train"] != c["train"]
    assert Counter(r["difficulty"] for r in a["test"]) == {d: 7 for d in range(6)}
    assert {r["difficulty"] for r in a["train"]} == {0, 1, 2}
    assert {r["type"] for r in a["test"] if r["difficulty"] > 2} == {"test_ood"}
    texts = [set(r["input_text"] for r in a[k]) for k in ("train", "valid", "test")]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    vocab = set(a["vocab"])
    assert all(set(D.tokenize(r["target_text"])) <= vocab for k in ("train", "valid", "test") for r in a[k])


def test_statement_targets_match_the_evaluator():
    s = D.ChainSettings(statements=9, chains=3)
    rng = random.Random(2)
    for _ in range(50):
        rec = D.chain_example(rng, rng.randrange(7), s)
        tokens = D.tokenize(rec["input_text"])
        targets = D.statement_targets(tokens)
        assert targets, "roots are always computable"
        for pos, digit in targets:
            var = tokens[pos]  # a left-hand side, or a variable used on a right-hand side
            end = pos + 3 - pos % 3  # the program up to the end of this statement
            prefix = "".join(tokens[:end] if pos % 3 == 2 else tokens[:pos - pos % 3]) + "<?>" + var
            assert int(digit.strip("<>")) == follow(prefix)[0]
        uses = [p for p, _ in targets if p % 3 == 0]
        assert all(tokens[p] in D.NAMES for p in uses)
    assert D.statement_targets(D.tokenize("<e_1><r_2><r_3>")) is None


def test_statement_targets_stop_at_max_hops():
    """--aux-max-hops: only statements up to that depth are targets, so longer chains stay unseen."""
    s = D.ChainSettings(statements=40, chains=2, order="topological", arithmetic=False)
    rng = random.Random(4)
    for _ in range(20):
        rec = D.chain_example(rng, rng.randrange(20, 38), s)
        tokens = D.tokenize(rec["input_text"])
        full = D.statement_targets(tokens)
        capped = D.statement_targets(tokens, max_hops=3)
        assert set(capped) < set(full)
        for pos, _ in full:
            var = tokens[pos]
            hops = follow("".join(tokens[:-1]) + var)[1]  # ask the independent evaluator about that variable
            assert ((pos, _) in capped) == (hops <= 3), (pos, hops)


def test_programs_longer_than_26_statements_use_lowercase_names():
    short = D.make_chain_folder(D.ChainSettings(statements=12), seed=1, train_max=2, n_train=5, n_valid=1, n_test=1)
    assert short["vocab"] == D.chain_vocab() and len(short["vocab"]) == 58  # unchanged up to 26 statements
    s = D.ChainSettings(statements=40, chains=4, order="topological")
    long = D.make_chain_folder(s, seed=1, train_max=3, n_train=20, n_valid=1, n_test=1)
    assert len(long["vocab"]) == 58 + 14 and "<n>" in long["vocab"] and "<o>" not in long["vocab"]
    for rec in long["train"] + long["test"]:
        tokens = D.tokenize(rec["input_text"])
        assert set(tokens) <= set(long["vocab"]) and len(tokens) == 3 * 40 + 2
        assert int(D.tokenize(rec["target_text"])[-2].strip("<>")) == follow(rec["input_text"])[0]


def test_grokked_style_folders():
    comp = D.make_composition_folder(seed=0, entities=60, relations=12, out_degree=4, phi=2.0, test_size=20)
    assert len(comp["vocab"]) == 60 + 12 + 6
    types = Counter(r["type"] for r in comp["test"])
    assert set(types) <= {"id_atomic", "ood_atomic", "train_inferred", "test_inferred_iid", "test_inferred_ood"}
    graph = {}
    for r in comp["train"]:
        t = D.tokenize(r["target_text"])
        if len(t) == 4:
            graph[(t[0], t[1])] = t[2]
    for r in comp["train"]:
        t = D.tokenize(r["target_text"])
        if len(t) == 5:  # inferred: the two-hop tail
            assert graph[(graph[(t[0], t[1])], t[2])] == t[3]
    cmp_ = D.make_comparison_folder(seed=0, entities=40, attributes=3, phi=1.0, test_size=10)
    # valid (which picks best.pt) holds inferred facts of both kinds, none of them in test or train
    bigger = D.make_composition_folder(seed=0, entities=300, relations=12, out_degree=4, phi=2.0, test_size=20)
    for folder in (bigger, cmp_):
        assert {r["type"] for r in folder["valid"]} == {"valid_inferred_iid", "valid_inferred_ood"}
        held = {r["input_text"] for r in folder["valid"]}
        assert not held & {r["input_text"] for r in folder["test"]}
        assert not held & {r["input_text"] for r in folder["train"]}
        assert {"test_inferred_iid", "test_inferred_ood"} <= {r["type"] for r in folder["test"]}
    for r in cmp_["train"][:200]:
        assert r["target_text"].startswith(r["input_text"]) and r["target_text"].endswith("</a>")
    assert D.make_comparison_folder(seed=0, entities=40, attributes=3, phi=1.0, test_size=10) == cmp_


def write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / f"{name}.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


GOOD = [{"input_text": "<e_1><r_0>", "target_text": "<e_1><r_0><e_2></a>", "type": "id_atomic"},
        {"input_text": "<e_2><r_0><r_0>", "target_text": "<e_2><r_0><r_0><e_1></a>"}]
VOCAB = ["<e_1>", "<e_2>", "<r_0>", "</a>", "<a>"]


def test_any_folder_in_the_original_format_loads(tmp_path):
    folder = write(tmp_path / "g", train=GOOD, valid=GOOD[1:], test=GOOD, vocab=VOCAB)
    ds = D.load_dataset(str(folder))
    assert ds.vocab == VOCAB + ["<pad>"]
    tr = ds.splits["train"]
    assert tr.seq.shape == (2, 5) and tr.length.tolist() == [2, 3]
    assert [ds.vocab[i] for i in tr.answer.tolist()] == ["<e_2>", "<e_1>"]
    assert tr.types == ["id_atomic", "train"] and not tr.has_difficulty
    assert ds.is_ood(ds.splits["test"]) == [False, False]
    again = D.load_dataset(str(folder))  # from the cache
    assert torch.equal(again.splits["train"].seq, tr.seq) and again.vocab == ds.vocab


@pytest.mark.parametrize("files,message", [
    ({"train": GOOD, "valid": GOOD, "test": GOOD}, "vocab file not found"),
    ({"train": "[{", "valid": GOOD, "test": GOOD, "vocab": VOCAB}, "is not valid JSON"),
    ({"train": {"a": 1}, "valid": GOOD, "test": GOOD, "vocab": VOCAB}, "must hold a JSON list"),
    ({"train": [{"input_text": "<e_1>"}], "valid": GOOD, "test": GOOD, "vocab": VOCAB}, "record 0 needs string"),
    ({"train": [{"input_text": "<e_1>", "target_text": "<e_1><e_2>"}], "valid": GOOD, "test": GOOD, "vocab": VOCAB},
     "input_text + one answer token + </a>"),
    ({"train": [{"input_text": "e1", "target_text": "e1<e_2></a>"}], "valid": GOOD, "test": GOOD, "vocab": VOCAB},
     "not a sequence of <...> tokens"),
    ({"train": [{"input_text": "<x>", "target_text": "<x><e_2></a>"}], "valid": GOOD, "test": GOOD, "vocab": VOCAB},
     "token <x> is not in vocab.json"),
    ({"train": GOOD, "valid": GOOD, "test": GOOD, "vocab": ["<e_1>", "<e_1>"]}, "appears twice"),
    ({"train": GOOD, "valid": GOOD, "test": [], "vocab": VOCAB}, "holds no records"),
    ({"train": [dict(GOOD[0], difficulty=-1)], "valid": GOOD, "test": GOOD, "vocab": VOCAB}, "non-negative integer"),
])
def test_malformed_folders_are_one_data_error(tmp_path, files, message):
    folder = write(tmp_path / "bad", **files)
    with pytest.raises(textlab.DataError) as info:
        D.load_dataset(str(folder))
    assert message in info.value.line()
