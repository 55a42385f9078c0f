"""The ai4code task: hooks and verbs (prep, analyze, train, eval, generate).

Put the cells of Jupyter notebooks back in order (Kaggle "Google AI4Code"): code cells come in
their true order, markdown cells shuffled after them; predict the full order. Scored by Kendall
tau with inversions pooled over notebooks.

This module stays light to import: torch, numpy and scikit-learn are imported inside the verbs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import textlab
from textlab import Option

from .config import AppendedConfig, NeuralConfig, PointwiseConfig, RankerConfig, SimilarConfig

TASK = "ai4code"
MONITOR = "valid/kendall_tau"
NEURAL = "neural model options"
RANKER = "ranker options"


# ============================================================================ prep
def prep(
    *,
    from_notebooks: Annotated[Path, Option(help="A folder of .ipynb files (searched recursively), or one file.")],
    out: Annotated[Path, Option(help="Where the Kaggle layout goes (train/, train_orders.csv, ...).")] = Path("data/nb"),
    min_markdown: Annotated[int, Option(min=0, help="Keep notebooks with at least this many markdown cells.")] = 1,
    min_code: Annotated[int, Option(min=0, help="... and at least this many code cells.")] = 1,
    max_chars: Annotated[int, Option(min=1, help="Skip notebooks with more characters of source.")] = 400_000,
    language: Annotated[str, Option(help="Kernel language to keep ('any' keeps all).")] = "python",
    overwrite: Annotated[bool, Option(help="Replace notebooks already in --out (left as they are when no "
                                           "notebook would be kept).")] = False,
) -> dict:
    """Convert a folder of .ipynb notebooks into the Kaggle AI4Code layout (outputs and empty cells dropped)."""
    from rich.table import Table

    from .prep import prep_notebooks

    report = prep_notebooks(from_notebooks, out, min_markdown=min_markdown, min_code=min_code, max_chars=max_chars,
                            language=language.lower(), overwrite=overwrite)
    t = Table(title=f"prep: {report['source']} -> {report['out']}")
    t.add_column("")
    t.add_column("count", justify="right")
    t.add_row("notebooks found", f"{report['found']:,}")
    t.add_row("[green]kept[/green]", f"{report['kept']:,}")
    for reason, n in report["reasons"].items():
        t.add_row(f"[yellow]skipped[/yellow]: {reason}", f"{n:,}")
    t.add_row("cells (markdown / code)", f"{report['cells']:,} ({report['markdown_cells']:,} / {report['code_cells']:,})")
    textlab.show(t)
    if report["skipped"]:
        textlab.status(f"skipped files and reasons: {Path(report['out']) / 'prep_report.json'}")
    return {k: v for k, v in report.items() if k != "skipped_files"} | {"skipped_files": report["skipped_files"][:50]}


# ============================================================================ analyze
def analyze(
    *,
    data: Annotated[str, Option(help="'sample' or a folder in Kaggle layout.")] = "sample",
    split: Annotated[Literal["train", "valid", "test"], Option(help="Which split of the sample.")] = "train",
    plot: Annotated[Optional[Path], Option(help="Also write a PNG of the distributions here.")] = None,
) -> dict:
    """Cells per notebook, markdown share, where markdown sits, and the languages of the markdown."""
    from .analysis import analyze_notebooks, show_analysis
    from .data import load_data

    notebooks = load_data(data, split, need_orders=False)
    result = analyze_notebooks(notebooks)
    result["data"] = data
    show_analysis(result)
    if plot is not None:
        from .analysis import plot_analysis

        result["plot"] = str(plot_analysis(notebooks, plot))
    return result


# ============================================================================ train
def _describe(data: str) -> str:
    """What a checkpoint stores as its data: a registered name, or a folder's absolute path (so that
    `eval` and `generate` find it again from any working directory)."""
    source = textlab.resolve(TASK, data)
    return str(source.path.expanduser().resolve()) if source.kind == "local" else data


def _split(data: str, valid_share: float, split_seed: int, limit: int):
    """(train, valid, how the split was made: for the status line)."""
    from .data import grouped_split, load_data

    source = textlab.resolve(TASK, data)
    if source.kind == "registered":
        train, valid = load_data(data, "train"), load_data(data, "valid")
        how = f"the {data}'s own train/valid splits; --valid-share and --split-seed apply to folders"
    else:
        notebooks = load_data(data, "train")
        train, valid = grouped_split(notebooks, valid_share, split_seed)
        how = (f"{valid_share:.0%} grouped by ancestor, split seed {split_seed}" if valid
               else "--valid-share 0: no validation")
    if limit:
        train, valid = train[:limit], valid[: max(1, limit // 4)] if valid else valid
        how += f"; --limit {limit}"
    return train, valid, how


def train(
    run: textlab.Run,
    *,
    data: Annotated[str, Option(help="'sample' or a folder in Kaggle layout (train/, train_orders.csv).")] = "sample",
    model: Annotated[str, Option(help="Which model: baselines appended/similar, pointwise, ranker, neural.")] = "ranker",
    valid_share: Annotated[float, Option(min=0.0, max=0.9, help="Share of notebooks (whole ancestor groups) kept to "
                                                                "validate; folders only (the sample has its own valid split).")] = 0.2,
    split_seed: Annotated[int, Option(help="Seed of the grouped train/valid split; folders only.")] = 42,
    limit: Annotated[int, Option(min=0, help="Use at most this many training notebooks, and at most max(1, N/4) "
                                             "validation notebooks (0: all).")] = 0,
    trees: Annotated[int, Option(min=1, help="Boosting iterations per stage.", rich_help_panel=RANKER)] = 200,
    leaves: Annotated[int, Option(min=2, help="Leaves per tree.", rich_help_panel=RANKER)] = 63,
    learning_rate: Annotated[float, Option(min=0.0, help="Boosting learning rate.", rich_help_panel=RANKER)] = 0.1,
    negatives: Annotated[float, Option(min=0.0, max=1.0, help="Share of wrong gaps kept for fitting.",
                                       rich_help_panel=RANKER)] = 0.15,
    stages: Annotated[int, Option(min=1, max=2, help="2: a second pass sees where the first put the other "
                                                     "markdown cells.", rich_help_panel=RANKER)] = 2,
    epochs: Annotated[int, Option(min=1, help="Passes over the training notebooks.", rich_help_panel=NEURAL)] = 8,
    lr: Annotated[float, Option(min=0.0, help="Peak learning rate (linear warm-up, then 1/sqrt(step) decay).", rich_help_panel=NEURAL)] = 3e-3,
    batch_size: Annotated[int, Option(min=1, help="Notebooks per step.", rich_help_panel=NEURAL)] = 8,
    dim: Annotated[int, Option(min=4, help="Width of the encoder.", rich_help_panel=NEURAL)] = 64,
    buckets: Annotated[int, Option(min=16, help="Hash buckets of the token table.", rich_help_panel=NEURAL)] = 1 << 17,
    time_budget: Annotated[float, Option(min=0.0, help="Stop training after this many minutes (0: none).",
                                         rich_help_panel=NEURAL)] = 0.0,
    tokenizer: Annotated[str, Option(help="'hash' (no download), or a local folder with a Hugging Face tokenizer.",
                                     rich_help_panel=NEURAL)] = "hash",
    hub: Annotated[bool, Option(help="Allow --tokenizer to name a Hugging Face hub model (downloads).",
                                rich_help_panel=NEURAL)] = False,
) -> dict:
    """Train a model that orders notebook cells; validates on a split grouped by ancestor."""
    hf_json = None
    if model == "neural" and tokenizer != "hash":
        from .hf import load_tokenizer_json

        hf_json = load_tokenizer_json(tokenizer, allow_hub=hub)  # fails in one line before any work
    train_nbs, valid_nbs, how = _split(data, valid_share, split_seed, limit)
    if model in ("pointwise", "ranker", "neural"):
        from .train import usable

        usable(train_nbs)  # none with both code and markdown: one line before anything else
    textlab.status(f"{len(train_nbs)} training notebooks, {len(valid_nbs)} validation notebooks ({how})")
    extra = {"data": _describe(data), "valid_share": valid_share, "split_seed": split_seed, "limit": limit,
             "train_notebooks": len(train_nbs), "valid_notebooks": len(valid_nbs)}
    if model == "neural":
        import torch

        from .train import train_neural

        config = NeuralConfig(buckets=buckets, dim=dim)
        if hf_json:
            config.hf_vocab = 1
        result = train_neural(run, train_nbs, valid_nbs, config, hf_json=hf_json, epochs=epochs, lr=lr,
                              batch_size=batch_size, time_budget=time_budget * 60 or None, extra=extra)
        return result | _report_valid(run)
    return _train_fitted(run, model, train_nbs, valid_nbs, extra,
                         RankerConfig(trees=trees, leaves=leaves, learning_rate=learning_rate, negatives=negatives,
                                      stages=stages))


def _train_fitted(run: textlab.Run, model: str, train_nbs, valid_nbs, extra: dict, ranker_config: RankerConfig) -> dict:
    """Models fitted in one go (no epochs): fit, validate, write best.pt and last.pt through the Run API.

    Ctrl-C (or SIGTERM) during the fit keeps nothing half-fitted: last.pt then holds the run's
    options and no model (`extra["fitted"]` False), and `textlab train --resume RUN` fits again
    from the start into the same run directory.
    """
    import time

    from . import train as T

    if run.resumed:
        if run.checkpoint_path("best").exists():
            textlab.status(f"{model} is fitted in one pass; {run.dir} already holds it, nothing to resume")
            return {"resumed": True} | _report_valid(run)
        textlab.status(f"{model} is fitted in one pass: fitting it again from the start")
    t0 = time.perf_counter()
    times = {}
    if model == "appended":
        from .model import Appended

        config, vocab = AppendedConfig(), None
        net = Appended(config)
    elif model == "similar":
        config = SimilarConfig()
        net, vocab = T.fit_similar(train_nbs, config)
    elif model == "pointwise":
        config = PointwiseConfig()
        net, vocab = T.fit_pointwise(train_nbs, config)
    elif model == "ranker":
        config = ranker_config
        net, vocab, times = T.fit_ranker(train_nbs, config, seed=run.seed, should_stop=run.should_stop)
    else:
        raise textlab.UsageError(f"model {model!r} has no training recipe in ai4code")
    fit_time = time.perf_counter() - t0
    if net is None or run.should_stop():  # interrupted: the core says so, and how to resume
        run.save_checkpoint("last", model=model, config=config, vocab=None, state_dict={},
                            extra={**extra, "fitted": False})
        return {"interrupted": True}
    run.log("train", {"fit_time": fit_time, "notebooks": len(train_nbs), **{f"{k}_time": v for k, v in times.items()}},
            step=1, epoch=1)
    payload = dict(model=model, config=config, vocab=vocab, state_dict=net.state_dict(),
                   extra={**extra, "fit_time": fit_time})
    run.save_checkpoint("last", **payload)
    result = {"fit_time": round(fit_time, 2)}
    if valid_nbs:
        t1 = time.perf_counter()
        metrics, _ = T.evaluate_orders(valid_nbs, net.order(valid_nbs, desc="validate"))
        predict_time = time.perf_counter() - t1
        flat = {k: v for k, v in metrics["all"].items() if k not in ("notebooks", "cells")}
        run.log("valid", {**flat, "predict_time": predict_time}, step=1, epoch=1)
        run.set_best(MONITOR, flat["kendall_tau"], 1)
        result |= {"valid": flat, "predict_time": round(predict_time, 2)}
        textlab.status(f"{model}: {MONITOR} = {flat['kendall_tau']:.4f} on {len(valid_nbs)} validation notebooks "
                       f"(fitted in {fit_time:.1f} s, validated in {predict_time:.1f} s)")
    else:
        textlab.status(f"{model}: fitted in {fit_time:.1f} s; no validation notebooks, so no score")
    run.save_checkpoint("best", **payload)
    run.update(fit_time=round(fit_time, 3))
    return result


def _report_valid(run: textlab.Run) -> dict:
    best = run.info.get("best") or {}
    return {"valid_kendall_tau": best.get("value")} if best else {}


# ============================================================================ eval / generate
def _artifact_model(artifact: textlab.Artifact):
    if artifact.task != TASK:
        raise textlab.CheckpointError(f"{artifact.path} belongs to task {artifact.task!r}, not ai4code")
    if artifact.extra.get("fitted") is False:
        run = artifact.run_dir or artifact.path.parent.parent
        raise textlab.CheckpointError(f"{artifact.path} holds no model: its fit was interrupted",
                                      hint=f"fit it with: textlab train --resume {run}")
    try:
        return artifact.build_model(artifact.device if artifact.model_name == "neural" else "cpu")
    except (KeyError, RuntimeError, ValueError) as exc:
        raise textlab.CheckpointError(f"{artifact.path} does not hold a usable {artifact.model_name!r} model "
                                      f"({str(exc).splitlines()[0][:120]})") from None


def _run_data(artifact: textlab.Artifact, data: Optional[str]) -> tuple[str, bool]:
    """(the data to read, whether it is the run's own): --data, else what the run trained on."""
    if data:
        return data, textlab.same_data(data, artifact.extra.get("data"))
    own = artifact.extra.get("data")
    if not own:
        raise textlab.UsageError(f"{artifact.path} does not say which data it was trained on: pass --data")
    return str(own), True


def evaluate(
    artifact: textlab.Artifact,
    *,
    data: Annotated[Optional[str], Option(help="'sample' (its test split) or a folder in Kaggle layout with orders "
                                               "(default: the run's own data).")] = None,
    split: Annotated[Optional[Literal["all", "valid", "train"]], Option(
        help="all notebooks of --data, or the train/valid part of the run's own grouped split (default: valid on "
             "the run's own folder when it kept one, so that it scores notebooks it did not train on; all "
             "elsewhere).")] = None,
    limit: Annotated[int, Option(min=0, help="Evaluate at most this many notebooks (0: all).")] = 0,
) -> dict:
    """Kendall tau (pooled, as Kaggle) and the other metrics, per notebook-length bucket."""
    import time

    from .data import grouped_split, load_data
    from .report import show_metrics

    net = _artifact_model(artifact)
    data, own = _run_data(artifact, data)
    source = textlab.resolve(TASK, data)
    ex = artifact.extra
    share, seed = float(ex.get("valid_share", 0.2)), int(ex.get("split_seed", 42))
    if split is None:
        split = "valid" if own and source.kind != "registered" and share > 0 else "all"
    if source.kind == "registered":
        notebooks = load_data(data, {"all": "test"}.get(split, split))
        what = f"its {'test' if split == 'all' else split} split"
    else:
        if split == "valid" and share == 0:
            raise textlab.UsageError("the run was trained with --valid-share 0: it has no validation part",
                                     hint="use --split all")
        notebooks = load_data(data, "train")
        what = "all of them"
        if split != "all":
            tr, va = grouped_split(notebooks, share, seed)
            notebooks = va if split == "valid" else tr
            what = f"the {split} part of the run's split: {share:.0%} by ancestor, seed {seed}"
    if limit:
        notebooks = notebooks[:limit]
        what += f"; --limit {limit}"
    tag = " (the run's own data)" if own else ""
    textlab.status(f"eval on {data}{tag}: {len(notebooks)} notebooks ({what})")
    from .train import evaluate_orders

    t = time.perf_counter()
    orders = net.order(notebooks)
    seconds = time.perf_counter() - t
    metrics, _ = evaluate_orders(notebooks, orders)
    title = f"{artifact.model_name} on {data}" + (f" ({split})" if split != "all" else "")
    show_metrics(metrics, title)
    result = {"model": artifact.model_name, "data": data, "split": split, "predict_time": round(seconds, 3),
              "metrics": metrics}
    path = artifact.output_dir("eval", data=data) / f"metrics-{split}{f'-limit{limit}' if limit else ''}.json"
    textlab.write_json(path, result)
    textlab.status(f"wrote {path}")
    return result | {"path": str(path)}


def generate(
    artifact: textlab.Artifact,
    *,
    data: Annotated[Optional[str], Option(help="'sample' (its test split) or a folder of notebooks (test/ or "
                                               "train/) (default: the run's own data).")] = None,
    out: Annotated[Path, Option(help="Where the submission CSV goes (id,cell_order).")] = Path("submission.csv"),
    limit: Annotated[int, Option(min=0, help="At most this many notebooks (0: all).")] = 0,
) -> dict:
    """Predict the order of every notebook and write a Kaggle submission (id,cell_order)."""
    import csv

    from .data import find_cells_dir, load_data

    out = Path(out).expanduser()
    if out.is_dir():  # before any work: predicting can take minutes
        raise textlab.UsageError(f"--out {out} is a folder; give a file name such as submission.csv")
    net = _artifact_model(artifact)
    data, own = _run_data(artifact, data)
    source = textlab.resolve(TASK, data)
    notebooks = load_data(data, "test", need_orders=False, prefer="test")
    if limit:
        notebooks = notebooks[:limit]
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


# ============================================================================ hooks
@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name=TASK,
        help="Put notebook cells back in order (Kaggle AI4Code; Kendall tau).",
        verbs={"prep": prep, "analyze": analyze, "train": train, "eval": evaluate, "generate": generate},
        monitor=MONITOR,
    )]


def _builder(name: str):
    def build(config, vocab):
        from . import model

        return getattr(model, f"build_{name}")(config, vocab)

    build.__name__ = f"build_{name}"
    return build


@textlab.hookimpl
def textlab_models():
    return [
        textlab.ModelSpec(TASK, "appended", AppendedConfig, _builder("appended"),
                          help="baseline: code in order, markdown appended"),
        textlab.ModelSpec(TASK, "similar", SimilarConfig, _builder("similar"),
                          help="baseline: markdown before its most TF-IDF-similar code cell"),
        textlab.ModelSpec(TASK, "pointwise", PointwiseConfig, _builder("pointwise"),
                          help="ridge on markdown n-gram TF-IDF + similarity features -> relative position"),
        textlab.ModelSpec(TASK, "ranker", RankerConfig, _builder("ranker"),
                          help="boosted trees over (markdown, code gap) pair features, two stages"),
        textlab.ModelSpec(TASK, "neural", NeuralConfig, _builder("neural"),
                          help="hashed-token cell encoder + GRU over code cells, scores every gap"),
    ]


def _load_sample(split: str = "train", **_: object):
    from .sample import load_sample

    return load_sample(split)


@textlab.hookimpl
def textlab_datasets():
    return [textlab.DatasetSpec(TASK, "sample", _load_sample,
                                help="synthetic data-science notebooks made by the plugin (160/40/40)")]


@textlab.hookimpl
def textlab_metrics():
    from .metrics import METRIC_HELP

    return [textlab.MetricSpec(name, higher_is_better=(name != "position_mae"), help=h, task=TASK)
            for name, h in METRIC_HELP.items()] + [
        textlab.MetricSpec("fit_time", higher_is_better=False, help="seconds to fit", task=TASK),
        textlab.MetricSpec("predict_time", higher_is_better=False, help="seconds to predict", task=TASK),
    ]
