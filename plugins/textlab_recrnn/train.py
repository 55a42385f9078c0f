"""Training on the core engine: the depth drawn per step, a mastery curriculum, exact resume.

`textlab.Engine` runs the loop step by step (`batches=None`): the step builds its own batch from
(run seed, step, curriculum level) and draws the number of iterations r and the initial state s_0
from a generator seeded with (run seed, step), so everything random in a step is a function of
the step number. The curriculum is a callback (`Curriculum`) whose level and promotions are saved
in last.pt; it promotes only at scheduled evaluations (every `--eval-every` steps), so a resumed
run promotes at the same steps as a straight one and `--resume` continues bit for bit.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

import textlab

from .config import TASK, RecrnnConfig, TrainOptions
from .data import Dataset, Split, aux_targets, load_dataset
from .evaluate import accuracy_at, group_key
from .model import depth_generator, losses, sample_depth


# ============================================================================ batches
def batch_indices(split: Split, size: int, seed: int, step: int, level: int | None) -> torch.Tensor:
    """The training rows of optimizer step `step`: a function of (seed, step, level) only.

    With a curriculum level L each row first draws a difficulty uniformly from those <= L, then a
    record of that difficulty; without one, records are drawn uniformly. Sharded per process.
    """
    g = torch.Generator().manual_seed((int(seed) * 7_919 + 1_000_000_007 * (step + 1)) % (2**63))
    if level is None:
        idx = torch.randint(len(split), (size,), generator=g)
    else:
        pools = _pools(split)
        allowed = [d for d in sorted(pools) if d <= level] or [min(pools)]
        pick = torch.randint(len(allowed), (size,), generator=g)
        u = torch.rand(size, generator=g, dtype=torch.float64)
        idx = torch.empty(size, dtype=torch.long)
        for j, d in enumerate(allowed):
            rows = (pick == j).nonzero().flatten()
            pool = pools[d]
            idx[rows] = pool[(u[rows] * len(pool)).long().clamp_max(len(pool) - 1)]
    return torch.as_tensor(textlab.distributed.shard(idx))


_POOLS: "weakref.WeakKeyDictionary[Split, dict[int, torch.Tensor]]" = weakref.WeakKeyDictionary()


def _pools(split: Split) -> dict[int, torch.Tensor]:
    """Row indices per difficulty, cached while the split lives (not by id(): ids are reused)."""
    pools = _POOLS.get(split)
    if pools is None:
        d = torch.tensor(split.difficulty)
        pools = _POOLS[split] = {int(v): (d == v).nonzero().flatten() for v in d.unique()}
    return pools


def take(split: Split, idx: torch.Tensor, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `idx` of a split, trimmed to the longest sequence among them."""
    length = split.length[idx]
    seq = split.seq[idx, : int(length.max()) + 2]
    return seq.to(device), length.to(device)


def valid_subset(ds: Dataset, limit: int) -> tuple[Split, list[bool]]:
    """At most `limit` valid records, the same number from each group (difficulty or type)."""
    split = ds.splits["valid"]
    ood = ds.is_ood(split)
    groups = split.groups()
    names = sorted(set(groups), key=group_key)
    per = max(1, limit // max(1, len(names)))
    keep, count = [], {g: 0 for g in names}
    for i, g in enumerate(groups):
        if count[g] < per:
            keep.append(i)
            count[g] += 1
    idx = torch.tensor(keep)
    sub = Split(split.name, split.seq[idx], split.length[idx], split.answer[idx],
                [split.types[i] for i in keep], [split.difficulty[i] for i in keep])
    return sub, [ood[i] for i in keep]


# ============================================================================ the curriculum
class Curriculum(textlab.Callback):
    """The difficulty level batches are drawn up to, moved up at scheduled evaluations once valid
    accuracy at the current level reaches `promote_at`. Also: the valid metrics `level` and
    `train_time`, the train metric `seconds_per_step`, and best.pt starting over when a resumed run
    trains on other data (a best value measured on another valid split says nothing about this one)."""

    name = "curriculum"

    def __init__(self, level: int | None, top: int | None, promote_at: float, data: str):
        self.level, self.top, self.promote_at, self.data = level, top, promote_at, data
        self.promotions: list[list[int]] = []
        self._mark = 0.0

    def state_dict(self) -> dict:
        return {"level": self.level, "promotions": [list(p) for p in self.promotions]}

    def load_state_dict(self, state: dict) -> None:
        self.level = state.get("level")
        self.promotions = [list(p) for p in state.get("promotions") or []]

    def on_start(self, engine: textlab.Engine) -> None:
        self._mark = engine.state.train_time
        engine.meta["extra"]["level"] = self.level
        before = ((engine.checkpoint or {}).get("extra") or {}).get("data")
        if before is not None and not textlab.same_data(before, self.data):
            engine.state.best, engine.state.best_step, engine.state.bad_evals = None, None, 0
            textlab.status(f"the data changed (was {before}): best.pt starts over on this data's valid split")
        if engine.checkpoint is not None and self.level is not None:
            textlab.status(f"curriculum level {self.level}")

    def after_step(self, engine: textlab.Engine, out: dict) -> None:
        # the time the engine counted for this step, averaged with the step's other train metrics
        spent, self._mark = engine.state.train_time - self._mark, engine.state.train_time
        engine.acc.sums["seconds_per_step"] = engine.acc.sums.get("seconds_per_step", 0.0) + spent

    def on_eval(self, engine: textlab.Engine, metrics: dict, scheduled: bool) -> None:
        metrics["train_time"] = engine.state.train_time
        if self.level is None:
            return
        metrics["level"] = self.level
        step = engine.state.step
        # the final evaluation of a run that stops between evaluations is not on the schedule: a
        # resumed run must promote at the same steps as a straight one
        if step % engine.eval_every == 0:
            while self.level < self.top and metrics.get(f"accuracy_d{self.level}", 0.0) >= self.promote_at:
                self.level += 1
                self.promotions.append([step, self.level])
                textlab.status(f"step {step}: curriculum level {self.level}")
        engine.meta["extra"]["level"] = self.level

    def on_end(self, engine: textlab.Engine, result: textlab.FitResult) -> None:
        engine.run.update(curriculum=self.promotions if self.level is not None else None)


def upgrade_state(state: dict) -> dict:
    """last.pt of textlab 0.1.0 ({"optimizer", "recrnn": {step, level, best, ...}}) -> the engine's."""
    old = state.get("recrnn")
    if old is None:
        return state
    loop = {"step": old["step"], "best": old.get("best"), "best_step": old.get("best_step"),
            "train_time": old.get("train_time", 0.0)}
    return {"optimizer": state["optimizer"], "loop": loop,
            "callbacks": {Curriculum.name: {"level": old.get("level"), "promotions": old.get("promotions") or []}}}


# ============================================================================ the model
def model_config(run: textlab.Run, opts: TrainOptions, ds: Dataset) -> RecrnnConfig:
    """The model's config: a resumed run's own (last.pt), else the --init model's or the preset's,
    under the resolved size options."""
    last = run.load_checkpoint("last") if run.resumed and run.checkpoint_path("last").exists() else None
    if last is not None and last.get("vocab") is not None and list(last["vocab"]) != list(ds.vocab):
        raise textlab.UsageError(f"the data's vocabulary differs from the one {run.dir} trained with: a resume "
                                 "continues on the same tokens",
                                 hint=f"to fine-tune on it, start a new run with --init {run.dir}")
    if last is not None and last.get("config"):
        base = dict(last["config"])
    else:
        base = opts.base_config()
    return textlab.make_config(RecrnnConfig, {**base, **opts.model_settings()},
                               {"vocab_size": len(ds.vocab), "pad_id": ds.pad_id})


def build(run: textlab.Run, opts: TrainOptions, ds: Dataset) -> tuple[torch.nn.Module, RecrnnConfig]:
    """The model to train: fresh, or (a new --init run) with the --init model's weights."""
    config = model_config(run, opts, ds)
    if opts.start_difficulty and opts.curriculum and ds.train_max_difficulty() is not None \
            and opts.start_difficulty > ds.train_max_difficulty():
        raise textlab.UsageError(f"--start-difficulty {opts.start_difficulty} is above the largest training "
                                 f"difficulty ({ds.train_max_difficulty()})")
    net = textlab.registry().model(TASK, opts.model).build(config, ds.vocab)
    if opts.init is not None and not run.resumed:
        from .model import load_matched

        start = textlab.open_artifact(opts.init)
        kept = load_matched(net, start, ds.vocab)
        textlab.status(f"starting from {start.path}: {kept} of {len(ds.vocab)} tokens' embeddings carried over")
    depth = (f"r = {opts.fixed_recurrence} (fixed)" if opts.fixed_recurrence else
             f"mean r = {config.mean_recurrence}, backprop {config.backprop_depth}")
    textlab.status(f"{opts.model}: {net.num_parameters():,} parameters, h={config.dim}, layers ({config.prelude},"
                   f"{config.core},{config.coda}), {depth}, mode {opts.mode}, {len(ds.splits['train']):,} training "
                   "records")
    return net, config


# ============================================================================ training
def train_model(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train `opts.model` on `opts.data` into `run` (see the module docstring); returns a summary."""
    ds = load_dataset(opts.data)
    train = ds.splits["train"]
    aux = aux_targets(train, ds.vocab, opts.aux_max_hops) if opts.aux == "statements" and opts.mode == "single" \
        else None
    net, config = build(run, opts, ds)
    valid, valid_ood = valid_subset(ds, opts.valid_max)
    data_ref = textlab.resolve(TASK, opts.data).reference()
    use_curriculum = opts.curriculum and train.has_difficulty
    curriculum = Curriculum(opts.start_difficulty if use_curriculum else None, ds.train_max_difficulty(),
                            opts.promote_at, data_ref)
    device, eval_r = run.device, opts.fixed_recurrence or config.mean_recurrence

    def step(model: torch.nn.Module, i: int) -> dict:
        gen = depth_generator(run.seed, i)
        if opts.fixed_recurrence:
            r = opts.fixed_recurrence
            depth = (max(r - config.backprop_depth, 0), min(config.backprop_depth, r))
        elif getattr(net, "looped", False):
            depth = sample_depth(config.mean_recurrence, config.backprop_depth, gen)
        else:
            depth = (0, 1)
        idx = batch_indices(train, opts.batch_size, run.seed, i, curriculum.level)
        seq, length = take(train, idx, device)
        out = losses(model, seq, length, opts.mode, ds.pad_id, depth, generator=gen,
                     aux=None if aux is None else aux[idx].to(device), aux_weight=opts.aux_weight)
        return {**out, "recurrence": sum(depth), "units": len(idx)}

    def evaluate(model: torch.nn.Module) -> dict:
        res = accuracy_at(model, valid, valid_ood, eval_r, pad_id=ds.pad_id, batch_size=max(opts.batch_size, 128))
        return {"answer_accuracy": res["all"], "answer_loss": res["loss"], "accuracy_id": res["id"],
                "accuracy_ood": res["ood"], **{f"accuracy_{g}": v for g, v in res["groups"].items()}}

    extra = {"data": data_ref, "mode": opts.mode, "fixed_recurrence": opts.fixed_recurrence,
             "train_max_difficulty": ds.train_max_difficulty(), "answer_classes": ds.answer_classes(),
             "parameters": net.num_parameters(), "looped": bool(getattr(net, "looped", False)),
             "aux": opts.aux if opts.mode == "single" else "none", "aux_max_hops": opts.aux_max_hops,
             "init": opts.init}
    result = textlab.Engine(
        run, net, textlab.adamw(net, opts.lr, opts.weight_decay), step=step, evaluate=evaluate,
        meta={"model": opts.model, "config": config, "vocab": ds.vocab, "extra": extra}, steps=opts.steps,
        time_budget=opts.time_budget, eval_every=opts.eval_every, log_every=20, patience=opts.patience,
        monitor=("valid/accuracy_id", "valid/answer_accuracy"), grad_clip=opts.grad_clip or None,
        schedule=textlab.Schedule("constant", warmup=opts.warmup), unit="seq", callbacks=[curriculum],
        description=f"train recrnn ({opts.mode})", upgrade=upgrade_state).fit()
    return {"steps": result.step, "stopped": result.stopped, "best": result.best, "best_step": result.best_step,
            "level": curriculum.level, "train_time": round(result.train_time, 3), "parameters": net.num_parameters()}
