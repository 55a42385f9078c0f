"""recrnn: hook implementations and the verbs prep, analyze, train, eval.

The verbs' options are dataclasses in config.py; the verbs call plain functions of data.py,
train.py and report.py. Kept light to import: torch and the model are imported inside the verbs.
"""

from __future__ import annotations

import textlab

from .config import TASK, AnalyzeOptions, EvalOptions, PrepOptions, RecrnnConfig, TrainOptions


# ============================================================================ prep, analyze
def prep(opts: PrepOptions) -> dict:
    """Generate a data folder (train/valid/test.json + vocab.json), deterministic from --seed."""
    from rich.table import Table

    from .data import prepare

    made = prepare(opts)
    t = Table(title=f"recrnn prep {opts.task} -> {made['out']}")
    for col in ("split", "records"):
        t.add_column(col)
    for k, v in made["records"].items():
        t.add_row(k, f"{v:,}")
    t.add_row("vocab", f"{made['vocab']:,}")
    textlab.show(t)
    return made


def analyze(opts: AnalyzeOptions) -> dict:
    """Types, lengths, answer balance and difficulty counts of each split."""
    from rich.table import Table

    from .data import describe

    report = describe(opts.data)
    t = Table(title=f"recrnn data {opts.data} (vocabulary {report['vocab']})")
    for col in ("split", "records", "input tokens min/mean/max", "answers", "majority", "types", "difficulties"):
        t.add_column(col)
    for name, sp in report["splits"].items():
        n, length, major = sp["records"], sp["length"], sp["majority"]
        t.add_row(name, f"{n:,}", f"{length['min']} / {length['mean']:.1f} / {length['max']}", str(len(sp["answers"])),
                  f"{major['token']} {major['share']:.1%}",
                  ", ".join(f"{k} {v:,}" for k, v in list(sp["types"].items())[:6]),
                  ", ".join(f"{k}:{v}" for k, v in sp["difficulty"].items()) or "-")
    textlab.show(t)
    top = report["train_max_difficulty"]
    textlab.show(f"chance (1 / distinct train answers): {report['chance']:.3f}" +
                 (f"; train difficulties go up to {top}, larger ones are out of distribution" if top is not None else
                  "; out of distribution = types containing 'ood'"))
    return report


# ============================================================================ train, eval
def train(run: textlab.Run, opts: TrainOptions) -> dict:
    """Train the recurrent-depth model (or the baseline) on a data folder."""
    from .train import train_model

    return train_model(run, opts)


def evaluate(artifact: textlab.Artifact, opts: EvalOptions) -> dict:
    """Accuracy per difficulty x recurrence steps (table, CSV, JSON, PNG), or adaptive exit by KL."""
    from .report import run_eval

    return run_eval(artifact, opts)


# ============================================================================ hooks
def _load_sample(split: str):
    from .data import sample_split

    return sample_split(split)


def _build_recurrent(config, vocab):
    from .model import build_recurrent

    return build_recurrent(config, vocab)


def _build_plain(config, vocab):
    from .model import build_plain

    return build_plain(config, vocab)


def _run_label(options: dict) -> str:
    parts = [str(options.get("model") or "recurrent"), str(options.get("mode") or "single")]
    if options.get("fixed_recurrence"):
        parts.append(f"r{options['fixed_recurrence']}")
    return "-".join(parts)


@textlab.hookimpl
def textlab_tasks():
    return [textlab.TaskSpec(
        name=TASK,
        help="Recurrent-depth transformer (prelude, looped core, coda): accuracy that grows with test-time "
             "recurrence on multi-hop problems.",
        verbs={"prep": prep, "analyze": analyze, "train": train, "eval": evaluate},
        run_label=_run_label, monitor="valid/accuracy_id", quickstart="textlab train recrnn --data sample")]


@textlab.hookimpl
def textlab_models():
    return [
        textlab.ModelSpec(task=TASK, name="recurrent", config=RecrnnConfig, build=_build_recurrent,
                          help="prelude / looped core with concat adapter / coda, sandwich RMSNorm, RoPE, tied "
                               "embeddings, random initial state"),
        textlab.ModelSpec(task=TASK, name="baseline", config=RecrnnConfig, build=_build_plain,
                          help="the same blocks stacked once (no loop), MLP widened to the same parameter count"),
    ]


@textlab.hookimpl
def textlab_datasets():
    return [textlab.DatasetSpec(task=TASK, name="sample", load=_load_sample,
                                help="a tiny generated varchain (6 statements, 2 chains, 0-2 hops in train)",
                                splits=("train", "valid", "test"))]


@textlab.hookimpl
def textlab_metrics():
    return [
        textlab.MetricSpec(name="accuracy_id", higher_is_better=True, task=TASK,
                           help="answer accuracy on in-distribution validation records"),
        textlab.MetricSpec(name="accuracy_ood", higher_is_better=True, task=TASK,
                           help="answer accuracy on out-of-distribution validation records"),
        textlab.MetricSpec(name="answer_accuracy", higher_is_better=True, task=TASK,
                           help="accuracy of the single answer token"),
        textlab.MetricSpec(name="answer_loss", higher_is_better=False, task=TASK,
                           help="cross-entropy of the single answer token"),
    ]
