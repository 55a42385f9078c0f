"""Training and evaluation of the character LMs (both models, one data path, the shared loop)."""

from __future__ import annotations

import math
import re
import time

import torch
import torch.nn.functional as F

import textlab

from . import data as gdata

LN2 = math.log(2.0)


# ============================================================================ options
def parse_duration(text: str | None) -> float | None:
    """'90s', '20m', '1h30m', '1.5h', '600' (seconds) -> seconds; None/'' -> None."""
    if text is None or str(text).strip() == "":
        return None
    s = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        seconds = float(s)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", s)
        if not parts or "".join(a + b for a, b in parts) != s:
            raise textlab.UsageError(f"cannot read the duration {text!r}", hint="use e.g. 90s, 20m, 1h30m or seconds")
        seconds = sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts)
    if seconds <= 0:
        raise textlab.UsageError(f"the duration {text!r} must be positive")
    return seconds


def model_config(model: str, vocab_size: int, **options):
    """The registered model's config dataclass from the train options (bad sizes: one line)."""
    spec = textlab.registry().model("gla", model)
    fields = {"d_model": options.get("d_model"), "n_layers": options.get("layers"), "n_heads": options.get("heads"),
              "chunk_size": options.get("chunk_size"), "sub_chunk": options.get("sub_chunk"),
              "tie_embeddings": options.get("tie_embeddings")}
    config = textlab.make_config(spec.config, {k: v for k, v in fields.items() if v is not None})
    config.vocab_size = vocab_size
    return spec, config


def build(spec, config, vocab):
    try:
        return spec.build(config, vocab)
    except ValueError as exc:
        raise textlab.UsageError(f"cannot build model {spec.name!r}: {exc}") from None


# ============================================================================ learning-rate schedule
class Schedule:
    """Linear warm-up, then cosine decay to `min_ratio` x peak over the run.

    Progress is the larger of steps/max_steps and elapsed/time_budget, so a run planned by
    wall-clock time ends its decay when the budget runs out. Its state (step, elapsed seconds)
    goes into last.pt, so `--resume` continues the same curve.
    """

    def __init__(self, optimizer, peak: float, warmup: int, min_ratio: float, total_steps: int | None,
                 budget: float | None):
        self.optimizer, self.peak, self.warmup, self.min_ratio = optimizer, peak, warmup, min_ratio
        self.total_steps, self.budget = total_steps, budget
        self.step_num, self.elapsed, self._last = 0, 0.0, None
        self._apply()

    def progress(self) -> float:
        p = 0.0
        if self.total_steps:
            p = max(p, self.step_num / self.total_steps)
        if self.budget:
            p = max(p, self.elapsed / self.budget)
        return min(p, 1.0)

    def lr(self) -> float:
        warm = min(1.0, (self.step_num + 1) / self.warmup) if self.warmup else 1.0
        cos = 0.5 * (1 + math.cos(math.pi * self.progress()))
        return self.peak * warm * (self.min_ratio + (1 - self.min_ratio) * cos)

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()

    def step(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.elapsed += now - self._last
        self._last = now
        self.step_num += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_num": self.step_num, "elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.step_num, self.elapsed, self._last = int(state["step_num"]), float(state["elapsed"]), None
        self._apply()


def optimizer_for(model, lr: float, weight_decay: float):
    """AdamW, betas (0.9, 0.95); weight decay on matrices only (not norms, biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


# ============================================================================ evaluation
@torch.no_grad()
def evaluate_ids(model, ids: torch.Tensor, seq_len: int, *, batch_size: int = 16, max_chars: int | None = None,
                 context: str = "window", device=None, shard: bool = False, bar=None) -> dict:
    """Mean loss (nats per character) and bits per character on a stream of ids.

    `context="window"`: non-overlapping windows of `seq_len` characters, each read from scratch
    (what both models can do). `context="stream"` (GLA): `batch_size` contiguous streams, read
    window by window with the recurrent state carried over, so every character sees all the text
    before it in its stream. `shard` spreads the windows over torchrun ranks.
    """
    device = device or next(model.parameters()).device
    n = len(ids) - 1 if max_chars is None else min(len(ids) - 1, max_chars)
    if n < 1:
        raise textlab.DataError("nothing to evaluate: the text has fewer than 2 characters")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0

    def nll(x, y, cache=None):
        out = model(x.to(device), cache=cache, return_cache=cache is not None or context == "stream")
        logits, cache = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.to(device).reshape(-1), reduction="sum")
        return float(loss), cache

    if context == "stream":
        B = max(1, min(batch_size, n // max(seq_len, 1) or 1))
        L = n // B
        streams = ids[: B * L + 1]
        base = torch.arange(B) * L
        cache = None
        for s in range(0, L, seq_len):
            w = min(seq_len, L - s)
            idx = base[:, None] + s + torch.arange(w + 1)
            win = streams[idx].long()
            loss, cache = nll(win[:, :-1], win[:, 1:], cache)
            total, count = total + loss, count + win[:, 1:].numel()
            if bar is not None:
                bar.advance(w * B)
    else:
        full = n // seq_len
        starts = torch.arange(full) * seq_len
        if shard:
            starts = textlab.distributed.shard(starts)
        for i in range(0, len(starts), batch_size):
            x, y = gdata.gather_windows(ids, starts[i:i + batch_size], seq_len)
            loss, _ = nll(x, y)
            total, count = total + loss, count + y.numel()
            if bar is not None:
                bar.advance(y.numel())
        rest = n - full * seq_len
        if rest and (not shard or textlab.distributed.rank() == 0):
            w = ids[full * seq_len: full * seq_len + rest + 1].long()[None]
            loss, _ = nll(w[:, :-1], w[:, 1:])
            total, count = total + loss, count + rest
            if bar is not None:
                bar.advance(rest)
        if shard:
            total, count = textlab.distributed.all_reduce_sum([total, float(count)])
            count = int(count)
    if was_training:
        model.train()
    loss = total / max(count, 1)
    return {"loss": loss, "bpc": loss / LN2, "chars": count}


# ============================================================================ training
def train_lm(run: textlab.Run, *, data: str, model: str, d_model: int, layers: int, heads: int, seq_len: int,
             batch_size: int, lr: float, warmup: int, min_lr_ratio: float, weight_decay: float, grad_clip: float,
             epochs: int | None, steps: int | None, time_budget: str | None, eval_every: int, eval_chars: int,
             min_count: int, chunk_size: int, sub_chunk: int, tie_embeddings: bool) -> dict:
    """Train `model` on the characters of `data` with the shared loop (see the task's train verb)."""
    budget = parse_duration(time_budget)
    if model == "gla" and (sub_chunk < 1 or chunk_size % sub_chunk):  # the Transformer has no chunks
        raise textlab.UsageError(f"--chunk-size {chunk_size} must be a multiple of --sub-chunk {sub_chunk}")
    spec, config = model_config(model, 0, d_model=d_model, layers=layers, heads=heads, chunk_size=chunk_size,
                                sub_chunk=sub_chunk, tie_embeddings=tie_embeddings)
    try:  # sizes first: a bad option is one line before any data is read
        from .model import check_config

        check_config(config)
    except ValueError as exc:
        raise textlab.UsageError(f"cannot build model {model!r}: {exc}") from None
    vocab, _ = gdata.vocab_for(data, min_count)
    texts = gdata.load_texts(data, ("train", "valid"))
    train_ids = gdata.encode(texts["train"], vocab)
    valid_ids = gdata.encode(texts["valid"], vocab)
    del texts
    need = batch_size * seq_len + 1
    if len(train_ids) < need:
        raise textlab.DataError(f"the train split has {len(train_ids):,} characters; one batch needs {need:,}",
                                hint="lower --seq-len or --batch-size")
    if len(valid_ids) < 2:
        raise textlab.DataError("the valid split has fewer than 2 characters")
    config.vocab_size = len(vocab)
    net = build(spec, config, vocab.to_dict())
    n_params = net.num_parameters()
    textlab.status(f"{model}: {n_params / 1e6:.2f} M parameters, vocabulary {len(vocab)} characters, "
                   f"train {len(train_ids):,} / valid {len(valid_ids):,} characters")

    per_epoch = len(gdata.window_starts(len(train_ids), seq_len, run.seed, 0)) // batch_size
    if epochs is None and not (steps or budget):
        epochs = 1  # the default: one pass; with --steps or --time-budget, no epoch limit (None)
    total_steps = steps or (epochs * per_epoch if epochs else None)
    optimizer = optimizer_for(net, lr, weight_decay)
    schedule = Schedule(optimizer, lr, warmup, min_lr_ratio, total_steps, budget)

    def batches(epoch: int):
        starts = gdata.window_starts(len(train_ids), seq_len, run.seed, epoch)
        return [starts[i:i + batch_size] for i in range(0, len(starts) - batch_size + 1, batch_size)]

    device = run.device

    def step(model_, starts):
        x, y = gdata.gather_windows(train_ids, starts, seq_len)
        logits = model_(x.to(device))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1))
        return {"loss": loss, "bpc": loss.detach() / LN2, "n": y.numel(), "units": y.numel()}

    def evaluate(model_):
        res = evaluate_ids(model_, valid_ids, seq_len, batch_size=batch_size, max_chars=eval_chars, shard=True)
        return {"loss": res["loss"], "bpc": res["bpc"]}

    meta = {"model": model, "config": config, "vocab": vocab.to_dict(),
            "extra": {"data": gdata.describe(textlab.resolve("gla", data)), "seq_len": seq_len, "unk": gdata.UNK,
                      "min_count": min_count, "params": n_params}}
    result = textlab.fit(run, net, optimizer, batches=batches, step=step, evaluate=evaluate, meta=meta,
                         epochs=epochs, max_steps=steps, time_budget=budget, eval_every=eval_every,
                         monitor="valid/bpc", scheduler=schedule, grad_clip=grad_clip or None, unit="char",
                         description=f"train {model}")
    chars = result.step * batch_size * seq_len
    rate = chars / result.train_time if result.train_time else None
    run.update(params=n_params, chars_per_s=round(rate) if rate else None)
    return {"steps": result.step, "stopped": result.stopped, "best_valid_bpc": result.best,
            "params": n_params, "train_chars": chars, "chars_per_s": round(rate) if rate else None}
