"""The ai4code task: hooks and verbs (prep, analyze, train, eval, generate).

Put the cells of Jupyter notebooks back in order (Kaggle "Google AI4Code"): code cells come in
their true order, markdown cells shuffled after them; predict the full order. Scored by Kendall
tau with inversions pooled over notebooks.

The verbs' options are dataclasses in config.py; the verbs call plain functions of prep.py,
analysis.py, train.py and evaluate.py. This module stays light to import: torch, numpy and
scikit-learn are imported inside the verbs.
"""

from __future__ import annotations

import textlab

from .config import (MONITOR, TASK, AnalyzeOptions, AppendedConfig, BlendConfig, EvalOptions, GenerateOptions,
                     NeuralConfig, PointwiseConfig, PrepOptions, RankerConfig, SimilarConfig, TrainOptions,
                     TransformerConfig)


# ============================================================================ prep, analyze
def prep(opts: PrepOptions) -> dict:
    """Convert a folder of .ipynb notebooks into the Kaggle AI4Code layout (outputs and empty cells dropped)."""
    from .prep import prep_notebooks, show_report

    report = prep_notebooks(opts.from_notebooks, opts.out, min_markdown=opts.min_markdown, min_code=opts.min_code,
                            max_chars=opts.max_chars, language=opts.language.lower(), overwrite=opts.overwrite)
    show_report(report)
    return {k: v for k, v in report.items() if k != "skipped_files"} | {"skipped_files": report["skipped_files"][:50]}


def analyze(opts: AnalyzeOptions) -> dict:
    """Cells per notebook, markdown share, where markdown sits, and the languages of the markdown."""
    from .analysis import analyze_data

    return analyze_data(opts.data, opts.split, opts.out)


# ============================================================================ train
def train(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train a model that orders notebook cells; validates on a split grouped by ancestor."""
    from .train import train_model

    return train_model(run, opts)


# ============================================================================ eval / generate
def evaluate(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Kendall tau (pooled, as Kaggle) and the other metrics, per notebook-length bucket."""
    from .evaluate import evaluate_artifact

    return evaluate_artifact(artifact, opts)


def generate(artifact: textlab.Artifact, opts: GenerateOptions) -> dict:
    """Predict the order of every notebook and write a Kaggle submission (id,cell_order)."""
    from .evaluate import generate_submission

    return generate_submission(artifact, opts)


# ============================================================================ hooks
@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name=TASK,
        help="Put notebook cells back in order (Kaggle AI4Code; Kendall tau).",
        verbs={"prep": prep, "analyze": analyze, "train": train, "eval": evaluate, "generate": generate},
        monitor=MONITOR,
        quickstart="textlab train ai4code --data sample",
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
        textlab.ModelSpec(TASK, "transformer", TransformerConfig, _builder("transformer"),
                          help="a local Hugging Face encoder (--encoder DIR) fine-tuned: markdown + code context "
                               "-> relative position"),
        textlab.ModelSpec(TASK, "blend", BlendConfig, _builder("blend"),
                          help="weighted mean of the positions of trained runs (--member RUN ...)"),
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
        textlab.MetricSpec("crossfit_kendall_tau", higher_is_better=True, help="a blend's Kendall tau with weights fitted on the other "
                                                        "half of the validation notebooks", task=TASK),
    ]
