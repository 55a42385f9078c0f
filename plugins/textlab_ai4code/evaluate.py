"""Scoring predicted orders, and the eval and generate verbs' work.

`evaluate_orders` gives the metrics of predicted orders by notebook-length bucket (training's
validation uses it too); `evaluate_artifact` scores a run on notebooks with known orders and
writes the JSON; `generate_submission` writes a Kaggle submission (id,cell_order).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Sequence

import textlab

from . import metrics as Mx
from .config import FOLDER_SPLIT, TASK, EvalOptions, GenerateOptions
from .data import Notebook, find_cells_dir, grouped_split, load_data

COLUMNS = (("kendall_tau", "Kendall tau"), ("mean_tau", "mean tau"), ("spearman", "Spearman"),
           ("gap_accuracy", "right gap"), ("position_mae", "pos. MAE"))


def evaluate_orders(notebooks: Sequence[Notebook], orders: Sequence[Sequence[str]]) -> tuple[dict, list[dict]]:
    """(metrics by notebook-length bucket, per-notebook stats)."""
    stats = [Mx.notebook_stats(nb.order, o, dict(zip(nb.cell_ids, nb.cell_types)), nb.id)
             for nb, o in zip(notebooks, orders)]
    return Mx.by_bucket(stats), stats


def overall(metrics: dict) -> dict:
    """The metrics over all notebooks, without the counts (what training logs as valid/...)."""
    return {k: v for k, v in metrics["all"].items() if k not in ("notebooks", "cells")}


def show_metrics(metrics: dict, title: str) -> None:
    """One row per notebook-length bucket (cells per notebook), then all notebooks."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("cells per notebook")
    t.add_column("notebooks", justify="right")
    for _, label in COLUMNS:
        t.add_column(label, justify="right")
    for bucket, m in metrics.items():
        style = "bold" if bucket == "all" else None
        t.add_row(bucket, f"{m['notebooks']:,}", *(_fmt(m.get(k)) for k, _ in COLUMNS), style=style)
    textlab.show(t)
    textlab.show("[dim]Kendall tau: pooled inversions, as Kaggle scored; mean tau: per notebook; right gap: share of "
                 "markdown cells between the right two code cells; pos. MAE: mean |position error| of markdown, in cells[/dim]")


def _fmt(value) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"


# ============================================================================ a run's model
def model_of(artifact: textlab.Artifact):
    """The checkpoint's model, ready to order notebooks (one line when there is none to use)."""
    if artifact.task != TASK:
        raise textlab.CheckpointError(f"{artifact.path} belongs to task {artifact.task!r}, not ai4code")
    if artifact.extra.get("fitted") is False:
        run = artifact.run_dir or artifact.path.parent.parent
        raise textlab.CheckpointError(f"{artifact.path} holds no model: its fit was interrupted",
                                      hint=f"fit it with: textlab train --resume {run}")
    try:  # the neural models (and a blend's) run on --device; the others are numpy over tensors kept on the CPU
        model = artifact.build_model(None if artifact.model_name in ("neural", "transformer", "blend") else "cpu")
    except (KeyError, RuntimeError, ValueError) as exc:
        raise textlab.CheckpointError(f"{artifact.path} does not hold a usable {artifact.model_name!r} model "
                                      f"({str(exc).splitlines()[0][:120]})") from None
    if artifact.model_name == "blend":
        model.members()  # a member that moved or changed: one line before any work
    return model


# ============================================================================ eval
def eval_notebooks(artifact: textlab.Artifact, data: str, own: bool, split: str | None,
                   limit: int) -> tuple[list[Notebook], str, str]:
    """(the notebooks `eval` scores, the split, what they are: for the status line)."""
    source = textlab.resolve(TASK, data)
    ex = artifact.extra
    share = FOLDER_SPLIT["valid_share"] if ex.get("valid_share") is None else float(ex["valid_share"])
    seed = FOLDER_SPLIT["split_seed"] if ex.get("split_seed") is None else int(ex["split_seed"])
    if split is None:
        split = "valid" if own and source.kind != "registered" and share > 0 else "all"
    if source.kind == "registered":
        notebooks = load_data(data, {"all": "test"}.get(split, split))
        what = f"its {'test' if split == 'all' else split} split"
    else:
        if split == "valid" and share == 0:
            raise textlab.UsageError("the run was trained with --valid-share 0: it has no validation part",
                                     hint="use --split all")
        notebooks = load_data(data, "train", lazy=True)  # read one by one when predicted
        what = "all of them"
        if split != "all":
            tr, va = grouped_split(notebooks, share, seed)
            notebooks = va if split == "valid" else tr
            what = f"the {split} part of the run's split: {share:.0%} by ancestor, seed {seed}"
    if limit:
        notebooks = notebooks[:limit]
        what += f"; --limit {limit}"
    return notebooks, split, what


def evaluate_artifact(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Kendall tau and the other metrics of a run on notebooks with known orders; writes the JSON."""
    net = model_of(artifact)
    data, own = artifact.data_source(opts.data)
    notebooks, split, what = eval_notebooks(artifact, data, own, opts.split, opts.limit)
    tag = " (the run's own data)" if own else ""
    textlab.status(f"eval on {data}{tag}: {len(notebooks)} notebooks ({what})")
    t = time.perf_counter()
    orders = net.order(notebooks)
    seconds = time.perf_counter() - t
    metrics, _ = evaluate_orders(notebooks, orders)
    title = f"{artifact.model_name} on {data}" + (f" ({split})" if split != "all" else "")
    show_metrics(metrics, title)
    result = {"model": artifact.model_name, "data": data, "split": split, "predict_time": round(seconds, 3),
              "metrics": metrics}
    limit = f"-limit{opts.limit}" if opts.limit else ""
    path = artifact.output_dir("eval", data=data) / f"metrics-{split}{limit}.json"
    textlab.write_json(path, result)
    textlab.status(f"wrote {path}")
    return result | {"path": str(path)}


# ============================================================================ generate
def generate_submission(artifact: textlab.Artifact, opts: GenerateOptions) -> dict:
    """Predict the order of every notebook of the data and write `id,cell_order` rows to `opts.out`."""
    out = Path(opts.out).expanduser()
    if out.is_dir():  # before any work: predicting can take minutes
        raise textlab.UsageError(f"--out {out} is a folder; give a file name such as submission.csv")
    net = model_of(artifact)
    data, own = artifact.data_source(opts.data)
    source = textlab.resolve(TASK, data)
    notebooks = load_data(data, "test", need_orders=False, prefer="test", lazy=True)
    if opts.limit:
        notebooks = notebooks[:opts.limit]
    where = "its test split" if source.kind == "registered" else f"{find_cells_dir(source.path, 'test')[0].name}/"
    tag = " (the run's own data)" if own else ""
    textlab.status(f"generate for {data}{tag}: {len(notebooks)} notebooks ({where})")
    orders = net.order(notebooks)
    with textlab.atomic_write(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "cell_order"])
        for nb, order in zip(notebooks, orders):
            w.writerow([nb.id, " ".join(order)])
    textlab.show(f"wrote {len(notebooks)} predicted orders to {out}")
    return {"out": str(out), "data": data, "notebooks": len(notebooks), "model": artifact.model_name}
