"""Training: the run's corpus, the Hogwild loop (units of work on threads), checkpoints, resume.

The corpus (or the pair shards) is cut into units of about 20,000 words (100,000 pairs); each
unit is trained by one call of a compiled kernel on one of `--threads` threads (Hogwild: the
threads share the two matrices without locks, as word2vec.c and gensim do). A unit's random
draws depend only on (seed, epoch, unit), and its learning rate only on its place in the run
(linear decay from --lr to --min-lr over all epochs), so with one thread a resumed run ends with
the same vectors as an uninterrupted one.

This loop is word2vec's own (the core's Engine runs optimizer steps; SGNS is sparse in-place
SGD on threads), and it reports through the same `Run`: metrics every 2 s, `last.pt` between
units after the units in flight are done (every `--save-every`, at the time budget, on Ctrl-C,
at the end), `best.pt` at the end (the final vectors: word2vec has no validation metric to pick
another), the run's wall-clock time budget. Vectors that become nan or inf (too high a --lr)
stop the run, marked failed with the step, and are never saved.

The train verb's work is `train_sgns` at the end: which corpus a run (or a resume) trains on,
the resume's checks, the summary table.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import textlab
from textlab import UsageError

from . import data as D
from .config import TrainOptions
from .data import Corpus, Step, human, job_seed, keep_thresholds, read_shard
from .report import kv_table

PAIR_JOB = 100_000  # pairs per unit when training from shards
LOG_EVERY = 2.0  # seconds between metric records (and checks that the vectors are finite)


@dataclass
class Settings:
    """What a run trains with, every default resolved (stored in checkpoints as extra["train"])."""

    dim: int = 100
    negative: int = 5
    window: int = 5
    sample: float = 1e-3
    epochs: int = 1
    lr: float = 0.025
    min_lr: float = 0.0001
    pairs: str = "fly"  # "fly": make pairs from the ids while training; "shards": read the pair shards
    backend: str = "numba"  # "numba": compiled CPU kernels; "torch": batched steps (any device)
    shared_negatives: bool = True
    batch: int = 4096  # pairs per torch step
    workers: int = 2
    save_every: float = 600.0  # seconds; 0 = only at the end
    time_budget: float | None = None  # seconds of the run's wall-clock time; None = no limit
    loss_every: int = 8  # the loss is measured on one centre word in this many


@dataclass
class Unit:
    epoch: int
    index: int  # within the epoch
    start: int  # work done in the epoch before this unit (words, or pairs for shards)
    work: int
    a: int  # fly: sentences a..b-1; shards: pairs a..b-1 of `shard`
    b: int
    shard: int = -1


@dataclass
class _Window:
    """What the units finished since the last metric record."""

    t: float
    kept: int = 0
    pairs: int = 0
    loss: float = 0.0
    loss_n: int = 0


@dataclass
class _Loop:
    """Where one process's training stands (the run's totals are `Trainer.state`)."""

    t0: float  # when training started in this process (perf_counter)
    done_before: int  # work done by earlier processes of the run (a resume)
    seconds_before: float
    last_log: float
    last_save: float
    window: _Window
    stopping: str | None = None  # "interrupted" or "time_budget": no more units are started
    draining: bool = False  # a checkpoint is due: no more units until those in flight are done
    pending: dict = field(default_factory=dict)  # future -> Unit


class Trainer:
    """Holds the vectors and runs units; `fit()` is the loop."""

    def __init__(self, run: textlab.Run, corpus: Corpus, opts: Settings, pairs: Step | None = None):
        import numpy as np

        from .model import init_vectors

        self.run, self.corpus, self.opts, self.pairs = run, corpus, opts, pairs
        self.keep = keep_thresholds(corpus.counts, opts.sample)
        self.syn0, self.syn1 = init_vectors(len(corpus.itos), opts.dim, run.seed)
        self.epoch_work = corpus.tokens if pairs is None else int(sum(pairs.info["shard_pairs"]))
        self.total_work = self.epoch_work * opts.epochs
        self.state = {"epoch": 0, "unit": 0, "work": 0, "kept": 0, "pairs": 0, "seconds": 0.0,
                      "loss_sum": 0.0, "loss_n": 0, "finished": False}
        self.saved_work: int | None = None  # the work that last.pt holds (None: no last.pt yet)
        self._shard_cache: tuple[int, Any, Any] | None = None
        self._ids = np.asarray(corpus.ids)
        self._offsets = np.asarray(corpus.offsets)
        self._torch = None

    @property
    def unit_name(self) -> str:
        return "words" if self.pairs is None else "pairs"

    # ------------------------------------------------------------------ units
    def units(self, epoch: int, first: int = 0) -> Iterator[Unit]:
        if self.pairs is None:
            cuts = self.corpus.jobs()
            offs = self._offsets
            for j in range(first, len(cuts) - 1):
                a, b = int(cuts[j]), int(cuts[j + 1])
                yield Unit(epoch, j, int(offs[a]), int(offs[b] - offs[a]), a, b)
            return
        j = start = 0
        for k, n in enumerate(self.pairs.info["shard_pairs"]):
            for i0 in range(0, n, PAIR_JOB):
                i1 = min(n, i0 + PAIR_JOB)
                if j >= first:
                    yield Unit(epoch, j, start, i1 - i0, i0, i1, k)
                j += 1
                start += i1 - i0

    def lr_at(self, work: float) -> float:
        o = self.opts
        return max(o.min_lr, o.lr - (o.lr - o.min_lr) * work / max(1, self.total_work))

    def _shard(self, k: int) -> tuple[Any, Any]:
        if self._shard_cache is None or self._shard_cache[0] != k:
            t, c = read_shard(self.pairs.dir / self.pairs.info["shards"][k])
            self._shard_cache = (k, t, c)
        return self._shard_cache[1], self._shard_cache[2]

    def unit_fn(self, unit: Unit) -> Callable[[], tuple[int, int, float, int]]:
        """What a worker thread runs for `unit`: returns (kept words, pairs, loss sum, pairs in loss)."""
        o = self.opts
        base = unit.epoch * self.epoch_work + unit.start
        a0, a1 = self.lr_at(base), self.lr_at(base + unit.work)
        seed = job_seed(self.run.seed, unit.epoch, unit.index)
        if o.backend == "torch":
            return lambda: self._torch_unit(unit, a0, a1, seed)
        from .kernels import train_pairs, train_window

        if self.pairs is None:
            return lambda: train_window(self._ids, self._offsets, unit.a, unit.b, self.keep, self.corpus.neg_threshold,
                                        self.corpus.neg_alias, self.syn0, self.syn1, o.window, o.negative, a0, a1,
                                        seed, o.shared_negatives, o.loss_every, True)
        targets, contexts = self._shard(unit.shard)

        def shard_unit() -> tuple[int, int, float, int]:
            n, loss, loss_n = train_pairs(targets, contexts, unit.a, unit.b, self.corpus.neg_threshold,
                                          self.corpus.neg_alias, self.syn0, self.syn1, o.negative, a0, a1, seed,
                                          o.shared_negatives, o.loss_every, 2 * int(self.pairs.options["window"]), True)
            return 0, n, loss, loss_n

        return shard_unit

    # ------------------------------------------------------------------ torch backend
    def _torch_setup(self) -> dict:
        if self._torch is None:
            import torch

            dev = self.run.device
            self._torch = {
                "device": dev,
                "syn0": torch.from_numpy(self.syn0).to(dev),
                "syn1": torch.from_numpy(self.syn1).to(dev),
                "threshold": torch.from_numpy(self.corpus.neg_threshold.astype("int64")).to(dev),
                "alias": torch.from_numpy(self.corpus.neg_alias.astype("int64")).to(dev),
            }
        return self._torch

    def _torch_unit(self, unit: Unit, a0: float, a1: float, seed: int) -> tuple[int, int, float, int]:
        import numpy as np
        import torch

        from .model import torch_negatives, torch_step, window_groups

        t = self._torch_setup()
        kept = 0
        if self.pairs is None:
            from .kernels import make_pairs

            words = int(self._offsets[unit.b] - self._offsets[unit.a])
            cap = 2 * self.opts.window * words + 1
            tg, ct = np.empty(cap, np.int32), np.empty(cap, np.int32)
            n, kept = make_pairs(self._ids, self._offsets, unit.a, unit.b, self.keep, self.opts.window, seed, tg, ct)
            tg, ct = tg[:n], ct[:n]
        else:
            targets, contexts = self._shard(unit.shard)
            tg, ct = targets[unit.a:unit.b], contexts[unit.a:unit.b]
        dev = t["device"]
        tg_t = torch.from_numpy(np.ascontiguousarray(tg)).to(dev, torch.int64)
        ct_t = torch.from_numpy(np.ascontiguousarray(ct)).to(dev, torch.int64)
        gen = torch.Generator(device=dev).manual_seed(seed)
        n = len(tg_t)
        loss = 0.0
        bs = self.opts.batch
        shared = None
        if self.opts.shared_negatives:  # one draw per centre word's window, as the compiled kernels
            window = self.opts.window if self.pairs is None else int(self.pairs.options["window"])
            groups = window_groups(tg_t, 2 * window)
            shared = (groups, torch_negatives(t["threshold"], t["alias"], (int(groups[-1]) + 1 if n else 0,
                                                                              self.opts.negative), gen))
        for i in range(0, n, bs):
            lr = a0 + (a1 - a0) * i / max(1, n)
            tb, cb = tg_t[i:i + bs], ct_t[i:i + bs]
            if shared is not None:
                neg = shared[1][shared[0][i:i + bs]]
            else:
                neg = torch_negatives(t["threshold"], t["alias"], (len(tb), self.opts.negative), gen)
            batch_loss, _ = torch_step(t["syn0"], t["syn1"], tb, cb, neg, lr)
            loss += batch_loss
        return kept, n, loss, n

    def sync_from_device(self) -> None:
        """Copy the torch backend's vectors back into the numpy arrays (a no-op on the CPU)."""
        if self._torch is not None and self._torch["device"].type != "cpu":
            self.syn0[:] = self._torch["syn0"].cpu().numpy()
            self.syn1[:] = self._torch["syn1"].cpu().numpy()

    def warm_up(self) -> float:
        """Compile (or load from numba's on-disk cache) the kernels before the clock starts.

        The calls do no work (an empty range) but use the real arrays, so that numba sees the
        same argument types (read-only memory maps included) as in training.
        """
        t0 = time.perf_counter()
        if self.opts.backend == "numba":
            from .kernels import train_pairs, train_window

            o, c = self.opts, self.corpus
            if self.pairs is None:
                train_window(self._ids, self._offsets, 0, 0, self.keep, c.neg_threshold, c.neg_alias, self.syn0,
                             self.syn1, o.window, o.negative, 0.0, 0.0, 1, o.shared_negatives, o.loss_every, True)
            else:
                t, ctx = self._shard(0)
                train_pairs(t, ctx, 0, 0, c.neg_threshold, c.neg_alias, self.syn0, self.syn1, o.negative, 0.0, 0.0,
                            1, o.shared_negatives, o.loss_every, 2, True)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ checkpoints
    def load(self, ckpt: dict) -> None:
        """Continue from a last.pt: it must hold vectors of this vocabulary (the words and their
        counts; compared as such, so a run of textlab 0.1, whose cache keys differ, resumes too)."""
        vocab = ckpt.get("vocab") if isinstance(ckpt.get("vocab"), dict) else {}
        mine = self.corpus.vocab_dict()
        if list(vocab.get("itos") or []) != mine["itos"] or [int(c) for c in vocab.get("counts") or []] != mine["counts"]:
            theirs, ours = len(vocab.get("itos") or []), len(mine["itos"])
            what = f"{theirs:,} words; this corpus gives {ours:,}" if theirs != ours else \
                f"{theirs:,} words, as this corpus, but other words or counts"
            raise UsageError(f"the run to resume was trained on another vocabulary ({what})",
                             hint="resume with the run's own --data and --min-count, or start a new run")
        sd = ckpt["state_dict"]
        if tuple(sd["in_vectors"].shape) != self.syn0.shape:
            raise UsageError(f"last.pt holds vectors of size {sd['in_vectors'].shape[1]}, not --dim {self.syn0.shape[1]}",
                             hint="a resume keeps the run's --dim; start a new run for another size")
        self.syn0[:] = sd["in_vectors"].numpy()
        self.syn1[:] = sd["out_vectors"].numpy()
        self.state.update(ckpt.get("train_state") or {})
        self.saved_work = int(self.state["work"])

    def payload(self, meta: dict) -> dict:
        import torch

        self.sync_from_device()
        return {"model": "sgns", "config": meta["config"], "vocab": self.corpus.vocab_dict(),
                "state_dict": {"in_vectors": torch.from_numpy(self.syn0), "out_vectors": torch.from_numpy(self.syn1)},
                "extra": meta["extra"]}

    def finite(self) -> bool:
        """Whether both matrices hold only finite numbers (a float64 sum: no copy of the matrix)."""
        import numpy as np

        if self._torch is not None and self._torch["device"].type != "cpu":
            import torch

            return all(bool(torch.isfinite(self._torch[k].sum(dtype=torch.float64))) for k in ("syn0", "syn1"))
        return all(math.isfinite(float(m.sum(dtype=np.float64))) for m in (self.syn0, self.syn1))

    def check_finite(self) -> None:
        """Stop the run (marked failed, with the step) when the vectors became nan or inf."""
        if self.finite():
            return
        st = self.state
        kept = (f"{self.run.checkpoint_path('last')} keeps step {self.saved_work}" if self.saved_work is not None
                else "no checkpoint was written")
        self.run.mark_wrote()  # the run is kept, marked failed with this line (not removed as a bad input would be)
        raise textlab.TextlabError(
            f"the vectors became non-finite (nan or inf) by step {st['work']} (of {self.total_work} {self.unit_name} "
            f"to train); the run stopped ({kept}); try a lower --lr than {self.opts.lr:g}")

    def save_last(self, meta: dict) -> None:
        self.check_finite()  # never over a good last.pt
        self.run.save_checkpoint("last", **self.payload(meta), train_state=dict(self.state))
        self.saved_work = int(self.state["work"])

    # ------------------------------------------------------------------ the loop
    def fit(self, meta: dict) -> dict:
        """Train until the epochs are done, the time budget is spent or Ctrl-C. Returns a summary."""
        compile_s = self.warm_up()
        self.rss_before = _peak_rss_mb()
        st = self.state
        now = time.perf_counter()
        loop = _Loop(now, st["work"], st["seconds"], now, now, _Window(now))
        stopped = self._train_units(meta, loop)
        train_s = time.perf_counter() - loop.t0
        st["seconds"] = loop.seconds_before + train_s
        summary = self.summary(train_s, loop.done_before, compile_s, stopped=stopped or "done")
        if st["work"] > loop.done_before:  # a resume that trained nothing logs nothing (no second record of a step)
            self.run.log("train", {"loss": summary["loss"], "lr": self.lr_at(st["work"]),
                                   **{k: summary[k] for k in ("pairs_per_s", "words_per_s", "effective_words_per_s")}},
                         step=st["work"], epoch=st["work"] / self.epoch_work)
        self.check_finite()
        if stopped:
            self._say_stopped(stopped)
            return summary
        st.update(epoch=self.opts.epochs, unit=0, finished=True)
        self.save_last(meta)
        self.run.save_checkpoint("best", **self.payload(meta))
        return summary

    def _train_units(self, meta: dict, loop: _Loop) -> str | None:
        """Run the units on the threads; None when all are done, else why training stopped."""
        workers = 1 if self.opts.backend == "torch" else max(1, self.opts.workers)
        units = self._all_units(self.state["epoch"], self.state["unit"])
        nxt: Unit | None = next(units, None)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sgns") as pool, \
                textlab.progress(self.total_work, f"train ({workers} thread{'s' * (workers > 1)})",
                                 unit=self.unit_name) as bar:
            bar.advance(loop.done_before)
            while True:
                while nxt is not None and not (loop.draining or loop.stopping) and len(loop.pending) < 2 * workers:
                    loop.pending[pool.submit(self.unit_fn(nxt))] = nxt
                    nxt = next(units, None)
                if not loop.pending:
                    if nxt is None:
                        return None  # every unit is done (those in flight at a stop were the last ones)
                    self._checkpoint(meta, loop, nxt)  # between units: a stop, or --save-every
                    if loop.stopping:
                        return loop.stopping
                    continue
                self._collect(loop, bar)
                now = time.perf_counter()
                if now - loop.last_log >= LOG_EVERY and loop.window.pairs:
                    self._log(loop, bar, now)
                    self.check_finite()
                if not loop.stopping:
                    self._should_stop(loop, now)

    def _collect(self, loop: _Loop, bar: Any) -> None:
        done, _ = wait(list(loop.pending), timeout=0.5, return_when=FIRST_COMPLETED)
        st, w = self.state, loop.window
        for fut in done:
            unit = loop.pending.pop(fut)
            kept, pairs, loss, loss_n = fut.result()
            st["work"] += unit.work
            st["kept"] += kept
            st["pairs"] += pairs
            st["loss_sum"] += loss
            st["loss_n"] += loss_n
            w.kept, w.pairs, w.loss, w.loss_n = w.kept + kept, w.pairs + pairs, w.loss + loss, w.loss_n + loss_n
            bar.advance(unit.work)

    def _log(self, loop: _Loop, bar: Any, now: float) -> None:
        st, w = self.state, loop.window
        span = now - w.t
        metrics = {"loss": w.loss / max(1, w.loss_n), "lr": self.lr_at(st["work"]), "pairs_per_s": w.pairs / span}
        if self.pairs is None:
            metrics["words_per_s"] = (st["work"] - loop.done_before) / (now - loop.t0)
            metrics["effective_words_per_s"] = w.kept / span
        self.run.log("train", metrics, step=st["work"], epoch=st["work"] / self.epoch_work)
        bar.set(**{"pairs/s": human(w.pairs / span), "loss": round(metrics["loss"], 4), "lr": f"{metrics['lr']:.5f}"})
        loop.last_log = now
        loop.window = _Window(now)

    def _should_stop(self, loop: _Loop, now: float) -> None:
        o, run = self.opts, self.run
        # an embedder trains on rank 0 alone, inside another task's run under torchrun: no collective call
        # there (run.should_stop() is one); the train verb itself runs in one process
        under_torchrun = textlab.distributed.world_size() > 1
        if run.stop_requested is not None if under_torchrun else run.should_stop():
            loop.stopping = "interrupted"
        elif o.time_budget and run.elapsed() >= o.time_budget:
            loop.stopping = "time_budget"
        elif o.save_every and now - loop.last_save >= o.save_every:
            loop.draining = True

    def _checkpoint(self, meta: dict, loop: _Loop, nxt: Unit) -> None:
        """last.pt between units, saying where to go on: the next unit."""
        st = self.state
        st["epoch"], st["unit"] = nxt.epoch, nxt.index
        st["seconds"] = loop.seconds_before + time.perf_counter() - loop.t0
        self.save_last(meta)
        loop.last_save = time.perf_counter()
        loop.draining = False

    def _say_stopped(self, stopped: str) -> None:
        st, run = self.state, self.run
        done = f"after {human(st['work'])} of {human(self.total_work)} {self.unit_name}"
        if stopped == "time_budget":
            textlab.status(f"stopped at the time budget ({textlab.options.format_duration(self.opts.time_budget)} of "
                           f"the run's wall-clock time) {done}; last.pt is saved (best.pt once every epoch is done); "
                           f"continue with: textlab train --resume {run.dir} --time-budget 0")
        else:
            textlab.status(f"stopped ({stopped}) {done}; last.pt is saved")
        run.update(stopped=stopped)

    def _all_units(self, epoch: int, first: int) -> Iterator[Unit]:
        for e in range(epoch, self.opts.epochs):
            yield from self.units(e, first if e == epoch else 0)

    def summary(self, train_s: float, done_before: int, compile_s: float, stopped: str) -> dict:
        st, c = self.state, self.corpus
        work = st["work"] - done_before
        words = work if self.pairs is None else c.tokens * work / max(1, self.epoch_work)
        raw = words * c.raw_tokens / max(1, c.tokens)
        return {
            "stopped": stopped,
            "seconds": round(train_s, 3),
            "compile_seconds": round(compile_s, 3),
            "raw_words_per_s": round(raw / max(train_s, 1e-9)),
            "words_per_s": round(words / max(train_s, 1e-9)),
            "effective_words_per_s": round(st["kept"] / max(st["seconds"], 1e-9)) if self.pairs is None else None,
            "pairs_per_s": round(st["pairs"] / max(st["seconds"], 1e-9)),
            "pairs": st["pairs"],
            "loss": round(st["loss_sum"] / max(1, st["loss_n"]), 4),
            "epochs_done": round(st["work"] / max(1, self.epoch_work), 4),
            "threads": 1 if self.opts.backend == "torch" else self.opts.workers,
            "peak_rss_mb_before": getattr(self, "rss_before", None),
            "peak_rss_mb": _peak_rss_mb(),
        }


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (MB; None where the OS does not say)."""
    try:
        import resource
        import sys
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def checkpoint_meta(corpus: Corpus, vocab_step: Step, pair_step: Step | None, opts: Settings) -> dict:
    """The config and `extra` a word2vec checkpoint carries: where its corpus came from, how it trained."""
    from .config import SGNSConfig

    vi = vocab_step.info
    return {
        "config": textlab.make_config(SGNSConfig, opts, {"vocab_size": len(corpus.itos)}),
        "extra": {
            "normalize": {"fold_yo": bool((vi.get("prep_options") or {}).get("fold_yo", False))},
            "corpus": {"source": vi.get("source"), "vocab_dir": str(vocab_step.dir), "vocab_fingerprint": vocab_step.fingerprint,
                       "min_count": vi["options"]["min_count"], "raw_tokens": vi["raw_tokens"], "tokens": vi["tokens"],
                       "pairs_dir": str(pair_step.dir) if pair_step else None,
                       "pairs_fingerprint": pair_step.fingerprint if pair_step else None},
            "train": asdict(opts),
            "step": None,  # no optimizer steps (as the engine's checkpoints count): progress is train_state["work"]
        },
    }


def save_final(path: Path, trainer: Trainer, meta: dict) -> Path:
    """The `--out FILE.pt` copy of the final checkpoint (no training state: only for using the vectors)."""
    return textlab.save_checkpoint(path, task="word2vec", **trainer.payload(meta))


# ============================================================================ the train verb's work
def train_sgns(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train SGNS vectors into `run` (see the task's train verb): a new run, or a resume of one."""
    import torch

    backend = _backend(opts.backend, run.device)
    ckpt = run.load_checkpoint("last") if run.resumed else None
    done = (ckpt or {}).get("train_state") or {}
    if done.get("finished") and done.get("epoch", 0) >= opts.epochs:  # before reading any data: nothing is written
        textlab.status(f"run {run.dir} has already trained {done['epoch']} epoch(s): nothing to do "
                       "(pass --epochs N to train further)")
        return {"summary": None, "stopped": "nothing to do", "dim": opts.dim,
                "checkpoint": str(run.checkpoint_path("best"))}
    vocab_step, pair_step, window, sample = corpus_for(opts, ckpt)
    corpus = D.open_corpus(vocab_step)
    settings = Settings(dim=opts.dim, negative=opts.negative, window=window, sample=sample, epochs=opts.epochs,
                        lr=opts.lr, min_lr=opts.min_lr, pairs=opts.pairs, backend=backend,
                        shared_negatives=opts.negatives == "shared", batch=opts.batch,
                        workers=torch.get_num_threads(), save_every=float(opts.save_every),
                        time_budget=float(opts.time_budget) if opts.time_budget else None)  # plain floats in last.pt
    meta = checkpoint_meta(corpus, vocab_step, pair_step, settings)
    trainer = Trainer(run, corpus, settings, pair_step)
    if ckpt is not None:
        trainer.load(ckpt)
        _check_budget(run, opts)
        trainer.state["finished"] = False
    textlab.status(f"corpus {vocab_step.info.get('source')}: {len(corpus.itos):,} words, {corpus.tokens:,} tokens; "
                   f"window {window}, sample {sample:g}, {opts.negative} negatives ({opts.negatives}), pairs "
                   f"{'on the fly' if opts.pairs == 'fly' else 'from shards'}, {backend} on "
                   f"{settings.workers if backend == 'numba' else 1} thread(s)"
                   + (f" ({run.device})" if backend == "torch" else ""))
    summary = trainer.fit(meta)
    result = {"summary": summary, "vocab_size": len(corpus.itos), "dim": opts.dim,
              "checkpoint": str(run.checkpoint_path("last"))}
    if summary["stopped"] == "done":
        run.set_best("train/loss", summary["loss"], trainer.state["work"])
        result["checkpoint"] = str(run.checkpoint_path("best"))
        if opts.out is not None:
            result["out"] = str(save_final(Path(opts.out), trainer, meta))
    run.update(throughput={k: summary[k] for k in ("raw_words_per_s", "words_per_s", "effective_words_per_s",
                                                   "pairs_per_s")})
    _report(summary, result)
    return result


def _backend(backend: str, device: Any) -> str:
    if backend == "auto":
        return "torch" if device.type != "cpu" else "numba"
    if backend == "numba" and device.type != "cpu":
        raise UsageError(f"the numba backend runs on the CPU, not {device}", hint="use --backend torch or --device cpu")
    return backend


def _check_budget(run: textlab.Run, opts: TrainOptions) -> None:
    spent = run.elapsed()
    if opts.time_budget and spent >= opts.time_budget:
        budget = textlab.options.format_duration(opts.time_budget)
        raise UsageError(f"the run has spent its --time-budget of {budget} ({spent:.1f} s of wall-clock time)",
                         hint="resume with --time-budget 0 for no limit, or a larger budget: it counts the whole "
                              "run's time")


def corpus_for(opts: TrainOptions, ckpt: dict | None) -> tuple[Step, Step | None, int, float]:
    """(vocabulary, pair shards or None, window, sample) a run trains on.

    A new run: those `--data` names (else the last step run), window and sample as given, else
    those of the last matching `pairs`, else 5 and 1e-3. A resume: the run's own, as its last.pt
    records them (window, sample, min count; without --data its vocabulary folder too), not
    those of a step run since.
    """
    trained = ((ckpt or {}).get("extra") or {}).get("train") or {}
    recorded = ((ckpt or {}).get("extra") or {}).get("corpus") or {}
    window = opts.window if opts.window is not None else trained.get("window")
    sample = opts.sample if opts.sample is not None else trained.get("sample")
    min_count = opts.min_count if opts.min_count is not None or ckpt is None else recorded.get("min_count")
    if ckpt is not None and opts.data is None:
        vocab_step, pair_step = _stored_corpus(ckpt, opts.pairs, opts.min_count)
        if pair_step is not None:
            window, sample = pair_step.options["window"], pair_step.options["sample"]
    elif opts.pairs == "shards":
        pair_step = D.resolve_pairs(opts.data, window=window, sample=sample, min_count=min_count)
        vocab_step = D.parent_step("vocab", pair_step)
        if vocab_step is None:
            raise textlab.DataError(f"the vocabulary the pair shards in {pair_step.dir} were made from is gone",
                                    hint="run 'textlab vocab word2vec' and 'textlab pairs word2vec' again")
        window, sample = pair_step.options["window"], pair_step.options["sample"]
    else:
        pair_step = None
        vocab_step = D.resolve_vocab(opts.data, min_count=min_count)
        if window is None or sample is None:
            last = D.find_step("pairs", vocab_step.fingerprint, {})
            window = window if window is not None else (last.options["window"] if last else 5)
            sample = sample if sample is not None else (last.options["sample"] if last else 1e-3)
    D.check_window_sample(window, sample)
    return vocab_step, pair_step, int(window), float(sample)


def _stored_corpus(ckpt: dict, pairs: str, min_count: int | None) -> tuple[Step, Step | None]:
    """A resume without --data: the vocabulary (and pair shards) the run was trained on, as its
    last.pt records them, not the corpus of the last step run since."""
    corpus = (ckpt.get("extra") or {}).get("corpus") or {}
    key = corpus.get("vocab_fingerprint")
    pair_step = None
    if pairs == "shards":
        pair_step = D.stored_step("pairs", corpus.get("pairs_dir"), corpus.get("pairs_fingerprint"), parent=key)
        if pair_step is None:
            raise textlab.DataError(f"the pair shards this run was trained on ({corpus.get('pairs_dir')}) are gone",
                                    hint="resume with --data naming its corpus (or that folder)")
    vocab_step = D.stored_step("vocab", corpus.get("vocab_dir"), key)
    if vocab_step is None or not D._vocab_files_ok(vocab_step):
        raise textlab.DataError(f"the vocabulary this run was trained on ({corpus.get('vocab_dir')}) is gone",
                                hint=f"resume with --data naming its corpus ({corpus.get('source')})")
    if min_count is not None and vocab_step.options.get("min_count") != min_count:
        raise UsageError(f"--min-count {min_count}: the run was trained with min count "
                         f"{vocab_step.options.get('min_count')}; a resume keeps its vocabulary")
    return vocab_step, pair_step


def _report(summary: dict, result: dict) -> None:
    s = summary
    kv_table("train", [
        ("stopped", s["stopped"]),
        ("time", f"{s['seconds']:.1f} s (+{s['compile_seconds']:.1f} s to load the kernels)"),
        ("raw words/s", f"{s['raw_words_per_s']:,} (corpus tokens, as gensim's 'raw words')"),
        ("effective words/s", f"{s['effective_words_per_s']:,} (after subsampling)"
         if s["effective_words_per_s"] is not None else "-"),
        ("pairs/s", f"{s['pairs_per_s']:,} ({s['pairs']:,} pairs)"), ("loss", f"{s['loss']:.4f}"),
        ("checkpoint", result["checkpoint"] + (f", {result['out']}" if result.get("out") else "")),
    ])
