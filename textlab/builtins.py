"""What the core itself registers: generic metrics and the metric loggers.

Registered through the same hooks as any plugin (under the plugin name `textlab`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .hookspecs import hookimpl
from .specs import LoggerSpec, MetricSpec


def accuracy(predictions: Any, targets: Any) -> float:
    """Share of predictions equal to targets."""
    preds, gold = list(predictions), list(targets)
    if not gold:
        return float("nan")
    return sum(int(p == t) for p, t in zip(preds, gold)) / len(gold)


@hookimpl
def textlab_metrics():
    return [
        MetricSpec("loss", higher_is_better=False, help="training objective (lower is better)"),
        MetricSpec("accuracy", higher_is_better=True, fn=accuracy, help="share of correct predictions"),
        MetricSpec("lr", higher_is_better=False, help="learning rate (logged, not optimised)"),
    ]


class CSVLogger:
    """metrics.csv beside metrics.jsonl (spreadsheets, pandas.read_csv)."""

    fields = ("step", "epoch", "split", "name", "value", "time")

    def __init__(self, run_dir: Path, config: dict):
        path = Path(run_dir) / "metrics.csv"
        new = not path.exists()
        self._fh = open(path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.fields)
        if new:
            self._writer.writeheader()

    def log(self, record: dict) -> None:
        self._writer.writerow({k: record.get(k) for k in self.fields})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TensorBoardLogger:
    """TensorBoard event files in <run>/tensorboard (needs the `tensorboard` package)."""

    def __init__(self, run_dir: Path, config: dict):
        from .errors import UsageError

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("the tensorboard logger needs the 'tensorboard' package",
                             hint="pip install tensorboard") from None
        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, record: dict) -> None:
        self._writer.add_scalar(f"{record['name']}/{record['split']}", record["value"], record["step"])

    def close(self) -> None:
        self._writer.close()


@hookimpl
def textlab_loggers():
    return [
        LoggerSpec("csv", CSVLogger, help="metrics.csv in the run directory"),
        LoggerSpec("tensorboard", TensorBoardLogger, help="TensorBoard event files in <run>/tensorboard"),
    ]
