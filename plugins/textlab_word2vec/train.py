"""The training loop: units of work on threads, linear learning-rate decay, checkpoints, resume.

The corpus (or the pair shards) is cut into units of about 20,000 words (100,000 pairs); each
unit is trained by one call of a compiled kernel on one of `--threads` threads (Hogwild: the
threads share the two matrices without locks, as word2vec.c and gensim do). A unit's random
draws depend only on (seed, epoch, unit), and its learning rate only on its place in the run,
so with one thread a resumed run ends with the same vectors as an uninterrupted one.

Checkpoints (`last.pt`) are written between units, after the units in flight are done: every
`--save-every` seconds, at a time budget, on Ctrl-C and at the end. The end also writes
`best.pt` (the final vectors: word2vec has no validation metric to pick another).

Under `torchrun --nproc_per_node N` every rank trains the same units with the same draws (the
Hogwild threads are the way to use several cores; processes would have to exchange whole
matrices): with `--threads 1` all ranks end with identical vectors, rank 0 writes the run.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import textlab
from textlab import CheckpointError

from .data import Corpus, Step, human, job_seed, keep_thresholds, read_shard

PAIR_JOB = 100_000  # pairs per unit when training from shards
LOG_EVERY = 2.0  # seconds between metric records


@dataclass
class TrainOptions:
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
    save_every: float = 600.0
    time_budget: float = 0.0  # seconds; 0 = none
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


class Trainer:
    """Holds the vectors and runs units; `fit()` is the loop."""

    def __init__(self, run: textlab.Run, corpus: Corpus, opts: TrainOptions, pairs: Step | None = None):
        import numpy as np

        from .model import init_vectors

        self.run, self.corpus, self.opts, self.pairs = run, corpus, opts, pairs
        self.keep = keep_thresholds(corpus.counts, opts.sample)
        self.syn0, self.syn1 = init_vectors(len(corpus.itos), opts.dim, run.seed)
        self.epoch_work = corpus.tokens if pairs is None else int(sum(pairs.info["shard_pairs"]))
        self.total_work = self.epoch_work * opts.epochs
        self.state = {"epoch": 0, "unit": 0, "work": 0, "kept": 0, "pairs": 0, "seconds": 0.0,
                      "loss_sum": 0.0, "loss_n": 0, "finished": False}
        self._shard_cache: tuple[int, Any, Any] | None = None
        self._ids = np.asarray(corpus.ids)
        self._offsets = np.asarray(corpus.offsets)
        self._torch = None

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
                                        seed, o.shared_negatives, o.loss_every)
        targets, contexts = self._shard(unit.shard)

        def shard_unit() -> tuple[int, int, float, int]:
            n, loss, loss_n = train_pairs(targets, contexts, unit.a, unit.b, self.corpus.neg_threshold,
                                          self.corpus.neg_alias, self.syn0, self.syn1, o.negative, a0, a1, seed,
                                          o.shared_negatives, o.loss_every, 2 * int(self.pairs.options["window"]))
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
                             self.syn1, o.window, o.negative, 0.0, 0.0, 1, o.shared_negatives, o.loss_every)
            else:
                t, ctx = self._shard(0)
                train_pairs(t, ctx, 0, 0, c.neg_threshold, c.neg_alias, self.syn0, self.syn1, o.negative, 0.0, 0.0,
                            1, o.shared_negatives, o.loss_every, 2)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ checkpoints
    def load(self, ckpt: dict, vocab_fingerprint: str) -> None:
        extra = ckpt.get("extra") or {}
        got = (extra.get("corpus") or {}).get("vocab_fingerprint")
        if got != vocab_fingerprint:
            raise CheckpointError("the run to resume was trained on another vocabulary "
                                  f"({got} != {vocab_fingerprint}); resume with the same --data and --min-count")
        sd = ckpt["state_dict"]
        if tuple(sd["in_vectors"].shape) != self.syn0.shape:
            raise CheckpointError(f"last.pt holds vectors of shape {tuple(sd['in_vectors'].shape)}, "
                                  f"expected {self.syn0.shape}; resume with the same --dim")
        self.syn0[:] = sd["in_vectors"].numpy()
        self.syn1[:] = sd["out_vectors"].numpy()
        self.state.update(ckpt.get("train_state") or {})

    def payload(self, meta: dict) -> dict:
        import torch

        self.sync_from_device()
        return {"model": "sgns", "config": meta["config"], "vocab": self.corpus.vocab_dict(),
                "state_dict": {"in_vectors": torch.from_numpy(self.syn0), "out_vectors": torch.from_numpy(self.syn1)},
                "extra": meta["extra"]}

    # ------------------------------------------------------------------ the loop
    def fit(self, meta: dict) -> dict:
        """Train until the epochs are done, the time budget is spent or Ctrl-C. Returns a summary."""
        o, run, st = self.opts, self.run, self.state
        workers = 1 if o.backend == "torch" else max(1, o.workers)
        replicated = textlab.distributed.world_size() > 1
        compile_s = self.warm_up()
        self.rss_before = _peak_rss_mb()
        epoch, first = st["epoch"], st["unit"]
        done_before = st["work"]
        units = self._all_units(epoch, first)
        unit_name = "words" if self.pairs is None else "pairs"
        t_start = time.perf_counter()
        last_log = last_save = t_start
        seconds_before = st["seconds"]
        window_kept = window_pairs = 0
        window_loss = 0.0
        window_loss_n = 0
        window_t = t_start
        stopping: str | None = None
        draining = False
        pending: dict = {}
        next_unit: Unit | None = next(units, None)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sgns") as pool, \
                textlab.progress(self.total_work, f"train ({workers} thread{'s' * (workers > 1)})", unit=unit_name) as bar:
            bar.advance(done_before)
            while True:
                while next_unit is not None and not draining and not stopping and len(pending) < 2 * workers:
                    pending[pool.submit(self.unit_fn(next_unit))] = next_unit
                    next_unit = next(units, None)
                if not pending:
                    if draining or (stopping and next_unit is not None):
                        st["epoch"], st["unit"] = (next_unit.epoch, next_unit.index) if next_unit else (o.epochs, 0)
                        st["seconds"] = seconds_before + time.perf_counter() - t_start
                        self._save_last(meta)
                        last_save = time.perf_counter()
                        draining = False
                        if stopping:
                            break
                        continue
                    break
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    unit = pending.pop(fut)
                    kept, pairs, loss, loss_n = fut.result()
                    st["work"] += unit.work
                    st["kept"] += kept
                    st["pairs"] += pairs
                    st["loss_sum"] += loss
                    st["loss_n"] += loss_n
                    window_kept += kept
                    window_pairs += pairs
                    window_loss += loss
                    window_loss_n += loss_n
                    bar.advance(unit.work)
                now = time.perf_counter()
                if now - last_log >= LOG_EVERY and window_pairs:
                    span = now - window_t
                    metrics = {"loss": window_loss / max(1, window_loss_n), "lr": self.lr_at(st["work"]),
                               "pairs_per_s": window_pairs / span}
                    if self.pairs is None:
                        metrics["words_per_s"] = (st["work"] - done_before) / (now - t_start)
                        metrics["effective_words_per_s"] = window_kept / span
                    run.log("train", metrics, step=st["work"], epoch=st["work"] / self.epoch_work)
                    bar.set(**{"pairs/s": human(window_pairs / span), "loss": round(metrics["loss"], 4),
                               "lr": f"{metrics['lr']:.5f}"})
                    last_log = window_t = now
                    window_kept = window_pairs = window_loss_n = 0
                    window_loss = 0.0
                if not stopping:
                    # under torchrun every rank trains the same units (see the module docstring):
                    # no collective call here, the ranks pass this point a different number of times
                    if run.stop_requested is not None if replicated else run.should_stop():
                        stopping = "interrupted"
                    elif o.time_budget and seconds_before + now - t_start >= o.time_budget:
                        stopping = "time_budget"
                    elif o.save_every and now - last_save >= o.save_every:
                        draining = True
        train_s = time.perf_counter() - t_start
        st["seconds"] = seconds_before + train_s
        if stopping and next_unit is None and not pending:
            stopping = None  # the units in flight were the last ones: training is complete
        summary = self.summary(train_s, done_before, compile_s, stopped=stopping or "done")
        final = {"loss": summary["loss"], "lr": self.lr_at(st["work"]), "pairs_per_s": summary["pairs_per_s"],
                 "words_per_s": summary["words_per_s"], "effective_words_per_s": summary["effective_words_per_s"]}
        run.log("train", final, step=st["work"], epoch=st["work"] / self.epoch_work)
        if stopping:
            done = f"after {human(st['work'])} of {human(self.total_work)} {unit_name}"
            if stopping == "time_budget":
                textlab.status(f"stopped at the time budget ({o.time_budget:g} s of training in all) {done}; last.pt is "
                               f"saved (best.pt once every epoch is done); continue with: textlab train --resume "
                               f"{run.dir} --time-budget 0")
            else:
                textlab.status(f"stopped ({stopping}) {done}; last.pt is saved")
            run.update(stopped=stopping)
            return summary
        st.update(epoch=o.epochs, unit=0, finished=True)
        self._save_last(meta)
        run.save_checkpoint("best", **self.payload(meta))
        return summary

    def _all_units(self, epoch: int, first: int) -> Iterator[Unit]:
        for e in range(epoch, self.opts.epochs):
            yield from self.units(e, first if e == epoch else 0)

    def _save_last(self, meta: dict) -> None:
        self.run.save_checkpoint("last", **self.payload(meta), train_state=dict(self.state))

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


def options_dict(opts: TrainOptions) -> dict:
    return asdict(opts)


def checkpoint_meta(corpus: Corpus, vocab_step: Step, pair_step: Step | None, opts: TrainOptions) -> dict:
    """The config and `extra` a word2vec checkpoint carries: where its corpus came from, how it trained."""
    from .model import SGNSConfig

    vi = vocab_step.info
    return {
        "config": SGNSConfig(vocab_size=len(corpus.itos), dim=opts.dim),
        "extra": {
            "normalize": {"fold_yo": bool((vi.get("prep_options") or {}).get("fold_yo", False))},
            "corpus": {"source": vi.get("source"), "vocab_dir": str(vocab_step.dir), "vocab_fingerprint": vocab_step.fingerprint,
                       "min_count": vi["options"]["min_count"], "raw_tokens": vi["raw_tokens"], "tokens": vi["tokens"],
                       "pairs_dir": str(pair_step.dir) if pair_step else None,
                       "pairs_fingerprint": pair_step.fingerprint if pair_step else None},
            "train": options_dict(opts),
        },
    }


def save_final(path: Path, trainer: Trainer, meta: dict) -> Path:
    """The `--out FILE.pt` copy of the final checkpoint (no training state: only for using the vectors)."""
    return textlab.save_checkpoint(path, task="word2vec", **trainer.payload(meta))
