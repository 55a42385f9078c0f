"""The shared training loop: one small helper most tasks train with.

    result = textlab.fit(run, model, optimizer,
                         batches=lambda epoch: loader(epoch),        # deterministic per (seed, epoch)
                         step=lambda model, batch: {"loss": ..., "n": len(batch), "accuracy": ...},
                         evaluate=lambda model: {"loss": ..., "accuracy": ...},
                         meta={"model": "lstm", "config": cfg, "vocab": vocab.to_dict()},
                         epochs=5, evals_per_epoch=2, monitor="valid/accuracy")

It moves the model to the run's device, wraps it in DistributedDataParallel under torchrun,
shows a progress bar (rate, ETA, loss), evaluates on a schedule, logs train and valid metrics,
keeps `best.pt` (by `monitor`) and `last.pt` (with optimizer, scheduler, step, data position and
RNG states), stops early, stops at a wall-clock budget, and on Ctrl-C / SIGTERM saves `last.pt`
and returns. `train --resume` continues exactly where `last.pt` stopped: same step count and the
same data order, provided `batches(epoch)` depends only on the seed and the epoch.

A task that needs its own loop (word2vec) uses `Run` directly: `run.log`, `run.save_checkpoint`,
`run.should_stop()`.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from . import distributed
from .console import progress, status
from .errors import DataError, TextlabError


@dataclass
class FitResult:
    step: int
    epoch: int
    best: float | None
    best_step: int | None
    stopped: str  # "done", "max_steps", "early_stop", "time_budget", "interrupted"
    train_time: float


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states as plain values and tensors (loadable with weights_only=True)."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    state = {
        "python": _to_plain(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype("int64")), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype("uint32"), npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return [_to_plain(x) for x in obj]
    return obj


class _Mean:
    """Weighted running means of a step's outputs."""

    def __init__(self, data: dict | None = None):
        self.sums: dict[str, float] = dict((data or {}).get("sums", {}))
        self.weight: float = float((data or {}).get("weight", 0.0))

    def add(self, values: dict[str, float], n: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
        self.weight += n

    def means(self) -> dict[str, float]:
        keys = sorted(self.sums)
        totals = distributed.all_reduce_sum([self.sums[k] for k in keys] + [self.weight])
        weight = totals[-1] or 1.0
        return {k: s / weight for k, s in zip(keys, totals[:-1])}

    def state(self) -> dict:
        return {"sums": dict(self.sums), "weight": self.weight}


def fit(run: Any, model: Any, optimizer: Any, *,
        batches: Callable[[int], Iterable[Any]],
        step: Callable[[Any, Any], dict],
        evaluate: Callable[[Any], dict] | None = None,
        meta: dict,
        epochs: int | None = 1,
        max_steps: int | None = None,
        time_budget: float | None = None,
        eval_every: int | None = None,
        evals_per_epoch: int = 1,
        monitor: str = "valid/loss",
        patience: int | None = None,
        scheduler: Any = None,
        grad_clip: float | None = None,
        unit: str = "samples",
        description: str | None = None) -> FitResult:
    """Train `model` into `run`. See the module docstring for the contract of each callable.

    `step(model, batch)` returns a dict with `loss` (a tensor to backpropagate), optionally `n`
    (the batch's weight for averaging, default 1) and `units` (for the rate shown, default n),
    and any other scalar metrics; they are averaged between evaluations and logged as split
    "train". `evaluate(model)` returns scalar metrics logged as split "valid" (it runs on every
    rank, in eval mode, under `torch.no_grad`). `meta` holds `model`, `config`, `vocab` and
    optionally `extra`: what `eval`, `generate`... need to rebuild the model from a checkpoint.
    """
    import torch

    from .plugins import registry

    device = run.device
    model.to(device)
    net = model
    if distributed.active():
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    higher = registry().higher_is_better(monitor, run.task)
    st = {"step": 0, "epoch": 0, "batch": 0, "best": None, "best_step": None, "bad_evals": 0,
          "train_time": 0.0, "evals": 0}
    acc = _Mean()
    if run.resumed:
        ckpt = run.load_checkpoint("last")
        ts = ckpt.get("train_state") or {}
        if "loop" not in ts:
            raise TextlabError(f"{run.checkpoint_path('last')} holds no training state; cannot resume")
        run.load_state(model, ckpt["state_dict"])
        run.load_state(optimizer, ts["optimizer"])
        if scheduler is not None and ts.get("scheduler") is not None:
            scheduler.load_state_dict(ts["scheduler"])
        st.update(ts["loop"])
        acc = _Mean(ts.get("acc"))
        set_rng_state(ts["rng"])
        status(f"resuming {run.dir} at step {st['step']} (epoch {st['epoch']}, batch {st['batch']})")

    def save(which: str) -> None:
        train_state = None
        if which == "last":
            train_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "loop": dict(st),
                "acc": acc.state(),
                "rng": rng_state(),
            }
        run.save_checkpoint(which, model=meta["model"], config=meta.get("config"), vocab=meta.get("vocab"),
                            extra={**(meta.get("extra") or {}), "step": st["step"], "epoch": st["epoch"]},
                            state_dict=model.state_dict(), train_state=train_state)

    def do_eval(epoch_pos: float) -> bool:
        """Log train means and valid metrics, update best.pt / last.pt. True if patience ran out."""
        nonlocal acc
        train = acc.means()
        if train:
            train["lr"] = optimizer.param_groups[0]["lr"]
            run.log("train", train, step=st["step"], epoch=epoch_pos)
        acc = _Mean()
        valid: dict[str, float] = {}
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                valid = {k: float(v) for k, v in evaluate(model).items()}
            model.train()
            run.log("valid", valid, step=st["step"], epoch=epoch_pos)
        st["evals"] += 1
        split, _, name = monitor.partition("/")
        value = {"valid": valid, "train": train}.get(split, {}).get(name)
        stop = False
        if value is not None and math.isfinite(value):
            better = st["best"] is None or (value > st["best"] if higher else value < st["best"])
            if better:
                st["best"], st["best_step"], st["bad_evals"] = value, st["step"], 0
                save("best")
                run.set_best(monitor, value, st["step"], epoch=round(epoch_pos, 4))
            else:
                st["bad_evals"] += 1
                stop = patience is not None and st["bad_evals"] >= patience
        elif value is None and evaluate is not None and st["evals"] == 1:
            status(f"note: monitor {monitor!r} is not among the logged metrics; best.pt is not kept")
        save("last")
        bar.set(**{monitor: value} if value is not None else {})
        return stop

    n0 = _length(batches(st["epoch"]))
    if epochs is None and not (max_steps or time_budget):
        raise ValueError("fit(epochs=None) needs max_steps or time_budget")
    limit = math.inf if epochs is None else epochs  # None: until max_steps or the time budget
    total = max_steps if max_steps else (n0 * epochs if n0 and epochs is not None else None)
    stopped = "done"
    model.train()
    label = description or f"train {run.task}"
    t_start = time.perf_counter() - st["train_time"]
    window = [time.perf_counter(), 0.0]
    if max_steps and st["step"] >= max_steps:
        stopped = "max_steps"  # a resumed run that had already reached its step count
    with progress(total, label, unit="step") as bar:
        bar.update(completed=st["step"])
        while st["epoch"] < limit and stopped == "done":
            epoch_batches = batches(st["epoch"])
            n = _length(epoch_batches)
            points = set()
            if n and not eval_every:
                points = {max(1, round(n * k / evals_per_epoch)) for k in range(1, evals_per_epoch + 1)}
            evaluated_here = False
            for i, batch in enumerate(epoch_batches):
                if i < st["batch"]:
                    continue  # resume: these batches were already trained on
                out = step(net, batch)
                loss = out["loss"]
                if not torch.isfinite(loss.detach()).all():
                    save("last")
                    raise TextlabError(f"loss became {loss.item()} at step {st['step'] + 1}; try a lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                w = float(out.get("n", 1))
                acc.add({k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()
                         if k not in ("n", "units") and _scalar(v)}, w)
                st["step"] += 1
                st["batch"] = i + 1
                st["train_time"] = time.perf_counter() - t_start
                window[1] += float(out.get("units", w))
                info = {"loss": float(loss.detach())}
                now = time.perf_counter()
                if now - window[0] > 2:
                    info[f"{unit}/s"] = round(window[1] / (now - window[0]))
                    window[:] = [now, 0.0]
                    if time_budget:  # the bar's own eta counts steps; this is the budget's
                        left = max(0, int(time_budget - st["train_time"]))
                        info["budget left"] = f"{left // 60}:{left % 60:02d}"
                bar.advance(1, **info)
                epoch_pos = st["epoch"] + (st["batch"] / n if n else 0)
                scheduled = (eval_every and st["step"] % eval_every == 0) or (st["batch"] in points)
                reason = None
                if max_steps and st["step"] >= max_steps:
                    reason = "max_steps"
                elif time_budget and distributed.any_true(st["train_time"] >= time_budget):
                    reason = "time_budget"
                elif run.should_stop():
                    reason = "interrupted"
                evaluated_here = False
                if scheduled or reason in ("max_steps", "time_budget"):
                    if do_eval(epoch_pos):
                        reason = "early_stop"
                    evaluated_here = True
                if reason:
                    stopped = reason
                    break
            else:
                if st["batch"] == 0 and epochs is None:  # nothing trained this epoch: it would loop forever
                    raise DataError("an epoch of training yielded no batches (too little data for one batch?)")
                st["epoch"] += 1
                st["batch"] = 0
                if run.should_stop():
                    stopped = "interrupted"
                if not evaluated_here:
                    if do_eval(float(st["epoch"])):
                        stopped = "early_stop"
                else:
                    save("last")  # the epoch counter moved on
                continue
            break
    if stopped == "interrupted":
        save("last")
    run.update(steps=st["step"], stopped=stopped, train_time=round(st["train_time"], 3))
    distributed.write_digest(model)
    if stopped != "interrupted":
        status(f"{stopped}: step {st['step']}, best {monitor} = {st['best']} at step {st['best_step']}")
    return FitResult(st["step"], st["epoch"], st["best"], st["best_step"], stopped, st["train_time"])


def _length(obj: Any) -> int | None:
    try:
        return len(obj)  # type: ignore[arg-type]
    except TypeError:
        return None


def _scalar(v: Any) -> bool:
    if isinstance(v, (int, float)):
        return True
    return hasattr(v, "numel") and v.numel() == 1
