"""Where the embedding layer starts: a word2vec text file (`--init-embeddings`) or vectors an
embedder plugin first learns on the train part's text (`--pretrain`).

    matrix, found, dim = read_word2vec(path, vocab)        # a word2vec text file, checked line by line
    info = init_embeddings(net, path, vocab)                # copy the vectors of the words it has
    name, note = pretrain_choice(model, "auto", tokens)     # which embedder --pretrain means (resolve)
    info = pretrain_embeddings(run, net, "word2vec", loaded)  # learn them, then copy them in

The plugins do not import each other: word2vec registers an embedder (`textlab_embedders`) and
this task asks the registry for it by name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import textlab

from . import data as D

# ============================================================================ a word2vec text file
NOT_WORD2VEC = "expected an optional 'COUNT DIM' line, then 'WORD NUMBER NUMBER ...' lines, as word2vec-text exports"


def _numbers(parts: list[str]) -> bool:
    try:
        [float(x) for x in parts]
    except ValueError:
        return False
    return bool(parts)


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def _check_text(path: Path) -> None:
    """A binary word2vec file (or any binary file) is one line saying so, not a UTF-8 decoding error."""
    import gzip

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            head = fh.read(4096)
    except (OSError, EOFError):
        return  # iter_lines reports it
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a character cut by the 4096-byte read
            if _is_header(head.split(b"\n", 1)[0].decode("ascii", "replace").split()):
                raise textlab.DataError(f"--init-embeddings {path} is in the binary word2vec format; it reads the text format",
                                        hint="export with 'textlab export RUN --format word2vec-text'") from None
            raise textlab.DataError(f"--init-embeddings {path} is not a text file", hint=NOT_WORD2VEC) from None


def _not_word2vec(path: Path, n: int, line: str) -> textlab.DataError:
    shown = line.strip()
    shown = shown if len(shown) <= 40 else shown[:39] + "…"
    return textlab.DataError(f"--init-embeddings {path} is not a word2vec text file: line {n} ({shown!r}) is not a "
                             "word followed by numbers", hint=NOT_WORD2VEC)


def read_word2vec(path: Path, vocab: textlab.Vocab, dim: int | None = None) -> tuple[Any, Any, int]:
    """Vectors of the vocabulary's words from a word2vec text file (`N D` header optional, .gz ok).

    -> (matrix [len(vocab), D], found mask [len(vocab)], D). A word missing in the exact spelling
    is looked up lowercased. Malformed lines are one DataError naming the line; a file that is not
    in the word2vec text format at all (plain text, the binary format) is one DataError saying so.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise textlab.DataError(f"--init-embeddings: no such file: {path}")
    _check_text(path)
    want = {w: i for i, w in enumerate(vocab.itos)}
    rows: dict[int, list[float]] = {}
    lower_rows: dict[int, list[float]] = {}
    checked = False
    for n, line in enumerate(textlab.iter_lines(path), 1):
        parts = line.rstrip().split(" ")
        if n == 1 and _is_header(parts):
            dim = dim or int(parts[1])
            continue
        if not line.strip():
            continue
        if not checked:  # the first vector line decides whether this is a word2vec file at all
            if not _numbers(parts[1:]):
                raise _not_word2vec(path, n, line)
            checked = True
        if dim is None:
            dim = len(parts) - 1
        if len(parts) != dim + 1:
            if not _numbers(parts[1:]):
                raise _not_word2vec(path, n, line)
            raise textlab.DataError(f"--init-embeddings {path}: line {n} has {len(parts) - 1} numbers, expected {dim}")
        word = parts[0]
        i = want.get(word)
        target = rows
        if i is None:
            i = want.get(word.lower())
            target = lower_rows
        if i is None or i in rows:
            continue
        try:
            target.setdefault(i, [float(x) for x in parts[1:]])
        except ValueError:
            raise textlab.DataError(f"--init-embeddings {path}: line {n} has a value that is not a number") from None
    if dim is None:
        raise textlab.DataError(f"--init-embeddings {path} holds no vectors")
    matrix = torch.zeros(len(vocab), dim)
    found = torch.zeros(len(vocab), dtype=torch.bool)
    for i, vec in {**lower_rows, **rows}.items():
        matrix[i] = torch.tensor(vec)
        found[i] = True
    return matrix, found, dim


def read_word2vec_dim(path: Path) -> int:
    """The vector size of a word2vec text file (from its `N D` header, else its first vector)."""
    path = Path(path)
    if not path.is_file():
        raise textlab.DataError(f"--init-embeddings: no such file: {path}")
    _check_text(path)
    header = None
    for n, line in enumerate(textlab.iter_lines(path), 1):
        parts = line.rstrip().split(" ")
        if n == 1 and _is_header(parts):
            header = int(parts[1])
            continue
        if not line.strip():
            continue
        if not _numbers(parts[1:]):
            raise _not_word2vec(path, n, line)
        return header or len(parts) - 1
    raise textlab.DataError(f"--init-embeddings {path} holds no vectors")


def embedding_weight(net: Any, vocab: textlab.Vocab | int) -> Any:
    """The model's `embedding` layer weight if it has a row per vocabulary word, else None."""
    rows = vocab if isinstance(vocab, int) else len(vocab)
    weight = getattr(getattr(net, "embedding", None), "weight", None)
    return weight if weight is not None and weight.dim() == 2 and weight.shape[0] >= rows else None


def init_embeddings(net: Any, path: Path, vocab: textlab.Vocab, option: str = "--init-embeddings") -> dict:
    """Copy vectors from a word2vec text file into the model's `embedding` layer (found words only)."""
    import torch

    weight = embedding_weight(net, vocab)
    if weight is None:
        raise textlab.UsageError(f"{option}: this model has no `embedding` layer with a row per word")
    matrix, found, dim = read_word2vec(path, vocab)
    if dim != weight.shape[1]:
        raise textlab.UsageError(f"--init-embeddings {path} has {dim}-dimensional vectors but the model's embedding "
                                 f"has {weight.shape[1]}", hint=f"pass --emb-dim {dim}")
    found[D.PAD] = False
    with torch.no_grad():
        weight[: len(vocab)][found] = matrix[found].to(weight.dtype)
    words = len(vocab) - len(D.SPECIALS)
    share = int(found.sum()) / max(1, words)
    note = f"--init-embeddings: {int(found.sum()):,} of {words:,} vocabulary words ({share:.1%}) from {path}"
    return {"file": str(path), "found": int(found.sum()), "words": words, "note": note}


# ============================================================================ --pretrain
# `--pretrain auto` learns vectors only from this many train tokens up. On the 24k-token sample the
# skip-gram vectors come out nearly identical (per-dimension std 0.015 around a common vector of
# norm 0.96) and the GRU started from them is at chance after 2 epochs (0.29 vs 0.945 from random);
# on the 2.4M-token AG News train part they lift test accuracy from 0.912 to 0.921.
PRETRAIN_MIN_TOKENS = 500_000
# word2vec's embedder (5 epochs) on the 2,770,619-token train part of ../shared/data/agnews: 39.4 s on
# 1 thread (load 2-3), 21.7 s on 2 (the benchmark, quiet): about 15 microseconds per token and thread.
WORD2VEC_SECONDS_PER_TOKEN = 15e-6


def pretrain_choice(model: Any, vocab_size: int, name: str, tokens: int) -> tuple[str, str | None]:
    """Which embedder `--pretrain NAME` means for this model (built on the meta device) and a train
    part of `tokens` tokens: (a registered embedder's name, or "none"; a note when auto said none)."""
    import torch

    if name == "none":
        return "none", None
    table = embedding_weight(model, vocab_size)
    if name == "auto":
        if table is None or not isinstance(getattr(model, "embedding", None), torch.nn.Embedding):
            return "none", None  # bow's bag mixes words with hashed n-grams: +0.2 points for 15 s more (README)
        if tokens < PRETRAIN_MIN_TOKENS:
            return "none", (f"--pretrain auto: the train part's {tokens:,} tokens are too few for useful word "
                            f"vectors (fewer than {PRETRAIN_MIN_TOKENS:,}); the embeddings start at random")
        if "word2vec" not in textlab.registry().embedders:
            return "none", ("--pretrain auto: no word2vec embedder is installed (see 'textlab plugins'); "
                            "the embeddings start at random")
        name = "word2vec"
    textlab.registry().embedder(name)  # an unknown name is one usage line
    if table is None:
        raise textlab.UsageError(f"--pretrain {name}: this model has no `embedding` layer with a row per word",
                                 hint="pass --pretrain none")
    return name, None


def how_long(name: str, tokens: int) -> str:
    """Roughly how long the embedder takes, as said before it starts."""
    if name != "word2vec":
        return f"for as long as the {name} embedder takes"
    import torch

    threads = torch.get_num_threads()
    seconds = WORD2VEC_SECONDS_PER_TOKEN * tokens / max(1, threads)
    rough = "a few seconds" if seconds < 10 else f"roughly {int(round(seconds / 5) * 5)} s"
    return f"{rough} on {threads} thread{'s' if threads > 1 else ''}"


def pretrain_embeddings(run: textlab.Run, net: Any, name: str, loaded: dict, time_budget: float | None = None) -> dict:
    """Vectors learned by the embedder `name` on the train part's text, copied into the model.

    The text is the train rows only (valid rows left out, so the best checkpoint is still chosen on
    unseen text); it, the embedder's work and its vectors stay in the run's `embeddings/` folder.
    The run's clock runs meanwhile: `--time-budget` counts this time too.
    """
    vocab = loaded["vocab"]
    spec = textlab.registry().embedder(name)
    weight = embedding_weight(net, vocab)
    folder = run.subdir("embeddings")
    result: dict = {}
    if textlab.distributed.is_main():
        text = folder / "train.txt"
        wrote = D.write_text(loaded["prep"], loaded["train_idx"], text)
        budget = f" (--time-budget {textlab.Duration(time_budget)} counts it)" if time_budget else ""
        textlab.status(f"--pretrain {name}: first learning {weight.shape[1]}-d word vectors on the train part's "
                       f"{wrote['tokens']:,} tokens, {how_long(name, wrote['tokens'])}{budget}; --pretrain none skips this")
        t0 = time.perf_counter()
        result = dict(spec.train(text, folder / name, dim=int(weight.shape[1]), seed=run.seed, device=str(run.device)))
        result["seconds"] = round(time.perf_counter() - t0, 2)
    result = textlab.distributed.broadcast_object(result)
    if not result.get("vectors"):
        raise textlab.PluginError(f"--pretrain {name}: the embedder returned no 'vectors' file")
    info = init_embeddings(net, Path(result["vectors"]), vocab, option=f"--pretrain {name}")
    info.update(embedder=name, seconds=result["seconds"],
                note=f"--pretrain {name}: {info['found']:,} of {info['words']:,} vocabulary words "
                     f"({info['found'] / max(1, info['words']):.1%}) start from vectors learned in {result['seconds']:.1f} s")
    return info
