"""Runs started by textlab 0.1.0: their options in today's names, and their learning-rate curve.

0.1.0 wrote `config.json` (one flat table, null for "the model's default") and kept the settings
its start resolved in run.json "settings". Every run of 0.1.0 resolved them from the table below
(0.1.0 had no way to change it), so a null is that table's value. Its learning rate rose over a
share of the planned steps (`len(batches) x epochs`, whatever `--max-steps` said) and then fell
linearly to 0 over the remaining ones; such a run keeps that curve when it is resumed
(`legacy_schedule`), so it continues exactly as 0.1.0 continued it.
"""

from __future__ import annotations

from typing import Any

# The per-model settings of textlab 0.1.0 (plugins/textlab_agnews/train.py:TRAIN_DEFAULTS of 951593e);
# a model a third party registered got the rnn ones. Frozen: today's defaults may change.
V010_DEFAULTS: dict[str, dict[str, Any]] = {
    "rnn": {"lr": 2e-3, "batch_size": 64, "max_len": 64, "min_count": 2, "optimizer": "adam", "warmup": 0.02},
    "bow": {"lr": 0.1, "batch_size": 32, "max_len": 128, "min_count": 1, "optimizer": "adagrad", "warmup": 0.0},
}


def upgrade_record(record: dict) -> dict:
    """0.1.0's config.json (nulls already dropped) -> today's options.

    `--max-steps` is `steps`; `--time-budget` was seconds and still is (a bare number); the unset
    training settings are 0.1.0's values; `epochs` is left to `resolve` (3 from --pretrain
    vectors, else the model's 6 or 5: decided on the same data the same way as 0.1.0 did).
    """
    out = dict(record)
    if "max_steps" in out:
        out["steps"] = out.pop("max_steps")
    if out.get("time_budget") in (0, 0.0, "0", ""):
        out.pop("time_budget")
    base = V010_DEFAULTS.get(str(out.get("model") or "rnn"), V010_DEFAULTS["rnn"])
    for key in ("lr", "batch_size", "max_len", "min_count", "optimizer"):
        out.setdefault(key, base[key])
    out["legacy_schedule"] = True
    return out


def warmup_share(model: str) -> float:
    """0.1.0's warm-up, as a share of the planned steps."""
    return float(V010_DEFAULTS.get(model, V010_DEFAULTS["rnn"])["warmup"])


def legacy_scheduler(optimizer: Any, warmup: int, total_steps: int) -> Any:
    """0.1.0's curve: (step + 1) / warmup for the first `warmup` steps, then linear from 1 at step
    `warmup` to 0 at `total_steps` (the engine's "linear" shape falls as 1 - step / planned)."""
    import torch

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, 1.0 - (step - warmup) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
