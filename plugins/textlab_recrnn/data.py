"""Data for recrnn: the original project's folder format, and generators that write it.

A data folder holds `train.json`, `valid.json`, `test.json` (JSON lists of records) and
`vocab.json` (a JSON list of token strings). A record is

    {"input_text": "<7><+0><A><A><+3><C>...<?><C>", "target_text": input_text + "<0></a>",
     "type": "train", "difficulty": 3}

Texts are concatenations of `<...>` tokens; `target_text` is `input_text` + one answer token +
`</a>` (the "single target token" is the token just before `</a>`). `type` is optional (the
Grokked Transformers train/valid files have none) and `difficulty` is an optional integer that
this plugin's generators add (the number of hops). Any folder in this format loads, including the
Grokked Transformers comparison/composition data that the original project used.

Generators (all deterministic from a seed, plain `random.Random`):
  * `varchain`: shuffled variable-binding chains mod 10, difficulty = hops of the query chain;
  * `pchase`: the same without arithmetic (pure pointer chasing; has a guess-a-literal baseline);
  * `comparison`, `composition`: Grokked-style knowledge-base tasks (types id/ood, no difficulty);
  * `sample`: a tiny varchain for tests and demos (`--data sample`).
"""

from __future__ import annotations

import functools
import json
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import textlab

SPLITS = ("train", "valid", "test")
END = "</a>"
PAD = "<pad>"
TOKEN = re.compile(r"<[^<>]*>")
# Variable names: A-Z, then a-z for programs of more than 26 statements (a program of n statements
# draws its names from the first max(26, n), so programs of up to 26 statements are unchanged).
NAMES = [f"<{c}>" for c in string.ascii_uppercase + string.ascii_lowercase]
_NAME_SET = frozenset(NAMES)
DIGITS = [f"<{i}>" for i in range(10)]
OPS = [f"<+{i}>" for i in range(10)] + [f"<-{i}>" for i in range(1, 10)]
QUERY = "<?>"


# ============================================================================ tokens
def tokenize(text: str) -> list[str]:
    """`"<A><7>"` -> `["<A>", "<7>"]`; None if the text is not made only of `<...>` tokens."""
    tokens = TOKEN.findall(text)
    if sum(map(len, tokens)) != len(text):
        return None  # type: ignore[return-value]
    return tokens


def name_pool(statements: int) -> list[str]:
    """The variable names programs of `statements` statements draw from."""
    return NAMES[:max(26, statements)]


def chain_vocab(statements: int = 12) -> list[str]:
    """The vocabulary of varchain / pchase / sample: 58 tokens up to 26 statements, one more name per
    statement above that."""
    return name_pool(statements) + DIGITS + OPS + [QUERY, END, PAD]


# ============================================================================ varchain / pchase
@dataclass
class ChainSettings:
    statements: int = 12
    chains: int = 4
    modulus: int = 10
    order: str = "shuffled"  # or "topological"
    arithmetic: bool = True  # False: pchase (every derived statement is a plain copy)

    def max_difficulty(self) -> int:
        return self.statements - self.chains


def chain_example(rng: random.Random, d: int, s: ChainSettings) -> dict:
    """One program of `s.statements` statements in `s.chains` chains; the query chain has `d` hops.

    A statement is 3 tokens `rhs op lhs`, read "lhs := rhs op": a root `7 +0 X` (X = 7) or a
    derived binding `X +4 Y` (Y = X + 4 mod 10). The left-hand side comes last, so a causal model
    can gather a statement's right-hand side at the position of the variable it defines. The query
    `? V` names the last variable of the query chain; the answer is predicted at `V`.
    Root literals are distinct, so guessing a literal of the prompt is right 1/chains of the time.
    """
    if not 0 <= d <= s.max_difficulty():
        raise ValueError(f"difficulty {d} outside 0..{s.max_difficulty()}")
    names = rng.sample(name_pool(s.statements), s.statements)
    rest = s.statements - (d + 1)
    cuts = sorted(rng.sample(range(1, rest), s.chains - 2)) if s.chains > 1 else []
    lengths = [d + 1] + [b - a for a, b in zip([0, *cuts], [*cuts, rest])] if s.chains > 1 else [d + 1]
    roots = rng.sample(range(s.modulus), s.chains)
    chains, k = [], 0
    for length, root in zip(lengths, roots):
        chain, value, prev = [], root, None
        for j in range(length):
            lhs = names[k]
            k += 1
            if j == 0:
                chain.append((lhs, DIGITS[root], "<+0>"))
            else:
                c = rng.randrange(s.modulus) if s.arithmetic else 0
                op = f"<+{c}>" if c == 0 or rng.random() < 0.5 else f"<-{s.modulus - c}>"
                value = (value + c) % s.modulus
                chain.append((lhs, prev, op))
            prev = lhs
        chains.append((chain, value))
    order = _interleave(rng, [c for c, _ in chains]) if s.order == "topological" else \
        rng.sample([st for c, _ in chains for st in c], s.statements)
    query_chain, answer = chains[0]
    input_text = "".join(rhs + op + lhs for lhs, rhs, op in order) + QUERY + query_chain[-1][0]
    return {"input_text": input_text, "target_text": input_text + DIGITS[answer] + END, "difficulty": d}


def _interleave(rng: random.Random, chains: list[list]) -> list:
    """A random interleaving that keeps each chain's order (definitions before uses)."""
    slots = [i for i, c in enumerate(chains) for _ in c]
    rng.shuffle(slots)
    pos = [0] * len(chains)
    out = []
    for i in slots:
        out.append(chains[i][pos[i]])
        pos[i] += 1
    return out


def chain_value(input_text: str, modulus: int = 10) -> int:
    """Evaluate a chain program independently of the generator (tests use this as the oracle)."""
    tokens = tokenize(input_text)
    body, query = tokens[:-2], tokens[-1]
    defs = {body[i + 2]: (body[i], body[i + 1]) for i in range(0, len(body), 3)}
    total, var, seen = 0, query, 0
    while True:
        rhs, op = defs[var]
        total += int(op[1:-1])
        if rhs in DIGITS:
            return (int(rhs[1:-1]) + total) % modulus
        var, seen = rhs, seen + 1
        if seen > len(defs):
            raise ValueError("cyclic program")


def statement_targets(tokens: list[str], modulus: int = 10,
                      max_hops: int | None = None) -> list[tuple[int, str]] | None:
    """Per-statement targets of a chain program, for every statement whose value follows from the
    statements before it: (position of its left-hand side, digit of its value), and, when its
    right-hand side is a variable, (position of that variable, digit of the variable's value) -- the
    same lookup the final query `? v` asks for. None if `tokens` (an input) is not a chain program.
    `max_hops`: only statements at most that many hops from their root literal (a root is 0 hops),
    so that chains longer than the training queries' stay unseen in training.
    Used by `--aux statements`; the data files do not store them."""
    body = tokens[:-2]
    if len(tokens) < 5 or tokens[-2] != QUERY or tokens[-1] not in _NAME_SET or len(body) % 3:
        return None
    known: dict[str, tuple[int, int]] = {}  # variable -> (value, hops)
    out = []
    for i in range(0, len(body), 3):
        rhs, op, lhs = body[i:i + 3]
        if op not in OPS or lhs not in _NAME_SET or (rhs not in DIGITS and rhs not in _NAME_SET):
            return None
        base, hops = (int(rhs[1:-1]), -1) if rhs in DIGITS else known.get(rhs, (None, 0))
        if base is None:
            continue
        known[lhs] = ((base + int(op[1:-1])) % modulus, hops + 1)
        if rhs in _NAME_SET and (max_hops is None or hops <= max_hops):
            out.append((i, DIGITS[base]))
        if max_hops is None or hops + 1 <= max_hops:
            out.append((i + 2, DIGITS[known[lhs][0]]))
    return out


def chain_records(seed: int, split: str, n: int, difficulties: Sequence[int], s: ChainSettings,
                  avoid: set | None = None, per_difficulty: bool = False) -> list[dict]:
    """`n` records (or `n` per difficulty), deterministic from (seed, split); skips texts in `avoid`."""
    rng = random.Random(f"recrnn/{seed}/{split}")
    out: list[dict] = []
    seen = set(avoid or ())
    plan = [d for d in difficulties for _ in range(n)] if per_difficulty else None
    total = len(plan) if plan is not None else n
    tries = 0
    while len(out) < total:
        d = plan[len(out)] if plan is not None else rng.choice(list(difficulties))
        rec = chain_example(rng, d, s)
        tries += 1
        if rec["input_text"] in seen:
            if tries > 20 * total + 1000:
                raise textlab.UsageError(f"cannot make {total} distinct {split} programs with these settings")
            continue
        seen.add(rec["input_text"])
        out.append({"input_text": rec["input_text"], "target_text": rec["target_text"],
                    "type": split, "difficulty": d})
    return out


def make_chain_folder(s: ChainSettings, *, seed: int, train_max: int, n_train: int, n_valid: int, n_test: int,
                      test_max: int | None = None) -> dict[str, Any]:
    """train (difficulty 0..train_max, uniform), valid/test (n per difficulty 0..test_max), vocab.

    valid and test are made first and the train stream skips any program they contain.
    Records of difficulty > train_max get the type `test_ood`, the others `test_id` (or `valid_*`).
    """
    top = s.max_difficulty() if test_max is None else test_max
    if not 0 <= train_max <= top <= s.max_difficulty():
        raise textlab.UsageError(f"need 0 <= train max ({train_max}) <= test max ({top}) <= statements - chains "
                                 f"({s.max_difficulty()})")
    splits: dict[str, Any] = {}
    held: set[str] = set()
    for split, n in (("test", n_test), ("valid", n_valid)):
        recs = chain_records(seed, split, n, range(top + 1), s, avoid=held, per_difficulty=True)
        for r in recs:
            r["type"] = f"{split}_{'ood' if r['difficulty'] > train_max else 'id'}"
            held.add(r["input_text"])
        splits[split] = recs
    splits["train"] = chain_records(seed, "train", n_train, range(train_max + 1), s, avoid=held)
    splits["vocab"] = chain_vocab(s.statements)
    return splits


# ============================================================================ Grokked-style tasks
def make_composition_folder(*, seed: int, entities: int = 2000, relations: int = 200, out_degree: int = 20,
                            phi: float = 3.6, test_size: int = 3000, max_train: int | None = None) -> dict[str, Any]:
    """Two-hop composition over a random knowledge graph, in the style of Grokked Transformers.

    Every entity gets `out_degree` relations to random tails (atomic facts `<e_h><r_i>` -> `<e_t>`);
    inferred facts `<e_h><r_i><r_j>` -> tail of the two-hop path. 5% of the atomic facts are
    "ood": inferred facts that use two of them are `test_inferred_ood`, those using one are dropped.
    train = all atomic facts + round(phi * #id atomic) inferred ones (capped by `max_train`).
    """
    rng = random.Random(f"recrnn/composition/{seed}")
    ent = [f"<e_{i}>" for i in range(entities)]
    rel = [f"<r_{i}>" for i in range(relations)]
    if out_degree > relations:
        raise textlab.UsageError(f"--out-degree {out_degree} exceeds --relations {relations}")
    graph = {h: [(r, rng.randrange(entities)) for r in rng.sample(range(relations), out_degree)]
             for h in range(entities)}
    atomics = [(h, r, t) for h in range(entities) for r, t in graph[h]]
    ood = set(rng.sample(atomics, round(0.05 * len(atomics))))

    def item(tokens: list[str], answer: str, kind: str) -> dict:
        text = "".join(tokens)
        return {"input_text": text, "target_text": text + answer + END, "type": kind}

    id_atomic = [item([ent[h], rel[r]], ent[t], "id_atomic") for h, r, t in atomics if (h, r, t) not in ood]
    ood_atomic = [item([ent[h], rel[r]], ent[t], "ood_atomic") for h, r, t in atomics if (h, r, t) in ood]
    train_inf, test_iid, test_ood = [], [], []
    for h in range(entities):
        for r1, b in graph[h]:
            for r2, t in graph[b]:
                bad = ((h, r1, b) in ood) + ((b, r2, t) in ood)
                rec = ([ent[h], rel[r1], rel[r2]], ent[t])
                if bad == 2:
                    test_ood.append(rec)
                elif bad == 0:
                    (test_iid if rng.random() < 0.005 else train_inf).append(rec)
    n_inf = round(phi * len(id_atomic))
    if max_train is not None:
        n_inf = max(0, min(n_inf, max_train - len(id_atomic) - len(ood_atomic)))
    train_inf = rng.sample(train_inf, min(n_inf, len(train_inf)))
    choose = lambda xs, k: rng.sample(xs, min(k, len(xs)))  # noqa: E731
    train = id_atomic + ood_atomic + [item(t, a, "train_inferred") for t, a in train_inf]
    iid_test, iid_valid = _hold_out(rng, test_iid, test_size)
    ood_test, ood_valid = _hold_out(rng, test_ood, test_size)
    probes = (choose(id_atomic, test_size) + choose(ood_atomic, test_size)
              + [item(t, a, "train_inferred") for t, a in choose(train_inf, test_size)]
              + [item(t, a, "test_inferred_iid") for t, a in iid_test]
              + [item(t, a, "test_inferred_ood") for t, a in ood_test])
    valid = ([item(t, a, "valid_inferred_iid") for t, a in iid_valid]
             + [item(t, a, "valid_inferred_ood") for t, a in ood_valid])
    vocab = ent + rel + ["<mask>", "<sep>", "<a>", END, "<q>", "</q>"]
    return {"train": train, "valid": valid, "test": probes, "vocab": vocab}


def make_comparison_folder(*, seed: int, entities: int = 1000, attributes: int = 20, values: int = 20,
                           phi: float = 3.6, test_size: int = 3000) -> dict[str, Any]:
    """Attribute comparison in the style of Grokked Transformers.

    Atomic facts `<e_i><attr_a>` -> `<v>`; inferred `<attr_a><q><e_i><mask><e_j>` -> `<attr_a_L>`
    with L = 0 (<), 1 (=), 2 (>). Per attribute 10% of entities are "ood": pairs of two ood
    entities are `test_inferred_ood`; pairs of id entities are train (or 10% `test_inferred_iid`).
    Pairs are sampled (not enumerated), so large entity counts stay fast.
    """
    rng = random.Random(f"recrnn/comparison/{seed}")
    ent = [f"<e_{i}>" for i in range(entities)]
    att = [f"<attr_{i}>" for i in range(attributes)]
    kb = [[rng.randrange(values) for _ in range(attributes)] for _ in range(entities)]
    id_atomic, ood_atomic, train_inf, test_iid, test_ood = [], [], [], [], []

    def atomic(e: int, a: int, kind: str) -> dict:
        text = ent[e] + att[a]
        return {"input_text": text, "target_text": text + f"<{kb[e][a]}>" + END, "type": kind}

    def inferred(a: int, e1: int, e2: int, kind: str) -> dict:
        label = (kb[e1][a] > kb[e2][a]) - (kb[e1][a] < kb[e2][a]) + 1
        text = att[a] + "<q>" + ent[e1] + "<mask>" + ent[e2]
        return {"input_text": text, "target_text": text + f"<attr_{a}_{label}>" + END, "type": kind}

    n_id_atomic = 0
    pools = []
    for a in range(attributes):
        oods = set(rng.sample(range(entities), round(0.1 * entities)))
        ids = [e for e in range(entities) if e not in oods]
        id_atomic += [atomic(e, a, "id_atomic") for e in ids]
        ood_atomic += [atomic(e, a, "ood_atomic") for e in sorted(oods)]
        n_id_atomic += len(ids)
        pools.append((a, ids, sorted(oods)))
    n_train = round(phi * n_id_atomic)
    seen: set = set()

    def sample_pair(pool: list[int]) -> tuple[int, int]:
        e1, e2 = rng.sample(pool, 2)
        return e1, e2

    valid_iid, valid_ood = [], []
    held = 2 * test_size  # inferred iid facts for test and valid (disjoint: valid picks best.pt)
    tries = 0
    while len(train_inf) < n_train or len(test_iid) + len(valid_iid) < held:
        tries += 1
        if tries > 50 * (n_train + held) + 1000:
            break  # too few id pairs for all of it (tiny --entities)
        a, ids, _ = rng.choice(pools)
        if len(ids) < 2:
            continue
        e1, e2 = sample_pair(ids)
        if (a, e1, e2) in seen:
            continue
        seen.add((a, e1, e2))
        if len(test_iid) + len(valid_iid) < held and rng.random() < 0.1:
            if len(test_iid) <= len(valid_iid):
                test_iid.append(inferred(a, e1, e2, "test_inferred_iid"))
            else:
                valid_iid.append(inferred(a, e1, e2, "valid_inferred_iid"))
        elif len(train_inf) < n_train:
            train_inf.append(inferred(a, e1, e2, "train_inferred"))
    for i in range(2 * test_size):
        a, _, oods = rng.choice(pools)
        if len(oods) >= 2:
            e1, e2 = sample_pair(oods)
            if (a, e1, e2) in seen:
                continue
            seen.add((a, e1, e2))
            if i % 2 == 0:
                test_ood.append(inferred(a, e1, e2, "test_inferred_ood"))
            else:
                valid_ood.append(inferred(a, e1, e2, "valid_inferred_ood"))
    choose = lambda xs, k: rng.sample(xs, min(k, len(xs)))  # noqa: E731
    probes = test_ood + choose(id_atomic, test_size) + choose(ood_atomic, test_size) + test_iid \
        + choose(train_inf, test_size)
    vocab = ent + att + [f"<{v}>" for v in range(values)] + ["<mask>", "<sep>", "<a>", END, "<q>", "</q>"] \
        + [f"<attr_{a}_{i}>" for a in range(attributes) for i in range(3)]
    return {"train": id_atomic + ood_atomic + train_inf, "valid": valid_iid + valid_ood, "test": probes, "vocab": vocab}


def _hold_out(rng: random.Random, pool: list, size: int) -> tuple[list, list]:
    """`size` items for test and up to `size` others for valid; a small pool is split in half."""
    items = rng.sample(pool, len(pool))
    if len(items) >= 2 * size:
        return items[:size], items[size:2 * size]
    half = (len(items) + 1) // 2
    return items[:half], items[half:]


def sample_split(split: str) -> list[dict]:
    """`--data sample`: a tiny varchain (6 statements, 2 chains; train on 0..2 hops, test 0..4)."""
    return _sample_folder()[split]


@functools.lru_cache(maxsize=1)
def _sample_folder() -> dict[str, Any]:
    return make_chain_folder(ChainSettings(statements=6, chains=2), seed=0, train_max=2, n_train=512, n_valid=16,
                             n_test=32)


def generate(opts: Any) -> tuple[dict[str, Any], dict]:
    """The splits and settings `textlab prep recrnn` writes (`opts`: its PrepOptions, resolved)."""
    settings: dict[str, Any] = {"task": opts.task, "seed": opts.data_seed}
    if opts.task in ("varchain", "pchase"):
        s = ChainSettings(statements=opts.statements, chains=opts.chains, order=opts.order,
                          arithmetic=opts.task == "varchain")
        splits = make_chain_folder(s, seed=opts.data_seed, train_max=opts.train_max, n_train=opts.n_train,
                                   n_valid=opts.n_valid, n_test=opts.n_test, test_max=opts.test_max)
        settings.update(statements=opts.statements, chains=opts.chains, order=opts.order, train_max=opts.train_max,
                        test_max=opts.test_max if opts.test_max is not None else s.max_difficulty(),
                        n_train=opts.n_train, n_valid=opts.n_valid, n_test=opts.n_test, chance=1 / 10,
                        literal_guess=1 / opts.chains)
    elif opts.task == "composition":
        entities = opts.entities or 2000
        splits = make_composition_folder(seed=opts.data_seed, entities=entities, relations=opts.relations,
                                         out_degree=opts.out_degree, phi=opts.phi, test_size=opts.test_size)
        settings.update(entities=entities, relations=opts.relations, out_degree=opts.out_degree, phi=opts.phi)
    else:
        entities = opts.entities or 1000
        splits = make_comparison_folder(seed=opts.data_seed, entities=entities, attributes=opts.attributes,
                                        phi=opts.phi, test_size=opts.test_size)
        settings.update(entities=entities, attributes=opts.attributes, phi=opts.phi)
    empty = [k for k in SPLITS if not splits[k]]
    if empty:
        raise textlab.UsageError(f"these settings make an empty {empty[0]} split (no test_inferred_ood facts)",
                                 hint="use more --entities")
    return splits, settings


def prepare(opts: Any) -> dict:
    """`textlab prep recrnn`: generate a data folder at `opts.out` (refusing to overwrite data
    unless `opts.force`). Returns what it wrote."""
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise textlab.UsageError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any((out / f"{s}.json").exists() for s in (*SPLITS, "vocab")) and not opts.force:
        raise textlab.UsageError(f"{out} already holds data", hint="pass --force to overwrite, or another --out")
    with textlab.Timer() as timer:
        splits, settings = generate(opts)
        counts = write_folder(out, splits, settings)
    textlab.status(f"wrote {out} in {timer.seconds:.1f}s")
    return {"out": str(out), "records": counts, "vocab": len(splits["vocab"]), "settings": settings}


def describe(data: str) -> dict:
    """`textlab analyze recrnn`: records, lengths, answers, types and difficulties of each split."""
    ds = load_dataset(data)
    report: dict[str, Any] = {"data": data, "vocab": len(ds.vocab), "splits": {}}
    for name, sp in ds.splits.items():
        lengths = sp.length.float()
        answers = Counter(ds.vocab[i] for i in sp.answer.tolist())
        top, top_n = answers.most_common(1)[0]
        diffs = Counter(sp.difficulty) if sp.has_difficulty else {}
        report["splits"][name] = {
            "records": len(sp), "length": {"min": int(lengths.min()), "mean": float(lengths.mean()),
                                           "max": int(lengths.max())},
            "answers": dict(answers.most_common()), "majority": {"token": top, "share": top_n / len(sp)},
            "types": dict(Counter(sp.types).most_common()),
            "difficulty": {str(k): v for k, v in sorted(diffs.items())}, "ood": sum(ds.is_ood(sp)),
        }
    report["chance"] = 1 / ds.answer_classes()
    report["train_max_difficulty"] = ds.train_max_difficulty()
    return report


def write_folder(out: Path, splits: dict[str, Any], info: dict) -> dict[str, int]:
    """Write train/valid/test.json + vocab.json (+ a README.json describing how it was made)."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        with textlab.atomic_write(out / f"{split}.json", "w", encoding="utf-8") as fh:
            json.dump(splits[split], fh, separators=(",", ":"))
        counts[split] = len(splits[split])
    textlab.write_json(out / "vocab.json", splits["vocab"])
    textlab.write_json(out / "made_by.json", info)
    return counts


# ============================================================================ loading
@dataclass(eq=False)  # compared and hashed by identity (tensors have no useful ==); train caches per split
class Split:
    """One encoded split: padded full sequences and where each answer is."""

    name: str
    seq: Any  # LongTensor [N, T]: input + answer + </a>, right-padded with <pad>
    length: Any  # LongTensor [N]: number of input tokens (the answer is predicted at length - 1)
    answer: Any  # LongTensor [N]: the answer token id
    types: list[str]
    difficulty: list[int | None]

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @property
    def has_difficulty(self) -> bool:
        return bool(self.difficulty) and all(d is not None for d in self.difficulty)

    def groups(self) -> list[str]:
        """The column each record falls in: `d3` when difficulties exist, else its type."""
        if self.has_difficulty:
            return [f"d{d}" for d in self.difficulty]
        return list(self.types)


@dataclass
class Dataset:
    vocab: list[str]
    splits: dict[str, Split]
    source: str
    index: dict[str, int] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        return self.index[PAD]

    def train_max_difficulty(self) -> int | None:
        tr = self.splits.get("train")
        if tr is None or not tr.has_difficulty:
            return None
        return max(tr.difficulty)

    def is_ood(self, split: Split) -> list[bool]:
        """Out of distribution: difficulty above the largest in train, else a type containing 'ood'."""
        top = self.train_max_difficulty()
        if top is not None and split.has_difficulty:
            return [d > top for d in split.difficulty]
        return ["ood" in t for t in split.types]

    def answer_classes(self) -> int:
        """Distinct answer tokens in train (chance level = 1 / this)."""
        tr = self.splits.get("train") or next(iter(self.splits.values()))
        return len(set(tr.answer.tolist()))


def read_records(path: Path, split: str) -> list[dict]:
    data = textlab.read_json(path, f"{split} file")
    if not isinstance(data, list):
        raise textlab.DataError(f"{path} must hold a JSON list of records, not a {type(data).__name__}")
    return data


def read_vocab(path: Path) -> list[str]:
    vocab = textlab.read_json(path, "vocab file")
    if isinstance(vocab, dict):  # {token: id} also loads
        try:
            vocab = [t for t, _ in sorted(vocab.items(), key=lambda kv: int(kv[1]))]
        except (TypeError, ValueError):
            raise textlab.DataError(f"{path}: a vocab dict must map tokens to integer ids") from None
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
        raise textlab.DataError(f"{path} must hold a JSON list of token strings")
    dup = [t for t, c in Counter(vocab).items() if c > 1]
    if dup:
        raise textlab.DataError(f"{path}: token {dup[0]!r} appears twice")
    return vocab


def encode_split(name: str, records: list[dict], index: dict[str, int], where: str) -> Split:
    """Check every record and encode it; the first bad record is one DataError naming it."""
    import torch

    seqs, lengths, answers, types, diffs = [], [], [], [], []
    for i, rec in enumerate(records):
        at = f"{where} record {i}"
        if not isinstance(rec, dict):
            raise textlab.DataError(f"{at} is not an object")
        inp, tgt = rec.get("input_text"), rec.get("target_text")
        if not isinstance(inp, str) or not isinstance(tgt, str):
            raise textlab.DataError(f"{at} needs string fields 'input_text' and 'target_text'")
        ti, tt = tokenize(inp), tokenize(tgt)
        if ti is None or tt is None:
            raise textlab.DataError(f"{at}: text is not a sequence of <...> tokens")
        if not ti or len(tt) != len(ti) + 2 or tt[:len(ti)] != ti or tt[-1] != END:
            raise textlab.DataError(f"{at}: target_text must be input_text + one answer token + {END}")
        try:
            ids = [index[t] for t in tt]
        except KeyError as exc:
            raise textlab.DataError(f"{at}: token {exc.args[0]} is not in vocab.json") from None
        d = rec.get("difficulty")
        if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 0):
            raise textlab.DataError(f"{at}: 'difficulty' must be a non-negative integer")
        t = rec.get("type", name)
        seqs.append(ids)
        lengths.append(len(ti))
        answers.append(ids[len(ti)])
        types.append(str(t))
        diffs.append(d)
    if not seqs:
        raise textlab.DataError(f"{where} holds no records")
    width = max(map(len, seqs))
    pad = index[PAD]
    seq = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, ids in enumerate(seqs):
        seq[i, :len(ids)] = torch.tensor(ids)
    return Split(name, seq, torch.tensor(lengths), torch.tensor(answers), types, diffs)


def aux_targets(split: Split, vocab: list[str], max_hops: int | None = None) -> Any:
    """LongTensor like `split.seq` holding the per-statement target ids (-100 elsewhere); see
    `statement_targets` (`max_hops`: only statements up to that many hops)."""
    import torch

    index = {t: i for i, t in enumerate(vocab)}
    aux = torch.full(split.seq.shape, -100, dtype=torch.long)
    for r in range(len(split)):
        tokens = [vocab[i] for i in split.seq[r, : int(split.length[r])].tolist()]
        targets = statement_targets(tokens, max_hops=max_hops)
        if targets is None:
            raise textlab.UsageError("--aux statements needs varchain or pchase data (3-token statements and a "
                                     f"'? v' query); record {r} of train is not one")
        for pos, tok in targets:
            aux[r, pos] = index[tok]
    return aux


def load_dataset(data: str, splits: Iterable[str] = SPLITS) -> Dataset:
    """`--data`: a folder in the original format, or `sample`. Encoded splits are cached."""
    import torch

    source = textlab.resolve("recrnn", data)
    splits = list(splits)
    if source.kind == "registered":
        vocab = source.spec.load("vocab")
        raw = {s: (source.spec.load(s), f"{data}:{s}") for s in splits}
    elif source.kind == "local":
        folder = source.path
        if not folder.is_dir():
            raise textlab.DataError(f"{folder} is not a folder; recrnn reads a folder with train.json, valid.json, "
                                    "test.json and vocab.json", hint="make one with: textlab prep recrnn --out DIR")
        key = source.fingerprint(splits, "v1")
        cached = textlab.cache_dir("recrnn", "encoded") / f"{key}.pt"
        if cached.exists():
            try:
                blob = torch.load(cached, weights_only=True)
                return _from_blob(blob, str(folder))
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
                cached.unlink(missing_ok=True)
        vocab = read_vocab(folder / "vocab.json")
        raw = {s: (read_records(folder / f"{s}.json", s), str(folder / f"{s}.json")) for s in splits}
    else:
        raise textlab.DataError(f"recrnn reads a data folder or 'sample', not the hub dataset {data!r}",
                                hint="make a folder with: textlab prep recrnn --task varchain --out data/varchain")
    if PAD not in vocab:
        vocab = [*vocab, PAD]
    if END not in vocab:
        raise textlab.DataError(f"vocab of {data} has no {END} token")
    index = {t: i for i, t in enumerate(vocab)}
    ds = Dataset(vocab, {s: encode_split(s, recs, index, where) for s, (recs, where) in raw.items()}, data, index)
    if source.kind == "local":
        with textlab.atomic_write(cached, "wb") as fh:
            torch.save(_to_blob(ds), fh)
    return ds


def _to_blob(ds: Dataset) -> dict:
    return {"vocab": ds.vocab, "splits": {n: {"seq": s.seq, "length": s.length, "answer": s.answer, "types": s.types,
                                               "difficulty": [-1 if d is None else d for d in s.difficulty]}
                                           for n, s in ds.splits.items()}}


def _from_blob(blob: dict, source: str) -> Dataset:
    vocab = list(blob["vocab"])
    splits = {n: Split(n, s["seq"], s["length"], s["answer"], list(s["types"]),
                       [None if d < 0 else d for d in s["difficulty"]]) for n, s in blob["splits"].items()}
    return Dataset(vocab, splits, source, {t: i for i, t in enumerate(vocab)})
