"""Training: one optimizer step per batch, depth drawn per step, a mastery curriculum, exact resume.

The loop is recrnn's own (the shared `textlab.fit` has no place for a curriculum whose level moves
with validation accuracy). It keeps fit's contract: progress bar, train/valid metrics in
metrics.jsonl, best.pt / last.pt, a wall-clock budget, Ctrl-C saves last.pt, and `--resume`
continues bit for bit. That holds because everything random in a step is a function of
(run seed, step): the batch, the number of iterations r and the initial state s_0; the curriculum
level is saved in last.pt.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch

import textlab

from .data import Dataset, Split
from .evaluate import accuracy_at
from .model import depth_generator, losses, sample_depth


@dataclass
class TrainSettings:
    mode: str = "single"
    lr: float = 1e-3
    batch_size: int = 64
    steps: int = 2000
    time_budget: float | None = None
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 100
    log_every: int = 20
    valid_max: int = 1000
    curriculum: bool = True
    promote_at: float = 0.8
    start_difficulty: int = 0
    fixed_recurrence: int | None = None
    aux: str = "none"  # "statements": per-statement value targets (single mode, chain data)
    aux_weight: float = 1.0


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


def lr_at(step: int, settings: TrainSettings) -> float:
    if settings.warmup and step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    return settings.lr


def make_optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.95))


def valid_subset(ds: Dataset, limit: int) -> tuple[Split, list[bool]]:
    """At most `limit` valid records, the same number from each group (difficulty or type)."""
    split = ds.splits["valid"]
    ood = ds.is_ood(split)
    groups = split.groups()
    names = sorted(set(groups), key=_group_key)
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


def _group_key(g: str) -> tuple:
    return (0, int(g[1:]), "") if g[:1] == "d" and g[1:].isdigit() else (1, 0, g)


def train_loop(run: Any, ds: Dataset, model: torch.nn.Module, settings: TrainSettings, meta: dict,
               aux: torch.Tensor | None = None) -> dict:
    """Train `model` on `ds` into `run`; returns a summary. See the module docstring.

    `aux` (with `settings.aux == "statements"`): per-statement targets of the train split
    (`data.aux_targets`)."""
    device = run.device
    model.to(device)
    net = model
    if textlab.distributed.active():
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, settings)
    train = ds.splits["train"]
    if settings.aux == "statements" and aux is None:
        from .data import aux_targets

        aux = aux_targets(train, ds.vocab)
    valid, valid_ood = valid_subset(ds, settings.valid_max)
    cfg = model.config
    use_curriculum = settings.curriculum and train.has_difficulty
    top = ds.train_max_difficulty()
    st = {"step": 0, "level": settings.start_difficulty if use_curriculum else None, "train_time": 0.0,
          "best": None, "best_step": None, "promotions": []}
    if run.resumed:
        ckpt = run.load_checkpoint("last")
        ts = ckpt.get("train_state") or {}
        if "recrnn" not in ts:
            raise textlab.CheckpointError(f"{run.checkpoint_path('last')} holds no recrnn training state")
        run.load_state(model, ckpt["state_dict"])
        run.load_state(optimizer, ts["optimizer"])
        st.update(ts["recrnn"])
        textlab.status(f"resuming {run.dir} at step {st['step']}" +
                       (f" (curriculum level {st['level']})" if st["level"] is not None else ""))
        before = (ckpt.get("extra") or {}).get("data")
        if before is not None and not textlab.same_data(before, meta["extra"].get("data")):
            # a best value measured on another valid split says nothing about this one (fine-tuning
            # on longer programs would otherwise never replace best.pt)
            st["best"], st["best_step"] = None, None
            textlab.status(f"the data changed (was {before}): best.pt starts over on this data's valid split")
    eval_r = settings.fixed_recurrence or cfg.mean_recurrence
    monitor = "accuracy_id"

    def save(which: str) -> None:
        train_state = {"optimizer": optimizer.state_dict(), "recrnn": dict(st)} if which == "last" else None
        run.save_checkpoint(which, model=meta["model"], config=cfg, vocab=ds.vocab, state_dict=model.state_dict(),
                            extra={**meta["extra"], "step": st["step"], "level": st["level"]}, train_state=train_state)

    sums: dict[str, float] = {}
    count = 0

    def flush() -> None:
        nonlocal sums, count
        if count:
            run.log("train", {k: v / count for k, v in sums.items()}, step=st["step"])
        sums, count = {}, 0

    def do_eval(scheduled: bool) -> None:
        flush()
        model.eval()
        res = accuracy_at(model, valid, valid_ood, eval_r, pad_id=ds.pad_id, batch_size=max(settings.batch_size, 128))
        model.train()
        metrics = {"answer_accuracy": res["all"], "answer_loss": res["loss"], "accuracy_id": res["id"],
                   "accuracy_ood": res["ood"], "train_time": st["train_time"]}
        metrics.update({f"accuracy_{g}": v for g, v in res["groups"].items()})
        if st["level"] is not None:
            metrics["level"] = st["level"]
        run.log("valid", metrics, step=st["step"])
        if scheduled and st["level"] is not None:  # only on the schedule, so a resumed run promotes identically
            while st["level"] < top and res["groups"].get(f"d{st['level']}", 0.0) >= settings.promote_at:
                st["level"] += 1
                st["promotions"].append([st["step"], st["level"]])
                textlab.status(f"step {st['step']}: curriculum level {st['level']}")
        value = metrics[monitor] if not math.isnan(metrics[monitor]) else metrics["answer_accuracy"]
        if st["best"] is None or value > st["best"]:
            st["best"], st["best_step"] = value, st["step"]
            save("best")
            run.set_best(f"valid/{monitor}", value, st["step"])
        save("last")
        bar.set(**{f"valid@{eval_r}": round(res["all"], 3), "id": round(res["id"], 3)} |
                ({"level": st["level"]} if st["level"] is not None else {}))

    stopped = "max_steps"
    model.train()
    t_mark = time.perf_counter()
    with textlab.progress(settings.steps, f"train recrnn ({settings.mode})", unit="step") as bar:
        bar.update(completed=st["step"])
        if st["step"] >= settings.steps:
            stopped = "max_steps"
        while st["step"] < settings.steps:
            step = st["step"]
            gen = depth_generator(run.seed, step)
            if settings.fixed_recurrence:
                r = settings.fixed_recurrence
                depth = (max(r - cfg.backprop_depth, 0), min(cfg.backprop_depth, r))
            elif getattr(model, "looped", False):
                depth = sample_depth(cfg.mean_recurrence, cfg.backprop_depth, gen)
            else:
                depth = (0, 1)
            idx = batch_indices(train, settings.batch_size, run.seed, step, st["level"])
            seq, length = take(train, idx, device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, settings)
            out = losses(net, seq, length, settings.mode, ds.pad_id, depth, generator=gen,
                         aux=None if aux is None else aux[idx].to(device), aux_weight=settings.aux_weight)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()):
                save("last")
                raise textlab.TextlabError(f"loss became {loss.item()} at step {step + 1}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            st["step"] += 1
            now = time.perf_counter()
            st["train_time"] += now - t_mark
            step_seconds = now - t_mark
            t_mark = now
            for k, v in (("loss", loss.item()), ("answer_loss", out["answer_loss"].item()),
                         ("answer_accuracy", out["answer_accuracy"].item()), ("recurrence", sum(depth)),
                         ("lr", optimizer.param_groups[0]["lr"]), ("seconds_per_step", step_seconds),
                         *((k, out[k].item()) for k in ("aux_loss", "aux_accuracy") if k in out)):
                sums[k] = sums.get(k, 0.0) + float(v)
            count += 1
            bar.advance(1, loss=round(loss.item(), 4), r=sum(depth))
            if st["step"] % settings.log_every == 0:  # on the global step: a resumed run logs at the same steps
                flush()
            reason = None
            if settings.time_budget and textlab.distributed.any_true(st["train_time"] >= settings.time_budget):
                reason = "time_budget"
            elif run.should_stop():
                reason = "interrupted"
            scheduled = st["step"] % settings.eval_every == 0
            if scheduled or (reason == "time_budget") or st["step"] >= settings.steps:
                do_eval(scheduled)
                t_mark = time.perf_counter()  # evaluation time is not training time
            if reason:
                stopped = reason
                break
    if stopped == "interrupted":
        flush()
        save("last")
    run.update(steps=st["step"], stopped=stopped, train_time=round(st["train_time"], 3),
               curriculum=st["promotions"] if st["level"] is not None else None)
    textlab.distributed.write_digest(model)  # TEXTLAB_RANK_DIGEST: lets tests check the ranks agree
    return {"steps": st["step"], "stopped": stopped, "best": st["best"], "best_step": st["best_step"],
            "level": st["level"], "train_time": round(st["train_time"], 3), "settings": asdict(settings)}
