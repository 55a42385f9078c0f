"""The training engine: one loop for every task that trains or fits a model.

    engine = textlab.Engine(run, model, optimizer,
                            batches=lambda epoch: loader(epoch),         # deterministic per (seed, epoch)
                            step=lambda model, batch: {"loss": ..., "n": len(batch), "accuracy": ...},
                            evaluate=lambda model: {"loss": ..., "accuracy": ...},
                            meta={"model": "lstm", "config": cfg, "vocab": vocab.to_dict()},
                            epochs=5, evals_per_epoch=2, monitor="valid/accuracy",
                            schedule=textlab.Schedule("linear", warmup=100))
    result = engine.fit()                     # textlab.fit(run, model, optimizer, ...) does the same

It moves the model to the run's device, wraps it in DistributedDataParallel under torchrun, shows
a progress bar (plain lines when stderr is not a terminal), evaluates on a schedule, logs train and
valid metrics, keeps `best.pt` (by `monitor`) and `last.pt` (optimizer, schedule, step, position in
the epoch, RNG states and the callbacks' state), stops at a step count, an epoch count, a
wall-clock budget (the whole run's, preparation included), early (patience) or on Ctrl-C /
SIGTERM (saving `last.pt`), and never saves non-finite weights. `train --resume` continues exactly
where `last.pt` stopped, provided `batches(epoch)` depends only on the seed and the epoch.

Variations are configuration, not copies of the loop:
  * `batches=None`: step-driven training; `step(model, i)` gets the global step number and builds
    its own batch (recrnn draws each step's batch from (seed, step, curriculum level)).
  * callbacks (`Callback`): code that runs before and after each step, at each evaluation, at the
    end of an epoch and at the end, with state of their own in `last.pt` (a curriculum).
  * `fit=FUNC` instead of an optimizer: a model fitted in one go (boosted trees, ridge regression),
    with the same best/last checkpoints, logs, Ctrl-C handling and resume.
  * `save_every=SECONDS`: `last.pt` at an evaluation only when that long has passed since the last
    write (default: at every evaluation), and always when the run stops; a better model found in
    between waits in memory and is written to `best.pt` together with `last.pt`, so the two files
    on disk always belong together. For a model whose checkpoints cost more than its steps (a
    million-row n-gram table trained in seconds).

A task whose training is not a sequence of optimizer steps (word2vec's Hogwild threads) keeps its
own loop and reports through the same `Run`: `run.log`, `run.save_checkpoint`, `run.should_stop()`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from . import distributed
from .console import duration, is_terminal, progress, progress_enabled, si, status
from .errors import DataError, TextlabError


@dataclass
class FitResult:
    step: int
    epoch: int
    best: float | None
    best_step: int | None
    stopped: str  # "done", "max_steps", "early_stop", "time_budget", "interrupted"
    train_time: float


@dataclass
class LoopState:
    """Where training stands; saved in last.pt as `train_state["loop"]`."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already trained on
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    train_time: float = 0.0  # seconds inside training steps (evaluations and preparation excluded)
    evals: int = 0


@dataclass(frozen=True)
class Fitted:
    """What a `fit=` function returns: the fitted model, its vocabulary and metrics of the fit."""

    model: Any
    vocab: Any = None
    metrics: dict = field(default_factory=dict)


class Callback:
    """Extension points of the engine. Override what you need; `state_dict` goes into last.pt."""

    name: str | None = None  # key of its state in last.pt (default: the class name)

    def on_start(self, engine: "Engine") -> None: ...
    def before_step(self, engine: "Engine", batch: Any) -> None: ...
    def after_step(self, engine: "Engine", out: dict) -> None: ...
    def on_eval(self, engine: "Engine", metrics: dict, scheduled: bool) -> None: ...
    def on_epoch_end(self, engine: "Engine") -> None: ...
    def on_end(self, engine: "Engine", result: FitResult) -> None: ...

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None: ...


# ============================================================================ learning-rate schedules
@dataclass(frozen=True)
class Schedule:
    """The learning rate as a factor of its peak: linear warm-up over `warmup` steps, then

    constant   the peak
    linear     down to `min_ratio` x peak (default 0) at the end of training
    cosine     down to `min_ratio` x peak at the end (half a cosine)
    rsqrt      peak x sqrt(warmup / step): does not depend on the planned length

    "The end" is the larger of steps done / steps planned and run time / time budget, so a run
    planned by wall-clock time ends its decay when the budget runs out.
    """

    shape: str = "constant"
    warmup: int = 0
    min_ratio: float = 0.0

    def factor(self, step: int, progress: float, planned: int | None = None) -> float:
        """The factor at optimizer step `step` (0-based), `progress` of the way through training
        (0..1), `planned` steps in all (when known: the linear decay then starts after the warm-up)."""
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.shape == "constant":
            return warm
        if self.shape == "rsqrt":
            return min(warm, (max(self.warmup, 1) / (step + 1)) ** 0.5)
        p = min(max(progress, 0.0), 1.0)
        if self.shape == "linear":  # after the warm-up, 1 -> min_ratio over the remaining steps
            if self.warmup and step < self.warmup:
                return warm
            w = self.warmup / planned if planned and self.warmup < planned else 0.0
            q = max(0.0, (p - w) / (1.0 - w))
            return max(self.min_ratio, 1.0 - (1.0 - self.min_ratio) * q)
        if self.shape == "cosine":
            return warm * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
        raise ValueError(f"unknown schedule shape {self.shape!r}")


def adamw(model: Any, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95)) -> Any:
    """AdamW with weight decay on matrices only (not on norms and biases)."""
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


# ============================================================================ RNG
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
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
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


# ============================================================================ the engine
class Engine:
    """See the module docstring. `monitor` may be a tuple: the first finite value decides best.pt."""

    def __init__(self, run: Any, model: Any = None, optimizer: Any = None, *,
                 batches: Callable[[int], Iterable[Any]] | None = None,
                 step: Callable[[Any, Any], dict] | None = None,
                 evaluate: Callable[[Any], dict] | None = None,
                 fit: Callable[..., Fitted | None] | None = None,
                 meta: dict,
                 epochs: int | None = 1, steps: int | None = None, time_budget: float | None = None,
                 eval_every: int | None = None, evals_per_epoch: int = 1, log_every: int | None = None,
                 monitor: str | Sequence[str] = "valid/loss", patience: int | None = None,
                 schedule: Schedule | None = None, scheduler: Any = None, grad_clip: float | None = None,
                 unit: str = "samples", description: str | None = None,
                 callbacks: Sequence[Callback] = (), upgrade: Callable[[dict], dict] | None = None,
                 save_every: float | None = None):
        from .plugins import registry

        if fit is None and (step is None or optimizer is None):
            raise TypeError("Engine needs step= and an optimizer, or fit= for a model fitted in one go")
        if fit is None and batches is None and not steps:
            raise TypeError("step-driven training (batches=None) needs steps=")
        if fit is None and batches is not None and epochs is None and not (steps or time_budget):
            raise ValueError("fit(epochs=None) needs max_steps or time_budget")
        self.run, self.model, self.optimizer = run, model, optimizer
        self.batches, self.step_fn, self.evaluate_fn, self.fit_fn = batches, step, evaluate, fit
        self.meta = meta
        self.epochs = None if batches is None else epochs
        self.steps, self.time_budget = steps, (time_budget or None)
        self.eval_every, self.evals_per_epoch, self.log_every = eval_every, evals_per_epoch, log_every
        self.monitors = (monitor,) if isinstance(monitor, str) else tuple(monitor)
        self.higher = registry().higher_is_better(self.monitors[0], run.task)
        self.patience, self.grad_clip, self.unit = patience, grad_clip, unit
        self.description = description or f"train {run.task}"
        self.callbacks, self.upgrade = list(callbacks), upgrade
        self.schedule = schedule
        self.scheduler = scheduler
        self.state = LoopState()
        self.acc = _Mean()
        self.net = model
        self.checkpoint: dict | None = None  # a resumed run's last.pt (callbacks may read it)
        self.bar: Any = None
        self.stopped = "done"
        self._planned: int | None = None
        # --precision and --compile, as the run recorded them (a resume keeps them)
        self.precision = str(run.config.get("precision") or "fp32")
        self.compile = bool(run.config.get("compile"))
        self.scaler: Any = None
        self._window = [0.0, 0.0]  # start of the rate window, units trained in it
        self._plain = progress_enabled() and not is_terminal()  # logs: one line per evaluation
        self._mark = (time.perf_counter(), 0, 0.0)  # time, step and units at the last evaluation line
        self._units = 0.0
        self.save_every = save_every
        self._written = (time.perf_counter(), None)  # when last.pt was last written, and the loop position it holds
        self._best: dict | None = None  # a best.pt waiting for the next last.pt (save_every)
        self._spare: dict | None = None  # the buffers of the last one written, reused

    # ------------------------------------------------------------------ public
    def fit(self) -> FitResult:
        """Train (or fit) into the run; see the module docstring."""
        if self.fit_fn is not None:
            return self._fit_once()
        self._prepare()
        for cb in self.callbacks:
            cb.on_start(self)
        self.model.train()
        with progress(self._planned, self.description, unit="step", plain=False) as bar:
            self.bar = bar
            bar.update(completed=self.state.step)
            if self.steps and self.state.step >= self.steps:
                self.stopped = "max_steps"  # a resumed run that had already reached its step count
            while self.stopped == "done" and (self.epochs is None or self.state.epoch < self.epochs):
                self._epoch()
        return self._finish()

    def add_train_metrics(self, values: dict[str, float], n: float = 1.0) -> None:
        """Add values (weight `n`) to the train means logged at the next evaluation or `log_every`
        (a callback's own per-step measurements)."""
        self.acc.add(values, n)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else float("nan")

    def progress_fraction(self) -> float:
        """How far training is: the larger of steps done / planned and run time / time budget."""
        p = self.state.step / self._planned if self._planned else 0.0
        if self.time_budget:
            p = max(p, self.run.elapsed() / self.time_budget)
        return min(p, 1.0)

    # ------------------------------------------------------------------ setup and resume
    def _prepare(self) -> None:
        import torch

        device = self.run.device
        self.model.to(device)
        if distributed.active():
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        if self.compile:
            self.net = torch.compile(self.net)  # the weights stay the model's own: checkpoints are unchanged
        if self.precision == "fp16":
            self.scaler = torch.amp.GradScaler(device.type)
        n0 = _length(self.batches(0)) if self.batches is not None else None
        per_epochs = n0 * self.epochs if n0 and self.epochs else None
        self._planned = min(x for x in (self.steps, per_epochs) if x) if (self.steps or per_epochs) else None
        if self.schedule is not None and self.scheduler is None:
            sched = self.schedule
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda s: sched.factor(s, self._fraction_at(s), self._planned))
        if self.run.resumed:
            self._restore()

    def _fraction_at(self, step: int) -> float:
        p = step / self._planned if self._planned else 0.0
        if self.time_budget:
            p = max(p, self.run.elapsed() / self.time_budget)
        return p

    def _restore(self) -> None:
        run = self.run
        ckpt = run.load_checkpoint("last")
        ts = ckpt.get("train_state") or {}
        if "loop" not in ts and self.upgrade is not None:
            ts = self.upgrade(ts)  # last.pt of an earlier textlab
        if "loop" not in ts:
            raise TextlabError(f"{run.checkpoint_path('last')} holds no training state; cannot resume")
        run.load_state(self.model, ckpt["state_dict"])
        run.load_state(self.optimizer, ts["optimizer"])
        names = {f.name for f in dataclasses.fields(LoopState)}
        self.state = LoopState(**{k: v for k, v in ts["loop"].items() if k in names})
        if self.scheduler is not None:
            saved = ts.get("scheduler")
            if isinstance(saved, dict) and ("last_epoch" in saved or not hasattr(self.scheduler, "lr_lambdas")):
                self.scheduler.load_state_dict(saved)
            else:  # an earlier schedule of its own (step count == loop steps): continue the same curve
                self.scheduler.last_epoch = self.state.step
                for group, base, lam in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                            self.scheduler.lr_lambdas):
                    group["lr"] = base * lam(self.state.step)
        self.acc = _Mean(ts.get("acc"))
        if self.scaler is not None and ts.get("scaler"):
            self.scaler.load_state_dict(ts["scaler"])
        if ts.get("rng") is not None:
            set_rng_state(ts["rng"])
        saved_cbs = ts.get("callbacks") or {}
        for cb in self.callbacks:
            if _cb_name(cb) in saved_cbs:
                cb.load_state_dict(saved_cbs[_cb_name(cb)])
        self.checkpoint = ckpt
        self._written = (time.perf_counter(), (self.state.step, self.state.epoch, self.state.batch))
        where = f"step {self.state.step}" + (f" (epoch {self.state.epoch}, batch {self.state.batch})"
                                              if self.batches is not None else "")
        status(f"resuming {run.dir} at {where}")

    # ------------------------------------------------------------------ the loop
    def _epoch(self) -> None:
        st = self.state
        if self.batches is None:  # step-driven: the batch is the global step number
            items: Iterable[Any] = _count(st.step)
            n, points = None, set()
        else:
            items = self.batches(st.epoch)
            n = _length(items)
            points = set()
            if n and not self.eval_every:
                points = {max(1, round(n * k / self.evals_per_epoch)) for k in range(1, self.evals_per_epoch + 1)}
        evaluated = False
        for i, batch in enumerate(items):
            if self.batches is not None and i < st.batch:
                continue  # resume: these batches were already trained on
            self._step(batch)
            st.batch = i + 1 if self.batches is not None else 0
            reason = self._stop_reason()
            scheduled = bool((self.eval_every and st.step % self.eval_every == 0) or (st.batch in points))
            evaluated = False
            if scheduled or reason in ("max_steps", "time_budget"):
                if self._evaluate(self._epoch_pos(n), scheduled=scheduled):
                    reason = "early_stop"
                evaluated = True
            if reason:
                self.stopped = reason
                return
        if st.batch == 0 and self.epochs is None:  # nothing trained this epoch: it would loop forever
            raise DataError("an epoch of training yielded no batches (too little data for one batch?)")
        st.epoch += 1
        st.batch = 0
        for cb in self.callbacks:
            cb.on_epoch_end(self)
        if self.run.should_stop():
            self.stopped = "interrupted"
        if not evaluated:
            if self._evaluate(float(st.epoch), scheduled=True):
                self.stopped = "early_stop"
        else:
            self._checkpoint()  # the epoch counter moved on

    def _step(self, batch: Any) -> None:
        import torch

        st = self.state
        for cb in self.callbacks:
            cb.before_step(self, batch)
        t0 = time.perf_counter()
        with self._autocast():
            out = self.step_fn(self.net, batch)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()).all():
            self._write_last()
            raise TextlabError(f"loss became {loss.item()} at step {st.step + 1}; the run stopped "
                               f"(last.pt keeps step {st.step}); try a lower --lr")
        self._update(loss)
        st.train_time += time.perf_counter() - t0
        w = float(out.get("n", 1))
        self.acc.add({k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()
                      if k not in ("n", "units") and _scalar(v)}, w)
        st.step += 1
        self._window[1] += float(out.get("units", w))
        self._units += float(out.get("units", w))
        self._advance_bar(float(loss.detach()))
        for cb in self.callbacks:
            cb.after_step(self, out)
        if self.log_every and st.step % self.log_every == 0:
            self._log_train()

    def _update(self, loss: Any) -> None:
        """Backward pass and optimizer step (through the gradient scaler under fp16), then the schedule."""
        import torch

        opt = self.optimizer
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(opt)  # skipped when fp16 gradients overflowed; the scale then shrinks
            self.scaler.update()
        else:
            opt.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.run.device.type, dtype=dtype)

    def _advance_bar(self, loss: float) -> None:
        info: dict[str, Any] = {"loss": loss}
        now = time.perf_counter()
        if self._window[0] == 0.0:
            self._window = [now, 0.0]
        elif now - self._window[0] > 2:
            info[f"{self.unit}/s"] = round(self._window[1] / (now - self._window[0]))
            self._window = [now, 0.0]
            if self.time_budget:  # the bar's own eta counts steps; this is the budget's
                left = max(0, int(self.time_budget - self.run.elapsed()))
                info["budget left"] = f"{left // 60}:{left % 60:02d}"
        self.bar.advance(1, **info)

    def _stop_reason(self) -> str | None:
        if self.steps and self.state.step >= self.steps:
            return "max_steps"
        if self.time_budget and distributed.any_true(self.run.elapsed() >= self.time_budget):
            return "time_budget"
        if self.run.should_stop():
            return "interrupted"
        return None

    def _epoch_pos(self, n: int | None) -> float | None:
        if self.batches is None:
            return None
        return self.state.epoch + (self.state.batch / n if n else 0)

    # ------------------------------------------------------------------ evaluation and checkpoints
    def _log_train(self, epoch_pos: float | None = None) -> dict:
        train = self.acc.means()
        if train:
            if self.optimizer is not None:
                train["lr"] = self.lr()
            self.run.log("train", train, step=self.state.step, epoch=epoch_pos)
        self.acc = _Mean()
        return train

    def _evaluate(self, epoch_pos: float | None, scheduled: bool) -> bool:
        """Log train means and valid metrics, update best.pt / last.pt. True if patience ran out."""
        import torch

        st = self.state
        train = self._log_train(epoch_pos)
        valid: dict[str, float] = {}
        if self.evaluate_fn is not None:
            self.model.eval()
            with torch.no_grad():
                valid = {k: float(v) for k, v in self.evaluate_fn(self.model).items()}
            self.model.train()
        for cb in self.callbacks:
            cb.on_eval(self, valid, scheduled)
        if valid:
            self.run.log("valid", valid, step=st.step, epoch=epoch_pos)
        st.evals += 1
        if self._plain:
            status(self._eval_line(train, valid, epoch_pos))
        stop = self._judge(train, valid, epoch_pos)
        self._checkpoint()
        name, value = self._monitored(train, valid)
        if self.bar is not None:
            self.bar.set(**({name: value} if value is not None else {}))
        return stop

    def _eval_line(self, train: dict, valid: dict, epoch_pos: float | None) -> str:
        """`train gla: step 400/2000 (epoch 0.42) | train loss 1.52 bpc 2.19 | valid bpc 2.25 | 9.1k char/s | eta 3m10s`."""
        st, now = self.state, time.perf_counter()
        t0, step0, units0 = self._mark
        self._mark = (now, st.step, self._units)
        where = f"step {st.step:,}" + (f"/{self._planned:,}" if self._planned else "")
        if epoch_pos is not None:
            where += f" (epoch {epoch_pos:.2f})"
        parts = [f"{self.description}: {where}"]
        for split, metrics in (("train", train), ("valid", valid)):
            shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "lr" and isinstance(v, (int, float)))
            if shown:
                parts.append(f"{split} {shown}")
        seconds = now - t0
        if seconds > 0 and st.step > step0:
            parts.append(f"{si(((self._units - units0) / seconds))} {self.unit}/s")
            left = []
            if self._planned:
                left.append((self._planned - st.step) * seconds / (st.step - step0))
            if self.time_budget:
                left.append(self.time_budget - self.run.elapsed())
            if left:
                parts.append(f"eta {duration(max(0.0, min(left)))}")
        return " | ".join(parts)

    def _monitored(self, train: dict, valid: dict) -> tuple[str, float | None]:
        found = None
        for monitor in self.monitors:
            split, _, name = monitor.partition("/")
            value = {"valid": valid, "train": train}.get(split, {}).get(name)
            if value is not None and math.isfinite(value):
                return monitor, value
            found = found or (monitor, value)
        return found if found else (self.monitors[0], None)

    def _judge(self, train: dict, valid: dict, epoch_pos: float | None) -> bool:
        st = self.state
        monitor, value = self._monitored(train, valid)
        if value is not None and math.isfinite(value):
            if st.best is None or (value > st.best if self.higher else value < st.best):
                st.best, st.best_step, st.bad_evals = value, st.step, 0
                more = {"epoch": round(epoch_pos, 4)} if epoch_pos is not None else {}
                self._keep_best(monitor, value, more)
                return False
            st.bad_evals += 1
            return self.patience is not None and st.bad_evals >= self.patience
        if value is None and self.evaluate_fn is not None and st.evals == 1:
            status(f"note: monitor {self.monitors[0]!r} is not among the logged metrics; best.pt is not kept")
        return False

    def _keep_best(self, monitor: str, value: float, more: dict) -> None:
        """best.pt now, or (save_every) in memory until the next last.pt is written."""
        import torch

        if self.save_every is None:
            self._save("best")
            self.run.set_best(monitor, value, self.state.step, **more)
            return
        check_finite(self.model, self.state.step, self.run)
        if self.run.is_main:  # copied into the buffers of the previous one (no new memory to fault in)
            spare = self._best["weights"] if self._best is not None else self._spare
            weights = {k: (spare[k] if spare is not None else torch.empty_like(v)).copy_(v)
                       for k, v in self.model.state_dict().items()}
            self._best = {"weights": weights, "loop": (self.state.step, self.state.epoch),
                          "set_best": (monitor, value, self.state.step, more)}

    def _checkpoint(self) -> None:
        """last.pt at an evaluation or an epoch's end: always, or when `save_every` seconds have passed."""
        if self.save_every is None or time.perf_counter() - self._written[0] >= self.save_every:
            self._write_last()

    def _write_last(self) -> None:
        """last.pt, after the best.pt waiting in memory (if any): the files on disk belong together."""
        if self._best is not None:
            best, self._best = self._best, None
            self._save("best", weights=best["weights"], loop=best["loop"])
            self._spare = best["weights"]
            monitor, value, step, more = best["set_best"]
            self.run.set_best(monitor, value, step, **more)
        self._save("last")
        st = self.state
        self._written = (time.perf_counter(), (st.step, st.epoch, st.batch))

    def _save(self, which: str, *, fitted: bool = True, weights: dict | None = None,
              loop: tuple[int, int] | None = None) -> None:
        st = self.state
        if fitted and weights is None:
            check_finite(self.model, st.step, self.run)
        train_state = None
        if which == "last" and self.fit_fn is None:
            train_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "loop": dataclasses.asdict(st),
                "acc": self.acc.state(),
                "rng": rng_state(),
                "callbacks": {_cb_name(cb): s for cb in self.callbacks if (s := cb.state_dict()) is not None},
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            }
        step, epoch = loop or (st.step, st.epoch)
        extra = {**(self.meta.get("extra") or {}), "step": step, "epoch": epoch}
        if self.fit_fn is not None:
            extra["fitted"] = fitted
        self.run.save_checkpoint(which, model=self.meta["model"], config=self.meta.get("config"),
                                 vocab=self.meta.get("vocab"), extra=extra,
                                 state_dict=(weights if weights is not None else self.model.state_dict()) if fitted else {},
                                 train_state=train_state)

    def _finish(self) -> FitResult:
        st = self.state
        if self.stopped == "interrupted" or self._best is not None or (
                self.save_every is not None and self._written[1] != (st.step, st.epoch, st.batch)):
            self._write_last()  # the run stops: last.pt holds where it stopped
        self.run.update(steps=st.step, stopped=self.stopped, train_time=round(st.train_time, 3))
        distributed.write_digest(self.model)
        result = FitResult(st.step, st.epoch, st.best, st.best_step, self.stopped, st.train_time)
        for cb in self.callbacks:
            cb.on_end(self, result)
        if self.stopped != "interrupted":
            status(f"{self.stopped}: step {st.step}, best {self.monitors[0]} = {st.best} at step {st.best_step}")
        return result

    # ------------------------------------------------------------------ a model fitted in one go
    def _fit_once(self) -> FitResult:
        run = self.run
        if self.precision != "fp32" or self.compile:
            from .errors import UsageError

            raise UsageError(f"--precision and --compile apply to models trained by gradient steps; "
                             f"{self.meta['model']} is fitted in one go")
        if run.resumed:
            last = run.load_checkpoint("last")
            if (last.get("extra") or {}).get("fitted") is not False and run.checkpoint_path("best").exists():
                status(f"{self.meta['model']} is fitted in one pass; {run.dir} already holds it, nothing to resume")
                best = run.info.get("best") or {}
                return FitResult(1, 1, best.get("value"), best.get("step"), "done", 0.0)
            status(f"{self.meta['model']} is fitted in one pass: fitting it again from the start")
        t0 = time.perf_counter()
        fitted = self.fit_fn(should_stop=run.should_stop)
        self.state.train_time = fit_time = time.perf_counter() - t0
        if fitted is None or run.should_stop():  # interrupted: nothing half-fitted is kept
            self.stopped = "interrupted"
            self._save("last", fitted=False)
            run.update(stopped="interrupted")
            return FitResult(0, 0, None, None, "interrupted", fit_time)
        self.model = fitted.model
        self.meta = {**self.meta, "vocab": fitted.vocab}
        self.state.step = self.state.epoch = 1
        run.log("train", {"fit_time": fit_time, **fitted.metrics}, step=1, epoch=1)
        self._save("last")
        valid = {k: float(v) for k, v in self.evaluate_fn(self.model).items()} if self.evaluate_fn else {}
        if valid:
            run.log("valid", valid, step=1, epoch=1)
            monitor, value = self._monitored({}, valid)
            if value is not None:
                self.state.best, self.state.best_step = value, 1
                run.set_best(monitor, value, 1)
        self._save("best")
        run.update(steps=1, stopped="done", fit_time=round(fit_time, 3))
        return FitResult(1, 1, self.state.best, self.state.best_step, "done", fit_time)


def fit(run: Any, model: Any, optimizer: Any, *, max_steps: int | None = None, **kwargs: Any) -> FitResult:
    """`Engine(run, model, optimizer, ...).fit()` (`max_steps` is the engine's `steps`)."""
    if max_steps is not None:
        kwargs["steps"] = max_steps
    return Engine(run, model, optimizer, **kwargs).fit()


def check_finite(model: Any, step: int, run: Any = None) -> None:
    """Refuse to keep weights that became nan or inf: the run stops, marked failed, with the step."""
    import torch

    if model is None:
        return
    for name, p in model.state_dict().items():
        # the smallest and largest value: nan or inf shows in one of them (10x faster than isfinite(p).all())
        if torch.is_tensor(p) and p.is_floating_point() and p.numel() and not torch.isfinite(torch.stack(torch.aminmax(p))).all():
            where = f" ({run.checkpoint_path('last')} keeps the last finite state)" if run is not None else ""
            raise TextlabError(f"the weights became non-finite ({name} holds nan or inf) at step {step}{where}; "
                               "try a lower --lr")


def _cb_name(cb: Callback) -> str:
    return cb.name or type(cb).__name__


def _count(start: int) -> Iterable[int]:
    i = start
    while True:
        yield i
        i += 1


def _length(obj: Any) -> int | None:
    try:
        return len(obj)  # type: ignore[arg-type]
    except TypeError:
        return None


def _scalar(v: Any) -> bool:
    if isinstance(v, (int, float)):
        return True
    return hasattr(v, "numel") and v.numel() == 1
