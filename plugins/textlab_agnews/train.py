"""Training and evaluation of agnews models, as plain functions (the CLI verbs call these).

    result = train_model(run, data="sample", model="rnn", rnn="lstm", epochs=2)
    report = evaluate_artifact(artifact, split="test")

Training uses the shared loop (`textlab.fit`): train and valid accuracy and loss every half
epoch, best.pt by valid accuracy, exact resume, several processes under torchrun. The test split
is read only by `evaluate_artifact`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import textlab
from textlab.checkpoint import same_data

from . import data as D

# Training settings per model, used for every option left unset on the command line. A model a
# third party registers gets the `rnn` settings. What they give: README, "Results".
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "rnn": {"lr": 2e-3, "epochs": 6, "batch_size": 64, "max_len": 64, "min_count": 2, "optimizer": "adam",
            "warmup": 0.02},
    # bow's lr 0.1: the best mean valid accuracy of 12 (lr, dropout, emb_dim) settings over 3 seeds (README)
    "bow": {"lr": 0.1, "epochs": 5, "batch_size": 32, "max_len": 128, "min_count": 1, "optimizer": "adagrad",
            "warmup": 0.0},
}
MODEL_FIELDS = ("rnn", "emb_dim", "hidden_dim", "layers", "bidirectional", "aggregation", "concat_last", "dropout",
                "ngram_dim", "buckets", "ngrams")


def settings_for(model: str, options: dict, recorded: dict | None = None) -> dict:
    """The training settings: the model's defaults, overridden by every option that is set.

    `recorded`: a resumed run's settings as its start resolved them; they stand in for the
    defaults, so a default changed since then (bow's lr was 0.2) does not reach that run.
    """
    base = dict(TRAIN_DEFAULTS.get(model, TRAIN_DEFAULTS["rnn"]))
    base.update({k: v for k, v in (recorded or {}).items() if k in base})
    base.update({k: v for k, v in options.items() if k in base and v is not None})
    if not base["lr"] > 0:
        raise textlab.UsageError(f"--lr must be positive, not {base['lr']}")
    return base


# ============================================================================ data for a run
def load_training_data(source: textlab.Source, *, min_count: int, valid_fraction: float,
                       split_seed: int = D.SPLIT_SEED) -> dict:
    """Prepared train split, the valid split carved from it, the (cached) vocabulary, encodings."""
    prep = D.prepare(source, "train")
    train_idx, valid_idx = D.split_valid(prep.labels, valid_fraction, split_seed)
    vocab, vocab_path, cached = D.get_vocab(source, prep, train_idx, min_count=min_count,
                                            valid_fraction=valid_fraction, split_seed=split_seed)
    note = (f"vocabulary: {len(vocab):,} entries (min count {min_count}) "
            f"{'from the cache' if cached else 'built and cached'}: {vocab_path}")
    enc = D.encode(prep, vocab)
    return {"prep": prep, "vocab": vocab, "train": subset(enc, train_idx), "valid": subset(enc, valid_idx), "note": note,
            "train_idx": train_idx}


def subset(enc: D.Encoded, rows: Any) -> D.Encoded:
    """The rows `rows` of an encoded split (kept in their original order), as an encoded split of their own."""
    import torch

    rows = torch.sort(rows).values
    lengths = enc.lengths[rows]
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    keep = torch.zeros(len(enc), dtype=torch.bool)
    keep[rows] = True
    ids = enc.ids[torch.repeat_interleave(keep, enc.lengths)]
    return D.Encoded(ids, offsets, enc.labels[rows])


# ============================================================================ embeddings from a file
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


def embedding_weight(net: Any, vocab: textlab.Vocab) -> Any:
    """The model's `embedding` layer weight if it has a row per vocabulary word, else None."""
    weight = getattr(getattr(net, "embedding", None), "weight", None)
    return weight if weight is not None and weight.dim() == 2 and weight.shape[0] >= len(vocab) else None


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


# `--pretrain auto` learns vectors only from this many train tokens up. On the 24k-token sample the
# skip-gram vectors come out nearly identical (per-dimension std 0.015 around a common vector of
# norm 0.96) and the GRU started from them is at chance after 2 epochs (0.29 vs 0.945 from random);
# on the 2.4M-token AG News train part they lift test accuracy from 0.912 to 0.921.
PRETRAIN_MIN_TOKENS = 500_000
# Default epochs of a model whose embeddings start from `--pretrain` vectors (the model's own default,
# 6 for rnn, otherwise).
PRETRAINED_EPOCHS = 3


def pretrain_choice(net: Any, name: str, loaded: dict, quiet: bool = False) -> str | None:
    """Which embedder `--pretrain NAME` means for this model and data (None: random start).

    Decided the same way when a run resumes (`quiet`), so its default epochs stay the same.
    """
    vocab = loaded["vocab"]
    if name == "none":
        return None
    weight = embedding_weight(net, vocab)
    say = (lambda msg: None) if quiet else textlab.status
    if name == "auto":
        import torch

        if weight is None or not isinstance(getattr(net, "embedding", None), torch.nn.Embedding):
            return None  # bow's bag mixes words with hashed n-grams: vectors gave it +0.2 points for 15 s more
        tokens = int(loaded["train"].lengths.sum())
        if tokens < PRETRAIN_MIN_TOKENS:
            say(f"--pretrain auto: the train part's {tokens:,} tokens are too few for useful word vectors "
                f"(fewer than {PRETRAIN_MIN_TOKENS:,}); the embeddings start at random")
            return None
        if "word2vec" not in textlab.registry().embedders:
            say("--pretrain auto: no word2vec embedder is installed (see 'textlab plugins'); "
                "the embeddings start at random")
            return None
        name = "word2vec"
    textlab.registry().embedder(name)  # an unknown name is one usage line
    if weight is None:
        raise textlab.UsageError(f"--pretrain {name}: this model has no `embedding` layer with a row per word",
                                 hint="pass --pretrain none")
    return name


def pretrain_embeddings(run: textlab.Run, net: Any, name: str, loaded: dict) -> dict:
    """Vectors learned by the embedder `name` on the train part's text, copied into the model.

    The text is the train rows only (valid rows left out, so the best checkpoint is still chosen on
    unseen text); it, the embedder's work and its vectors stay in the run's `embeddings/` folder.
    """
    vocab = loaded["vocab"]
    spec = textlab.registry().embedder(name)
    weight = embedding_weight(net, vocab)
    folder = run.subdir("embeddings")
    result: dict = {}
    if textlab.distributed.is_main():
        text = folder / "train.txt"
        wrote = D.write_text(loaded["prep"], loaded["train_idx"], text)
        textlab.status(f"--pretrain {name}: learning {weight.shape[1]}-d word vectors on the train part's text "
                       f"({wrote['rows']:,} rows, {wrote['tokens']:,} tokens)")
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


# ============================================================================ training
def build_model(model: str, options: dict, vocab: textlab.Vocab, overrides: dict | None = None) -> tuple[Any, Any]:
    """The registered model `model`, its config filled from the options that are set."""
    spec = textlab.registry().model("agnews", model)
    fields = {k: v for k, v in options.items() if k in MODEL_FIELDS and v is not None}
    fields.update(vocab_size=len(vocab), num_classes=len(D.CLASSES))
    config = textlab.make_config(spec.config, fields, overrides)
    return spec.build(config, vocab), config


def sparse_params(net: Any) -> list:
    """Parameters that get sparse gradients (embedding bags of hashed n-grams)."""
    return [p for m in net.modules() if getattr(m, "sparse", False) for p in m.parameters(recurse=False)]


def mixed_adam(net: Any, lr: float, clip: float | None = 1.0) -> Any:
    """Adam for the dense parameters and SparseAdam for the sparse ones, as one optimizer.

    Dense Adam cannot take sparse gradients, and updating a whole embedding table (or a
    million-row n-gram table) on every step costs more than the recurrence; SparseAdam touches
    only the rows in the batch. The dense gradients are clipped to norm `clip` first (the shared
    loop's clipping does not take sparse gradients).
    """
    import torch

    sparse = {id(p) for p in sparse_params(net)}

    class MixedAdam(torch.optim.Optimizer):
        def __init__(self) -> None:
            params = list(net.parameters())
            self.dense = torch.optim.Adam([p for p in params if id(p) not in sparse], lr=lr)
            self.sparse = torch.optim.SparseAdam([p for p in params if id(p) in sparse], lr=lr)
            super().__init__([{"params": []}], {"lr": lr})
            self.param_groups = self.dense.param_groups + self.sparse.param_groups

        def step(self, closure: Any = None) -> None:
            if clip:
                torch.nn.utils.clip_grad_norm_([p for g in self.dense.param_groups for p in g["params"]], clip)
            self.dense.step()
            self.sparse.step()

        def zero_grad(self, set_to_none: bool = True) -> None:
            self.dense.zero_grad(set_to_none=set_to_none)
            self.sparse.zero_grad(set_to_none=set_to_none)

        def state_dict(self) -> dict:
            return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict()}

        def load_state_dict(self, state: dict) -> None:
            self.dense.load_state_dict(state["dense"])
            self.sparse.load_state_dict(state["sparse"])
            # loading replaces the inner groups: share them again, or the lr schedule would be lost
            self.param_groups = self.dense.param_groups + self.sparse.param_groups

    return MixedAdam()


def make_optimizer(net: Any, settings: dict, total_steps: int) -> tuple[Any, Any]:
    """Adam (SparseAdam for sparse layers), Adagrad or SGD; linear warmup, then linear decay to 0."""
    import torch

    # torch's sparse Adagrad warns on every run that it skips invariant checks: noise for users
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
    name = settings["optimizer"]
    if name == "adam" and sparse_params(net):
        opt = mixed_adam(net, settings["lr"])
    else:
        kinds = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
        opt = kinds[name](net.parameters(), lr=settings["lr"])
    warm = max(1, int(settings["warmup"] * total_steps)) if settings["warmup"] else 0

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, 1.0 - (step - warm) / max(1, total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def predict(net: Any, enc: D.Encoded, *, max_len: int, batch_size: int = 512, device: Any = "cpu") -> tuple[Any, float]:
    """Predicted classes for every row of `enc` (in order) and the mean cross-entropy."""
    import torch

    order = torch.sort(enc.lengths, stable=True).indices
    preds = torch.empty(len(enc), dtype=torch.int64)
    loss = 0.0
    with torch.no_grad():
        for rows in torch.split(order, batch_size):
            tokens, lengths = enc.batch(rows, max_len)
            logits = net(tokens.to(device), lengths.to(device)).float()
            y = enc.labels[rows].to(device)
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            preds[rows] = logits.argmax(1).cpu()
    return preds, loss / max(1, len(enc))


def train_model(run: textlab.Run, *, data: str = "ag_news", model: str = "rnn", valid_fraction: float = 0.05,
                init_embeddings_path: Path | None = None, pretrain: str = "auto", patience: int | None = None,
                max_steps: int | None = None, time_budget: float | None = None, model_config: list[str] | None = None, **options: Any) -> dict:
    """Train one agnews model into `run`. `options`: the model fields and training settings."""
    import torch

    t0 = time.perf_counter()
    settings = settings_for(model, options, run.info.get("settings") if run.resumed else None)
    source = D.resolve(data)
    loaded = load_training_data(source, min_count=settings["min_count"], valid_fraction=valid_fraction)
    vocab, train, valid = loaded["vocab"], loaded["train"], loaded["valid"]
    overrides = parse_overrides(model_config)
    net, config = build_model(model, {**options, **settings}, vocab, overrides)
    embedder = None if init_embeddings_path else pretrain_choice(net, pretrain, loaded, quiet=run.resumed)
    if embedder and options.get("epochs") is None:
        # from in-domain vectors the GRU's valid accuracy peaks at epoch 1.5-3 of 6; 3 epochs (the lr
        # decaying over them) scored 0.9196-0.9221 test over three seeds, 6 epochs 0.9187-0.9216
        settings["epochs"] = PRETRAINED_EPOCHS
    max_len, batch_size = settings["max_len"], settings["batch_size"]
    device = run.device

    def batches(epoch: int) -> list:
        g = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)
        return textlab.distributed.shard(D.bucket_batches(train.lengths.clamp(max=max_len), batch_size, g))

    steps = len(batches(0)) * settings["epochs"]
    optimizer, scheduler = make_optimizer(net, settings, steps)
    emb_info = None
    if not run.resumed:  # a resumed run's checkpoint holds its embeddings
        if init_embeddings_path:
            emb_info = init_embeddings(net, init_embeddings_path, vocab)
        elif embedder:
            emb_info = pretrain_embeddings(run, net, embedder, loaded)

    def step(net: Any, rows: Any) -> dict:
        tokens, lengths = train.batch(rows, max_len)
        y = train.labels[rows].to(device)
        logits = net(tokens.to(device), lengths.to(device))
        loss = torch.nn.functional.cross_entropy(logits, y)
        return {"loss": loss, "n": len(rows), "units": int(lengths.sum()),
                "accuracy": (logits.argmax(1) == y).float().mean()}

    def evaluate(net: Any) -> dict:
        preds, loss = predict(net, valid, max_len=max_len, device=device)
        return {"loss": loss, "accuracy": float((preds == valid.labels).float().mean())}

    extra = {"data": _data_ref(source, data), "classes": list(D.CLASSES), "max_len": max_len,
             "min_count": settings["min_count"], "valid_fraction": valid_fraction, "split_seed": D.SPLIT_SEED,
             "cleaning": D.CLEANING, "settings": settings}
    run.update(settings=settings, data_rows={"train": len(train), "valid": len(valid)}, vocab_size=len(vocab),
               init_embeddings=emb_info, prep_seconds=round(time.perf_counter() - t0, 2))
    # status lines only now that every input is checked: a bad input stays one line on stderr
    for note in (loaded["note"], (emb_info or {}).get("note")):
        if note:
            textlab.status(note)
    textlab.status(f"{model}: {sum(p.numel() for p in net.parameters()):,} parameters; {len(train):,} train rows, "
                   f"{len(valid):,} valid rows; {steps:,} steps")
    result = textlab.fit(run, net, optimizer, batches=batches, step=step, evaluate=evaluate,
                         meta={"model": model, "config": config, "vocab": vocab.to_dict(), "extra": extra},
                         epochs=settings["epochs"], evals_per_epoch=2, monitor="valid/accuracy", patience=patience, max_steps=max_steps,
                         time_budget=time_budget, scheduler=scheduler,
                         grad_clip=None if sparse_params(net) else 1.0, unit="tok",
                         description=f"train agnews {run.info.get('model')}")
    best_time = _best_time(run)
    run.update(best_time=best_time)
    return {"best_valid_accuracy": result.best, "best_step": result.best_step, "steps": result.step,
            "stopped": result.stopped, "train_time": round(result.train_time, 2), "best_time": best_time}


def parse_overrides(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise textlab.UsageError(f"--model-config {item!r} must look like KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _data_ref(source: textlab.Source, data: str) -> str:
    """What `--data` named, with a local path made absolute so eval finds it from anywhere."""
    return str(Path(source.path).resolve()) if source.kind == "local" else data


def _best_time(run: textlab.Run) -> float | None:
    """Wall-clock seconds from the start of the run to the valid eval that wrote best.pt."""
    best = (run.info.get("best") or {}).get("step")
    for rec in run.metrics():
        if rec["split"] == "valid" and rec["name"] == "accuracy" and rec["step"] == best:
            return rec["time"]
    return None


# ============================================================================ evaluation
def evaluate_artifact(artifact: textlab.Artifact, *, data: str | None = None, split: str = "test",
                      batch_size: int = 512) -> dict:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix of a checkpoint on a split."""
    import torch

    if artifact.task != "agnews":
        raise textlab.CheckpointError(f"{artifact.path} is a checkpoint of task {artifact.task!r}, not agnews")
    extra = artifact.extra
    net = artifact.build_model(artifact.device)
    if not isinstance(artifact.vocab, dict):
        raise textlab.CheckpointError(f"{artifact.path} holds no vocabulary")
    vocab = textlab.Vocab.from_dict(artifact.vocab)
    given = data is not None
    data = data or extra.get("data")
    if not data:
        raise textlab.UsageError("this checkpoint does not say which data it was trained on; pass --data")
    source = D.resolve(data)
    if split == "test":
        if D.one_file(source):  # one file is a train split to train and vocab; to eval --data, the rows to score
            if not given or same_data(data, extra.get("data")):
                raise textlab.DataError(f"{source.path} is the one file this run was trained on, so it has no test split",
                                        hint="pass the test rows with --data TEST_FILE, or a folder with train and test files")
            enc = D.encode(D.prepare(source, "train"), vocab)  # the file's rows, all of them (prepared as one file is)
        else:
            enc = D.encode(D.prepare(source, "test"), vocab)
    else:
        prep = D.prepare(source, "train")
        train_idx, valid_idx = D.split_valid(prep.labels, float(extra.get("valid_fraction", 0.05)),
                                             int(extra.get("split_seed", D.SPLIT_SEED)))
        enc = subset(D.encode(prep, vocab), valid_idx if split == "valid" else train_idx)
    t0 = time.perf_counter()
    preds, loss = predict(net, enc, max_len=int(extra.get("max_len", 64)), batch_size=batch_size, device=artifact.device)
    seconds = time.perf_counter() - t0
    report = classification_report(preds, enc.labels, list(extra.get("classes") or D.CLASSES))
    report.update(split=split, data=str(data), loss=loss, rows=len(enc), seconds=round(seconds, 3),
                  checkpoint=str(artifact.path), model=artifact.model_name, name=model_label(artifact))
    out = artifact.output_dir("eval", data=data)
    # a run's best.pt writes <split>.json; any other of its checkpoints (last.pt) <split>-last.json beside it
    other = artifact.run_dir is not None and artifact.path.stem != "best"
    stem = f"{split}-{artifact.path.stem}" if other else split
    if other:
        report["name"] += f" ({artifact.path.name})"
    report["png"] = str(plot_confusion(report, out / f"confusion_{stem}.png"))
    textlab.write_json(out / f"{stem}.json", report)
    report["json"] = str(out / f"{stem}.json")
    return report


def model_label(artifact: textlab.Artifact) -> str:
    """What a report calls the model: the recurrent cell of an rnn (lstm, gru, rnn), else the model's name."""
    cell = artifact.config.get("rnn") if artifact.model_name == "rnn" else None
    return str(cell) if cell else artifact.model_name


def classification_report(preds: Any, labels: Any, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and the confusion matrix (rows: true)."""
    import torch

    k = len(classes)
    cm = torch.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    per_class = []
    for i, name in enumerate(classes):
        tp = int(cm[i, i])
        predicted, support = int(cm[:, i].sum()), int(cm[i].sum())
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class.append({"class": name, "precision": p, "recall": r, "f1": f1, "support": support})
    return {"accuracy": float(cm.diag().sum()) / max(1, int(cm.sum())),
            "macro_f1": sum(c["f1"] for c in per_class) / k,
            "per_class": per_class, "confusion": cm.tolist(), "classes": classes}


def plot_confusion(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm, classes = report["confusion"], report["classes"]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(cm, cmap="Blues")
    top = max(max(row) for row in cm) or 1
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:,}", ha="center", va="center", color="white" if v > top / 2 else "black", fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=20)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{report.get('name') or report.get('model', '')} on {report.get('split', '')}: "
                 f"accuracy {report['accuracy']:.4f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
