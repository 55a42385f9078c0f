"""Training agnews models on the core engine, and what is decided before a run starts.

    opts = TrainOptions(data="sample", rnn="lstm", epochs=2)
    opts.resolve()                          # resolve_options: defaults, --pretrain auto, checks
    result = train_model(run, opts)

`resolve_options` fills the model's own training settings (`config.TRAIN_DEFAULTS`; a model a
third party registers gets the rnn ones) and model sizes, decides `--pretrain auto` (word2vec or
none: it reads the train part's token count from the cached prepared data) and the 3-epoch default
from pretrained vectors, turns the warm-up share into steps, and builds the model on the meta device,
so a setting that cannot work is refused before any run directory exists; a resume reads these
resolved values back from the run's config.toml.

`train_model` trains on `textlab.Engine`: train and valid accuracy and loss twice per epoch (or every
`--eval-every` steps), best.pt by valid accuracy, exact resume, several processes under torchrun, and
the learning rate warmed up then decayed linearly to 0 (`textlab.Schedule("linear")`) over the
planned steps: min(--steps, epochs x batches per epoch). The test split is read only by evaluate.py.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Any

import textlab
from textlab import options as O

from . import data as D
from .config import MODEL_FIELDS, PRETRAINED_EPOCHS, TRAIN_DEFAULTS, TrainOptions
from .embeddings import init_embeddings, pretrain_choice, pretrain_embeddings, read_word2vec_dim
from .upgrade import legacy_scheduler, warmup_share

SETTINGS = ("lr", "epochs", "batch_size", "max_len", "min_count", "optimizer", "warmup")  # run.json "settings"
PROBE_VOCAB = 1000  # the vocabulary size of the model built on the meta device (the real one is not known yet)
# last.pt (and best.pt) at most once a minute, and when the run stops: bow's 33.7M weights and their Adagrad
# sums at each of its 10 evaluations wrote 4.9 GB in a run of seconds (README, "Where the time goes")
SAVE_EVERY = 60.0


# ============================================================================ resolve
def resolve_options(opts: TrainOptions) -> None:
    """Fill every training setting left unset and check the combination (see the module docstring).

    Idempotent: a resumed run's options (already resolved) come back unchanged.
    """
    if opts.time_budget == 0:
        opts.time_budget = None
    if opts.init_embeddings is not None and opts.pretrain not in ("auto", "none"):
        raise textlab.UsageError(f"--init-embeddings and --pretrain {opts.pretrain} both start the embeddings: give one")
    spec = textlab.registry().model("agnews", opts.model)
    base = TRAIN_DEFAULTS.get(opts.model, TRAIN_DEFAULTS["rnn"])
    for key in ("lr", "optimizer", "batch_size", "max_len", "min_count"):
        if getattr(opts, key) is None:
            setattr(opts, key, base[key])
    fill_model_fields(opts, spec.config)
    config = model_config(opts, spec.config, PROBE_VOCAB)
    textlab.check_build(spec, config)
    prep = D.prepare(D.resolve(opts.data), "train", tokenizer=opts.tokenizer)
    train_idx, _ = D.split_valid(prep.labels, opts.valid_fraction)
    note = None
    if opts.init_embeddings is not None:
        opts.pretrain = "none"
    else:
        opts.pretrain, note = pretrain_choice(meta_model(spec, config), PROBE_VOCAB, opts.pretrain,
                                              int(prep.lengths[train_idx].sum()))
    if opts.epochs is None:
        opts.epochs = PRETRAINED_EPOCHS if opts.pretrain != "none" else base["epochs"]
    if opts.warmup is None:
        opts.warmup = warmup_steps(opts, len(train_idx))
    opts.notes = (note,) if note else ()


def fill_model_fields(opts: TrainOptions, config_type: type) -> None:
    """emb_dim, dropout, buckets, ngrams: the model config's own default when unset (emb_dim: the
    --init-embeddings file's size); set for a model whose config has no such field, one usage line."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    for name in ("emb_dim", "dropout", "buckets", "ngrams"):
        value = getattr(opts, name)
        if value is not None:
            if name not in fields:
                flag = "--" + name.replace("_", "-")
                raise textlab.UsageError(f"{flag} does not apply to --model {opts.model}: its config has no field {name}",
                                         hint=f"drop {flag}")
            continue
        if name not in fields:
            continue
        if name == "emb_dim" and opts.init_embeddings is not None:
            setattr(opts, name, read_word2vec_dim(opts.init_embeddings))
        elif fields[name].default is not dataclasses.MISSING:
            setattr(opts, name, fields[name].default)


def model_config(opts: TrainOptions, config_type: type, vocab_size: int) -> Any:
    """The model's config from the options that apply to it, by field name, and --model-config."""
    specs = O.spec_map(TrainOptions)
    values = {name: getattr(opts, name) for name in MODEL_FIELDS
              if getattr(opts, name) is not None and O.applies(specs[name], opts)}
    values.update(vocab_size=vocab_size, num_classes=len(D.CLASSES))
    return textlab.make_config(config_type, values, parse_overrides(opts.model_config))


def parse_overrides(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise textlab.UsageError(f"--model-config {item!r} must look like KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def meta_model(spec: textlab.ModelSpec, config: Any) -> Any:
    """The model built on the meta device (no memory, no time), to see what it has."""
    import torch

    with torch.device("meta"):
        return spec.build(config, None)


def batches_per_epoch(rows: int, batch_size: int) -> int:
    """Batches of one epoch on this process (`bucket_batches` and `textlab.distributed.shard`)."""
    n = math.ceil(rows / batch_size)
    world = textlab.distributed.world_size()
    return n // world if world > 1 else n


def warmup_steps(opts: TrainOptions, train_rows: int) -> int:
    """The model's warm-up share (rnn 2%, bow 0) of the steps the schedule spans, in steps.

    The engine plans over min(--steps, epochs x batches); a run of textlab 0.1.0 planned over the
    epochs whatever --max-steps said, and keeps that.
    """
    share = warmup_share(opts.model) if opts.legacy_schedule else TRAIN_DEFAULTS.get(
        opts.model, TRAIN_DEFAULTS["rnn"])["warmup"]
    if not share:
        return 0
    planned = batches_per_epoch(train_rows, opts.batch_size) * opts.epochs
    if opts.steps and not opts.legacy_schedule:
        planned = min(planned, opts.steps)
    return max(1, int(share * planned))


# ============================================================================ data for a run
def load_training_data(source: textlab.Source, *, min_count: int, valid_fraction: float,
                       split_seed: int = D.SPLIT_SEED, tokenizer: str = "builtin") -> dict:
    """Prepared train split, the valid split carved from it, the (cached) vocabulary, encodings."""
    prep = D.prepare(source, "train", tokenizer=tokenizer)
    train_idx, valid_idx = D.split_valid(prep.labels, valid_fraction, split_seed)
    vocab, vocab_path, cached = D.get_vocab(source, prep, train_idx, min_count=min_count, valid_fraction=valid_fraction,
                                            split_seed=split_seed, tokenizer=tokenizer)
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
    torch.cumsum(lengths, 0, out=offsets[1:])
    total = int(offsets[-1])
    # every kept token's place in `enc`: its row's start there, plus its position in the row
    where = torch.repeat_interleave(enc.offsets[rows] - offsets[:-1], lengths, output_size=total).add_(torch.arange(total))
    return D.Encoded(enc.ids[where], offsets, enc.labels[rows])


# ============================================================================ optimizers
def sparse_params(net: Any) -> list:
    """Parameters that get sparse gradients (embedding bags of hashed n-grams)."""
    return [p for m in net.modules() if getattr(m, "sparse", False) for p in m.parameters(recurse=False)]


def mixed_adam(net: Any, lr: float, clip: float | None = 1.0) -> Any:
    """Adam for the dense parameters and SparseAdam for the sparse ones, as one optimizer.

    Dense Adam cannot take sparse gradients, and updating a whole embedding table (or a
    million-row n-gram table) on every step costs more than the recurrence; SparseAdam touches
    only the rows in the batch. The dense gradients are clipped to norm `clip` first (the engine's
    clipping does not take sparse gradients).
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


def sparse_adagrad(params: Any, lr: float) -> Any:
    """torch's Adagrad with its update of sparse gradients done by a compiled loop.

    torch's own sparse path builds two sparse tensors a step, masks the sum back out of the dense
    state and adds lr x step into the weights row by row (README, "Where the time goes"). Here, on
    the CPU: `kernels.adagrad_rows` (the repeats of a row summed in a small scratch table, each
    touched row updated once, the next rows prefetched). On another device: one `index_add_` into
    the sums, one `index_select`, one `index_add_` of the scaled step. The same update (the
    weights differ from torch's by float32 rounding: a few ulps after 30 steps, the test compares
    them), the same state (`step`, `sum`): checkpoints of either load into the other. Dense
    gradients (the output layer) go through torch's own step.
    """
    import torch

    class SparseAdagrad(torch.optim.Adagrad):
        def __init__(self) -> None:
            super().__init__(params, lr=lr)
            self._kernels: dict = {}  # a table's compiled update with its buffers

        @torch.no_grad()
        def step(self, closure: Any = None) -> Any:
            held = []
            for group in self.param_groups:
                if group["lr_decay"] or group["maximize"] or group["differentiable"]:
                    return super().step(closure)  # options bow never sets: torch's own path
                for p in group["params"]:
                    if p.grad is not None and p.grad.is_sparse:
                        self._sparse_update(p, group)
                        held.append((p, p.grad))
                        p.grad = None
            try:
                return super().step(closure)  # the dense parameters
            finally:
                for p, grad in held:
                    p.grad = grad

        def _sparse_update(self, p: Any, group: dict) -> None:
            state = self.state[p]
            state["step"] += 1
            if _kernel_applies(p):
                from .kernels import AdagradRows

                if id(p) not in self._kernels:
                    self._kernels[id(p)] = AdagradRows(*p.shape)
                rows, values = p.grad._indices()[0].contiguous(), p.grad._values().contiguous()
                self._kernels[id(p)].step(p.detach().numpy(), state["sum"].numpy(), rows.numpy(), values.numpy(),
                                          float(group["lr"]), float(group["eps"]))
                return
            grad = p.grad.coalesce()  # the update is not linear: one value per row
            rows, values = grad._indices()[0], grad._values()
            state["sum"].index_add_(0, rows, values.pow(2))
            std = state["sum"].index_select(0, rows).sqrt_().add_(group["eps"])
            # index_add_ with alpha != 1 takes a row-by-row path (5x slower): the step is scaled first, so
            # the weights can differ from torch's (which rounds lr x step inside the addition) in the last bits
            p.index_add_(0, rows, (values / std).mul_(-float(group["lr"])))

    return SparseAdagrad()


def _kernel_applies(p: Any) -> bool:
    """The compiled update takes 2-D float32 tables in CPU memory."""
    import torch

    return p.device.type == "cpu" and p.dtype == torch.float32 and p.dim() == 2


def optimizer_for(net: Any, name: str, lr: float) -> Any:
    """Adam (SparseAdam for the sparse layers), Adagrad (`sparse_adagrad`) or SGD."""
    import torch

    # torch's sparse Adagrad warns on every run that it skips invariant checks: noise for users
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
    if name == "adam" and sparse_params(net):
        return mixed_adam(net, lr)
    if name == "adagrad":
        return sparse_adagrad(net.parameters(), lr)
    kinds = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    return kinds[name](net.parameters(), lr=lr)


def make_optimizer(net: Any, settings: dict, total_steps: int) -> tuple[Any, Any]:
    """For a script with a loop of its own (benchmarks/agnews_bow_variants.py): the optimizer and the
    engine's linear schedule over `total_steps` as a torch scheduler (`warmup`: a share of them)."""
    import torch

    opt = optimizer_for(net, settings["optimizer"], settings["lr"])
    share = settings.get("warmup") or 0.0
    schedule = textlab.Schedule("linear", warmup=max(1, int(share * total_steps)) if share else 0)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule.factor(s, s / max(1, total_steps)))


# ============================================================================ training
def train_model(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train one agnews model into `run` with resolved options (see the module docstring)."""
    import torch

    t0 = time.perf_counter()
    source = D.resolve(opts.data)
    loaded = load_training_data(source, min_count=opts.min_count, valid_fraction=opts.valid_fraction,
                                tokenizer=opts.tokenizer)
    vocab, train = loaded["vocab"], loaded["train"]
    spec = textlab.registry().model("agnews", opts.model)
    config = model_config(opts, spec.config, len(vocab))
    net = spec.build(config, vocab)

    def batches(epoch: int) -> list:
        g = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)
        return textlab.distributed.shard(D.bucket_batches(train.lengths.clamp(max=opts.max_len), opts.batch_size, g))

    per_epoch = len(batches(0))
    planned = per_epoch * opts.epochs if not opts.steps else min(opts.steps, per_epoch * opts.epochs)
    optimizer = optimizer_for(net, opts.optimizer, opts.lr)
    emb_info = None if run.resumed else start_embeddings(run, net, opts, loaded)  # a resumed run's are in last.pt
    settings = {k: getattr(opts, k) for k in SETTINGS}
    extra = {"data": source.reference(), "classes": list(D.CLASSES), "max_len": opts.max_len, "min_count": opts.min_count,
             "valid_fraction": opts.valid_fraction, "split_seed": D.SPLIT_SEED, "cleaning": D.CLEANING,
             "tokenizer": opts.tokenizer, "settings": settings}
    run.update(settings=settings, data_rows={"train": len(train), "valid": len(loaded["valid"])}, vocab_size=len(vocab),
               init_embeddings=emb_info, prep_seconds=round(time.perf_counter() - t0, 2))
    textlab.status(f"{opts.model}: {sum(p.numel() for p in net.parameters()):,} parameters; {len(train):,} train rows, "
                   f"{len(loaded['valid']):,} valid rows; {planned:,} steps")
    step, evaluate = step_functions(net, loaded, opts.max_len, run.device)
    schedule = None if opts.legacy_schedule else textlab.Schedule("linear", warmup=opts.warmup)
    scheduler = legacy_scheduler(optimizer, opts.warmup, per_epoch * opts.epochs) if opts.legacy_schedule else None
    result = textlab.Engine(
        run, net, optimizer, batches=batches, step=step, evaluate=evaluate,
        meta={"model": opts.model, "config": config, "vocab": vocab.to_dict(), "extra": extra},
        epochs=opts.epochs, steps=opts.steps, time_budget=opts.time_budget, eval_every=opts.eval_every,
        evals_per_epoch=2, monitor="valid/accuracy", patience=opts.patience, schedule=schedule, scheduler=scheduler,
        grad_clip=None if sparse_params(net) else 1.0, unit="tok", description=f"train agnews {run.info.get('model')}",
        save_every=SAVE_EVERY,
    ).fit()
    best_time = _best_time(run)
    run.update(best_time=best_time)
    return {"best_valid_accuracy": result.best, "best_step": result.best_step, "steps": result.step,
            "stopped": result.stopped, "train_time": round(result.train_time, 2), "best_time": best_time}


def start_embeddings(run: textlab.Run, net: Any, opts: TrainOptions, loaded: dict) -> dict | None:
    """Where a new run's embeddings start: --init-embeddings, --pretrain vectors, or at random.

    Status lines only once every input is checked (a bad --init-embeddings file stays one line).
    """
    info = init_embeddings(net, opts.init_embeddings, loaded["vocab"]) if opts.init_embeddings else None
    for note in (*getattr(opts, "notes", ()), loaded["note"], (info or {}).get("note")):
        if note:
            textlab.status(note)
    if opts.pretrain != "none":
        info = pretrain_embeddings(run, net, opts.pretrain, loaded, opts.time_budget)
        textlab.status(info["note"])
    return info


def step_functions(net: Any, loaded: dict, max_len: int, device: Any) -> tuple[Any, Any]:
    """The engine's `step(net, rows)` on the train part and `evaluate(net)` on the valid part.

    A model with a `bags` method (bow) gets its rows hashed into bags once, here, and each step
    only gathers its rows' bags (`model.bag_rows`); other models get padded token batches.
    """
    import torch

    from .evaluate import predict

    train, valid = loaded["train"], loaded["valid"]
    bags = net.bags(train.ids, train.offsets, max_len) if hasattr(net, "bags") else None
    valid_bags = net.bags(valid.ids, valid.offsets, max_len) if bags is not None else None
    lengths = train.lengths.clamp(max=max_len)

    def step(net: Any, rows: Any) -> dict:
        y = train.labels[rows].to(device)
        if bags is not None:
            ids, starts = bags.take(rows)
            logits = net(bags=(ids.to(device), starts.to(device)))
        else:
            tokens, batch_lengths = train.batch(rows, max_len)
            logits = net(tokens.to(device), batch_lengths.to(device))
        loss = torch.nn.functional.cross_entropy(logits, y)
        return {"loss": loss, "n": len(rows), "units": int(lengths[rows].sum()),
                "accuracy": (logits.argmax(1) == y).float().mean()}

    def evaluate(net: Any) -> dict:
        preds, loss = predict(net, valid, max_len=max_len, device=device, bags=valid_bags)
        return {"loss": loss, "accuracy": float((preds == valid.labels).float().mean())}

    return step, evaluate


def _best_time(run: textlab.Run) -> float | None:
    """Wall-clock seconds from the start of the run to the valid eval that wrote best.pt."""
    best = (run.info.get("best") or {}).get("step")
    for rec in run.metrics():
        if rec["split"] == "valid" and rec["name"] == "accuracy" and rec["step"] == best:
            return rec["time"]
    return None
