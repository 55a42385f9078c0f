"""What the core itself registers: generic metrics and the metric loggers.

Registered through the same hooks as any plugin (under the plugin name `textlab`).
"""

from __future__ import annotations

import csv
import json
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


def _scalar_params(config: dict) -> dict:
    """A run's options as flat scalars (what hparams and params tables take)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif value is not None:
            out[key] = json.dumps(value, default=str)
    return out


def _best(run_dir: Path) -> dict:
    try:
        info = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    best = info.get("best") if isinstance(info, dict) else None
    return best if isinstance(best, dict) else {}


class TensorBoardLogger:
    """TensorBoard event files in <run>/tensorboard, with the run's options as hparams
    (`pip install textlab[tensorboard]`)."""

    def __init__(self, run_dir: Path, config: dict):
        from .errors import UsageError

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("the tensorboard logger needs the 'tensorboard' package",
                             hint="pip install 'textlab[tensorboard]'") from None
        self._run_dir, self._config = Path(run_dir), config
        self._writer = SummaryWriter(log_dir=str(self._run_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        self._writer.add_scalar(f"{record['name']}/{record['split']}", record["value"], record["step"])

    def finish(self, status: str) -> None:
        best = _best(self._run_dir)
        metrics = {"hparam/best": float(best["value"])} if isinstance(best.get("value"), (int, float)) else {}
        self._writer.add_hparams(_scalar_params(self._config), metrics or {"hparam/best": float("nan")}, run_name=".")

    def close(self) -> None:
        self._writer.close()


class MLflowLogger:
    """Metrics, options (as params) and status in an MLflow tracking store: MLFLOW_TRACKING_URI
    (`sqlite:///FILE`, a server, or a `file:` folder where the MLflow version still reads them),
    default `sqlite:///<runs root>/mlflow.db`; the experiment is `textlab-<task>`, the MLflow run is
    named after the run directory and reused by a resume (`pip install textlab[mlflow]`)."""

    def __init__(self, run_dir: Path, config: dict):
        import os

        from .errors import UsageError
        from .rundir import runs_root

        import logging

        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UsageError("the mlflow logger needs MLflow", hint="pip install 'textlab[mlflow]'") from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its "creating database tables" lines
        self._run_dir = Path(run_dir)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{runs_root().resolve() / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        id_file = self._run_dir / "mlflow_run_id"
        if id_file.exists() and self._reopen(id_file.read_text(errors="replace").strip()):
            return  # a resume: go on logging into the same MLflow run
        name = f"textlab-{self._run_dir.parent.name}"
        found = self.client.get_experiment_by_name(name)
        experiment = found.experiment_id if found else self.client.create_experiment(name)
        run = self.client.create_run(experiment, run_name=self._run_dir.name,
                                     tags={"textlab.run_dir": str(self._run_dir.resolve())})
        self.run_id = run.info.run_id
        id_file.write_text(self.run_id + "\n")
        for key, value in _scalar_params(config).items():
            self.client.log_param(self.run_id, key, str(value)[:500])

    def _reopen(self, run_id: str) -> bool:
        """Log into the MLflow run a resumed run used before, if this store has it."""
        try:
            self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - another store, or a damaged id file: a new MLflow run
            return False
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        return True

    def log(self, record: dict) -> None:
        import math

        if math.isfinite(record["value"]):
            self.client.log_metric(self.run_id, f"{record['split']}/{record['name']}", record["value"],
                                   step=int(record["step"]))

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status={"finished": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED"))

    def close(self) -> None:
        return None


@hookimpl
def textlab_loggers():
    return [
        LoggerSpec("csv", CSVLogger, help="metrics.csv in the run directory"),
        LoggerSpec("tensorboard", TensorBoardLogger, help="TensorBoard event files (and hparams) in <run>/tensorboard"),
        LoggerSpec("mlflow", MLflowLogger, help="an MLflow tracking store (MLFLOW_TRACKING_URI; default <runs>/mlruns)"),
    ]
