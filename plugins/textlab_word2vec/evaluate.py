"""Using trained vectors: neighbours, analogies, word-pair similarity, word2vec-format export
(the work of the neighbors, eval and export verbs, at the end).

The evaluations follow gensim's `KeyedVectors.evaluate_word_analogies` and
`evaluate_word_pairs`, so that figures compare with gensim's: words are looked up after the
same cleaning as the corpus (lowercase, NFC, `ё` folded if the corpus was), an analogy
question counts only if its four words are among the `restrict` most frequent words, the
answer is the nearest word by cosine to b - a + c other than a, b and c (3CosAdd), and word
pairs with a word outside the vocabulary are skipped and reported as OOV.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import textlab
from textlab import DataError, UsageError

from .config import EvalOptions, ExportOptions, NeighborsOptions
from .data import clean
from .report import kv_table, num, pct


@dataclass
class Vectors:
    """Word vectors from a checkpoint, with the normalisation its corpus used."""

    itos: list[str]
    counts: list[int]
    matrix: Any  # torch float32 [V, d]
    fold_yo: bool = False
    _unit: Any = field(default=None, repr=False)
    _vocab: Any = field(default=None, repr=False)

    @classmethod
    def from_artifact(cls, artifact: textlab.Artifact) -> "Vectors":
        import torch

        if artifact.task != "word2vec":
            raise textlab.CheckpointError(f"{artifact.path} is a {artifact.task!r} checkpoint, not a word2vec one")
        vocab = artifact.vocab or {}
        itos = vocab.get("itos") if isinstance(vocab, dict) else None
        matrix = artifact.state_dict.get("in_vectors")
        if not itos or matrix is None or not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 \
                or matrix.shape[0] != len(itos):
            raise textlab.CheckpointError(f"{artifact.path} holds no word vectors matching its vocabulary")
        fold = bool((artifact.extra.get("normalize") or {}).get("fold_yo", False))
        counts = vocab.get("counts") or [0] * len(itos)
        return cls(list(itos), list(counts), matrix.float(), fold)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def unit(self) -> Any:
        """Rows scaled to length 1 (cosine = dot product)."""
        if self._unit is None:
            import torch

            self._unit = torch.nn.functional.normalize(self.matrix, dim=1)
        return self._unit

    @property
    def vocab(self) -> textlab.Vocab:
        if self._vocab is None:
            self._vocab = textlab.Vocab(self.itos, self.counts)
        return self._vocab

    def key(self, word: str) -> str:
        """A word as the corpus spells it (the same cleaning as `prep`)."""
        cleaned = clean(word, self.fold_yo)
        return cleaned if cleaned and " " not in cleaned else word.lower()

    def get(self, word: str, restrict: int | None = None) -> int | None:
        i = self.vocab.stoi.get(self.key(word))
        return None if i is None or (restrict and i >= restrict) else i

    def index(self, word: str) -> int:
        """The id of `word`; a word not in the vocabulary is one UsageError naming the closest words."""
        i = self.get(word)
        if i is not None:
            return i
        key = self.key(word)
        close = self.vocab.suggest(key) if key else []
        hint = f"closest: {', '.join(close[:5])}" if close else "no close words in the vocabulary"
        raise UsageError(f"{word!r} is not in the vocabulary ({len(self):,} words)", hint=hint)


# ============================================================================ neighbours
_TERM = re.compile(r"([+-]?)\s*([^\s+-]+)")


def parse_queries(words: list[str]) -> list[tuple[list[str], list[str]]]:
    """Command-line words -> queries of (positive, negative) words.

    `москва` -> one query; `москва петербург` -> two queries; any `+`/`-` makes the whole line
    one analogy: `king -man +woman`, `king - man + woman`, `"king-man+woman"` (words never hold
    + or -: prep turns them into spaces).
    """
    text = " ".join(words).strip()
    if not text:
        raise UsageError("give a word, or an analogy such as: king -- -man +woman")
    terms = _TERM.findall(text)
    leftover = _TERM.sub("", text).strip()
    if leftover or not terms:
        raise UsageError(f"cannot read the query {text!r}", hint="a word, or an analogy such as: king -- -man +woman")
    if not any(sign for sign, _ in terms):
        return [([w], []) for _, w in terms]
    pos = [w for s, w in terms if s != "-"]
    neg = [w for s, w in terms if s == "-"]
    if not pos:
        raise UsageError(f"the query {text!r} has no positive word", hint="e.g. king -- -man +woman")
    return [(pos, neg)]


def nearest(vec: Vectors, positive: list[str], negative: list[str], k: int = 10,
            restrict: int | None = None) -> list[tuple[str, float, int]]:
    """The k words nearest by cosine to sum(positive) - sum(negative) (unit vectors, as gensim),
    query words excluded. Returns (word, cosine, count) triples."""
    import torch

    ids_pos = [vec.index(w) for w in positive]
    ids_neg = [vec.index(w) for w in negative]
    unit = vec.unit
    query = unit[ids_pos].sum(0) - (unit[ids_neg].sum(0) if ids_neg else 0)
    query = torch.nn.functional.normalize(query, dim=0)
    pool = unit[:restrict] if restrict else unit
    scores = pool @ query
    inside = {i for i in ids_pos + ids_neg if i < len(scores)}  # query words in the pool are not answers
    if len(scores) <= len(inside):
        raise UsageError(f"--restrict {restrict} leaves no word to search: the most frequent "
                         f"{'word is' if len(scores) == 1 else f'{len(scores):,} words are'} in the query", hint="raise --restrict")
    for i in inside:
        scores[i] = -math.inf
    top = torch.topk(scores, min(k, len(scores) - len(inside)))
    return [(vec.itos[i], float(s), int(vec.counts[i])) for s, i in zip(top.values.tolist(), top.indices.tolist())]


# ============================================================================ analogies
def analogies(vec: Vectors, path: str | Path, restrict: int = 30_000, batch: int = 2048) -> dict:
    """Accuracy on an analogy file (questions-words.txt format: `: section` lines, then `a b c d`)."""
    import torch

    sections: list[dict] = []
    quads: list[tuple[int, int, int, int, int]] = []
    skipped = lines = 0
    for raw in textlab.iter_lines(Path(path)):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            sections.append({"section": line.lstrip(": ").strip(), "correct": 0, "total": 0})
            continue
        parts = line.split()
        if len(parts) != 4:
            raise DataError(f"{path}: expected 4 words per question, got {line!r}")
        lines += 1
        if not sections:
            sections.append({"section": "all", "correct": 0, "total": 0})
        ids = [vec.get(w, restrict) for w in parts]
        if any(i is None for i in ids):
            skipped += 1
            continue
        quads.append((len(sections) - 1, *ids))  # type: ignore[arg-type]
    if lines == 0:
        raise DataError(f"{path} holds no analogy questions (lines 'a b c d' under ': section' headers)")
    unit = vec.unit[:restrict]
    correct = 0
    if quads:
        q = torch.tensor(quads, dtype=torch.long)
        for s in range(0, len(q), batch):
            chunk = q[s:s + batch]
            a, b, c, d = chunk[:, 1], chunk[:, 2], chunk[:, 3], chunk[:, 4]
            target = torch.nn.functional.normalize(unit[b] - unit[a] + unit[c], dim=1)
            scores = target @ unit.T
            rows = torch.arange(len(chunk))
            for col in (a, b, c):
                scores[rows, col] = -math.inf
            hit = scores.argmax(1) == d
            for sec, h in zip(chunk[:, 0].tolist(), hit.tolist()):
                sections[sec]["total"] += 1
                sections[sec]["correct"] += int(h)
            correct += int(hit.sum())
    semantic = [s for s in sections if not s["section"].startswith("gram")]
    syntactic = [s for s in sections if s["section"].startswith("gram")]

    def acc(group: list[dict]) -> float | None:
        n = sum(s["total"] for s in group)
        return round(sum(s["correct"] for s in group) / n, 4) if n else None

    return {"file": str(path), "restrict": restrict, "accuracy": acc(sections), "semantic": acc(semantic),
            "syntactic": acc(syntactic), "evaluated": len(quads), "questions": lines, "skipped_oov": skipped,
            "correct": correct, "sections": [{**s, "accuracy": acc([s])} for s in sections]}


# ============================================================================ word-pair similarity
def similarity(vec: Vectors, path: str | Path) -> dict:
    """Spearman and Pearson correlation of cosine similarity with human scores.

    File: `word1 word2 score` per line (tab- or space-separated), `#` comments; a header line
    whose score is not a number is skipped.
    """
    import torch

    gold: list[float] = []
    pairs: list[tuple[int, int]] = []
    oov = 0
    for raw in textlab.iter_lines(Path(path)):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 3:
            raise DataError(f"{path}: expected 'word1 word2 score', got {line!r}")
        try:
            score = float(parts[2].replace(",", "."))
        except ValueError:
            continue  # a header
        a, b = vec.get(parts[0]), vec.get(parts[1])
        if a is None or b is None:
            oov += 1
            continue
        gold.append(score)
        pairs.append((a, b))
    if not gold and not oov:
        raise DataError(f"{path} holds no word pairs with scores")
    result = {"file": str(path), "pairs": len(gold), "oov": oov,
              "oov_pct": round(100.0 * oov / max(1, len(gold) + oov), 2), "spearman": None, "pearson": None}
    if len(gold) >= 3:
        idx = torch.tensor(pairs)
        unit = vec.unit
        cos = (unit[idx[:, 0]] * unit[idx[:, 1]]).sum(1).double()
        g = torch.tensor(gold, dtype=torch.float64)
        result["spearman"] = round(_pearson(_ranks(cos), _ranks(g)), 4)
        result["pearson"] = round(_pearson(cos, g), 4)
    return result


def _ranks(x: Any) -> Any:
    """Ranks from 1, ties get their average rank (as scipy.stats.rankdata)."""
    import torch

    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    ranks = torch.empty_like(x)
    n = len(x)
    i = 0
    values = sorted_x.tolist()
    while i < n:
        j = i
        while j + 1 < n and values[j + 1] == values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _pearson(x: Any, y: Any) -> float:
    x = x - x.mean()
    y = y - y.mean()
    den = float((x.square().sum() * y.square().sum()).sqrt())
    return float((x * y).sum()) / den if den else float("nan")


# ============================================================================ export
def export(vec: Vectors, path: str | Path, fmt: str = "word2vec-text", limit: int | None = None) -> dict:
    """Write the word2vec text or binary format (what gensim's KeyedVectors.load_word2vec_format,
    fastText tools, spaCy's init vectors and most others read): a header `count dim`, then one
    word per line with its vector, as text or as little-endian float32 bytes."""
    n = len(vec) if not limit else min(limit, len(vec))
    matrix = vec.matrix[:n].numpy().astype("<f4", copy=False)
    path = Path(path)
    with textlab.atomic_write(path, "wb") as fh:
        fh.write(f"{n} {vec.dim}\n".encode())
        if fmt == "word2vec-binary":
            for word, row in zip(vec.itos[:n], matrix):
                fh.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            row_fmt = " ".join(["%.6g"] * vec.dim)
            for start in range(0, n, 4096):
                rows = matrix[start:start + 4096].tolist()
                fh.write("".join(f"{w} {row_fmt % tuple(r)}\n" for w, r in zip(vec.itos[start:start + 4096], rows)).encode("utf-8"))
    return {"path": str(path), "format": fmt, "words": n, "dim": vec.dim, "bytes": path.stat().st_size}


# ============================================================================ the verbs' work
def show_neighbors(artifact: textlab.Artifact, opts: NeighborsOptions) -> dict:
    """Tables of the nearest words of each query (see the neighbors verb)."""
    from rich.table import Table

    vec = Vectors.from_artifact(artifact)
    restrict = opts.restrict
    pool = f"{len(vec):,} words" if not restrict or restrict >= len(vec) else \
        f"the {restrict:,} most frequent of {len(vec):,}"
    results = []
    for positive, negative in parse_queries(opts.words):
        found = nearest(vec, positive, negative, opts.top, restrict)
        label = " ".join(positive[:1] + [f"+{w}" for w in positive[1:]] + [f"-{w}" for w in negative])
        title = f"neighbours of {label} (cosine; among {pool})"
        table = Table(title=title, min_width=len(title) + 2)
        for col, just in (("#", "right"), ("word", "left"), ("cosine", "right"), ("count", "right")):
            table.add_column(col, justify=just)
        for i, (w, cos, count) in enumerate(found, 1):
            table.add_row(str(i), w, f"{cos:.3f}", f"{count:,}")
        textlab.show(table)
        results.append({"query": label, "positive": positive, "negative": negative,
                        "neighbors": [{"word": w, "cosine": round(c, 4), "count": n} for w, c, n in found]})
    return results[0] if len(results) == 1 else {"queries": results}


def evaluate_artifact(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Analogy accuracy and word-pair similarity of a checkpoint's vectors, shown and written to
    eval/word2vec-eval.json (see the eval verb)."""
    if opts.analogies is None and not opts.similarity:
        raise UsageError("nothing to evaluate", hint="pass --analogies FILE and/or --similarity FILE")
    for path in [opts.analogies, *opts.similarity]:
        if path is not None and not Path(path).is_file():
            raise DataError(f"no such file: {path}")
    vec = Vectors.from_artifact(artifact)
    result: dict = {"checkpoint": str(artifact.path), "words": len(vec)}
    if opts.analogies is not None:
        result["analogies"] = analogies(vec, opts.analogies, opts.restrict)
        _analogy_table(result["analogies"], Path(opts.analogies).name, opts.restrict)
    if opts.similarity:
        result["similarity"] = [similarity(vec, p) for p in opts.similarity]
        _similarity_table(result["similarity"])
    out = artifact.output_dir("eval") / "word2vec-eval.json"
    textlab.write_json(out, result)
    textlab.status(f"written: {out}")
    return result


def _analogy_table(a: dict, name: str, restrict: int) -> None:
    from rich.table import Table

    t = Table(title=f"analogies: {name} (top {restrict:,} words; {a['evaluated']:,} of {a['questions']:,} questions "
                    "in vocabulary)")
    for col in ("section", "correct", "total", "accuracy"):
        t.add_column(col, justify="left" if col == "section" else "right")
    for s in a["sections"]:
        t.add_row(s["section"], f"{s['correct']:,}", f"{s['total']:,}", pct(s["accuracy"]))
    for key in ("semantic", "syntactic", "accuracy"):
        t.add_row(f"[bold]{'total' if key == 'accuracy' else key}[/bold]", "", "", f"[bold]{pct(a[key])}[/bold]")
    textlab.show(t)


def _similarity_table(rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="word-pair similarity (cosine vs human scores)")
    for col in ("file", "spearman", "pearson", "pairs", "oov"):
        t.add_column(col, justify="left" if col == "file" else "right")
    for s in rows:
        t.add_row(Path(s["file"]).name, num(s["spearman"]), num(s["pearson"]), f"{s['pairs']:,}", f"{s['oov_pct']:.1f}%")
    textlab.show(t)


def export_artifact(artifact: textlab.Artifact, opts: ExportOptions) -> dict:
    """Write a checkpoint's vectors in word2vec format (see the export verb)."""
    vec = Vectors.from_artifact(artifact)
    suffix = ".bin" if opts.fmt == "word2vec-binary" else ".txt"
    output = opts.output
    if output is None:
        output = (artifact.run_dir / "outputs" / f"vectors{suffix}") if artifact.run_dir else \
            artifact.path.with_suffix(suffix)
    if Path(output).is_dir():
        raise UsageError(f"--output {output} is a folder; give a file name")
    result = export(vec, output, opts.fmt, opts.limit)
    kv_table("export", [("file", result["path"]), ("format", opts.fmt),
                        ("words", f"{result['words']:,} x {result['dim']}"), ("size", f"{result['bytes'] / 1e6:,.1f} MB")])
    return result
