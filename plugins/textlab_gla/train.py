"""Training the character LMs (both models, one data path) on the core engine.

AdamW with weight decay on matrices only, a linear warm-up then a cosine decay to
`--min-lr-ratio` x peak that ends when the planned steps, or the time budget, run out
(`textlab.Schedule("cosine")`), gradient clipping, evaluation on a slice of valid every
`--eval-every` steps, best.pt by valid bits per character.

The GLA operator is fla's Triton kernel on a CUDA device where flash-linear-attention is installed,
this plugin's own chunk form everywhere else (`model.chunk_kernel`); run.json says which
(`gla_kernel`). With `--compile` that own operator stays one opaque call (`model.opaque_to_compiler`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import textlab

from . import data as gdata
from .config import TrainOptions
from .evaluate import LN2, evaluate_ids
from .model import chunk_kernel, opaque_to_compiler


def train_lm(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train `opts.model` on the characters of `opts.data` (see the task's train verb)."""
    vocab, _ = gdata.vocab_for(opts.data, opts.min_count)
    # memory-mapped ids (written once beside the prepared text): no copy of the corpus in memory,
    # so a step costs the same on WikiText-2 and on 690M characters
    train_ids = gdata.load_ids(opts.data, vocab, "train")
    valid_ids = gdata.load_ids(opts.data, vocab, "valid")
    need = opts.batch_size * opts.seq_len + 1
    if len(train_ids) < need:
        raise textlab.DataError(f"the train split has {len(train_ids):,} characters; one batch needs {need:,}",
                                hint="lower --seq-len or --batch-size")
    if len(valid_ids) < 2:
        raise textlab.DataError("the valid split has fewer than 2 characters")
    spec = textlab.registry().model("gla", opts.model)
    config = textlab.make_config(spec.config, opts, {"vocab_size": len(vocab)})
    net = spec.build(config, vocab.to_dict())
    n_params = net.num_parameters()
    kernel = chunk_kernel(run.device) if opts.model == "gla" else None
    if kernel == "textlab" and run.config.get("compile"):
        opaque_to_compiler()
    if kernel:
        run.update(gla_kernel=kernel)
    textlab.status(f"{opts.model}: {n_params / 1e6:.2f} M parameters, vocabulary {len(vocab)} characters, "
                   f"train {len(train_ids):,} / valid {len(valid_ids):,} characters" +
                   (f"; GLA operator: {'fla (Triton)' if kernel == 'fla' else 'textlab chunk form'}" if kernel else ""))
    B, L = opts.batch_size, opts.seq_len

    def batches(epoch: int):
        starts = gdata.window_starts(len(train_ids), L, run.seed, epoch)
        return [starts[i:i + B] for i in range(0, len(starts) - B + 1, B)]

    device = run.device

    def step(model_, starts):
        x, y = gdata.gather_windows(train_ids, starts, L)
        logits = model_(x.to(device))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(device).reshape(-1))
        return {"loss": loss, "bpc": loss.detach() / LN2, "n": y.numel(), "units": y.numel()}

    def evaluate(model_):
        res = evaluate_ids(model_, valid_ids, L, batch_size=B, max_chars=opts.eval_chars, shard=True)
        return {"loss": res["loss"], "bpc": res["bpc"]}

    meta = {"model": opts.model, "config": config, "vocab": vocab.to_dict(),
            "extra": {"data": textlab.resolve("gla", opts.data).reference(), "seq_len": L, "unk": gdata.UNK,
                      "min_count": opts.min_count, "params": n_params}}
    engine = textlab.Engine(
        run, net, textlab.adamw(net, opts.lr, opts.weight_decay), batches=batches, step=step, evaluate=evaluate,
        meta=meta, epochs=opts.epochs, steps=opts.steps, time_budget=opts.time_budget, eval_every=opts.eval_every,
        patience=opts.patience, monitor="valid/bpc", grad_clip=opts.grad_clip or None, unit="char",
        schedule=textlab.Schedule("cosine", warmup=opts.warmup, min_ratio=opts.min_lr_ratio),
        description=f"train {opts.model}")
    result = engine.fit()
    chars = result.step * B * L
    rate = chars / result.train_time if result.train_time else None
    run.update(params=n_params, chars_per_s=round(rate) if rate else None)
    return {"steps": result.step, "stopped": result.stopped, "best_valid_bpc": result.best,
            "params": n_params, "train_chars": chars, "chars_per_s": round(rate) if rate else None}
