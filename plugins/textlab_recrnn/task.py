"""recrnn: hook implementations and the verbs prep, analyze, train, eval.

Kept light to import: torch and the model are imported inside the verbs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import textlab
from textlab import Option

from .config import PRESETS, RecrnnConfig

TASK = "recrnn"
DEFAULT_STEPS = "1,2,4,8,16,32"


# ============================================================================ prep
def prep(
    *,
    task: Annotated[Literal["varchain", "pchase", "comparison", "composition"],
                    Option(help="What to generate: variable-binding chains mod 10, pointer chasing, or "
                                "Grokked-style comparison / composition.")] = "varchain",
    out: Annotated[Optional[Path], Option(help="Folder to write (default: data/TASK).")] = None,
    data_seed: Annotated[int, Option("--seed", help="Generator seed: the same seed writes the same files.")] = 0,
    statements: Annotated[int, Option(min=3, max=52, help="varchain/pchase: statements per program (names A-Z, "
                                                           "then a-z above 26).")] = 12,
    chains: Annotated[int, Option(min=2, max=10, help="varchain/pchase: chains per program (distinct root literals).")] = 4,
    train_max: Annotated[int, Option(min=0, help="varchain/pchase: largest number of hops in train.")] = 4,
    test_max: Annotated[Optional[int], Option(min=0, help="varchain/pchase: largest hops in valid/test "
                                                         "(default statements - chains).")] = None,
    order: Annotated[Literal["shuffled", "topological"], Option(help="varchain/pchase: statement order.")] = "shuffled",
    n_train: Annotated[int, Option(min=1, help="varchain/pchase: training programs.")] = 100_000,
    n_valid: Annotated[int, Option(min=1, help="varchain/pchase: valid programs per difficulty.")] = 200,
    n_test: Annotated[int, Option(min=1, help="varchain/pchase: test programs per difficulty.")] = 500,
    entities: Annotated[Optional[int], Option(min=2, help="comparison/composition: entities "
                                                          "(default 1000 / 2000).")] = None,
    relations: Annotated[int, Option(min=1, help="composition: relations.")] = 200,
    out_degree: Annotated[int, Option(min=1, help="composition: relations per entity.")] = 20,
    attributes: Annotated[int, Option(min=1, help="comparison: attributes.")] = 20,
    phi: Annotated[float, Option(min=0.0, help="comparison/composition: inferred / atomic facts in train.")] = 3.6,
    test_size: Annotated[int, Option(min=1, help="comparison/composition: records per test type.")] = 3000,
    force: Annotated[bool, Option(help="Overwrite a folder that already holds data.")] = False,
) -> dict:
    """Generate a data folder (train/valid/test.json + vocab.json), deterministic from --seed."""
    from .data import ChainSettings, make_chain_folder, make_comparison_folder, make_composition_folder, write_folder

    out = Path(out or Path("data") / task)
    if out.exists() and not out.is_dir():
        raise textlab.UsageError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any((out / f"{s}.json").exists() for s in ("train", "valid", "test", "vocab")) and not force:
        raise textlab.UsageError(f"{out} already holds data", hint="pass --force to overwrite, or another --out")
    settings = {"task": task, "seed": data_seed}
    with textlab.Timer() as timer:
        if task in ("varchain", "pchase"):
            s = ChainSettings(statements=statements, chains=chains, order=order, arithmetic=task == "varchain")
            if statements - chains < train_max:
                raise textlab.UsageError(f"--train-max {train_max} needs at least {train_max + chains} statements "
                                         f"with {chains} chains")
            splits = make_chain_folder(s, seed=data_seed, train_max=train_max, n_train=n_train, n_valid=n_valid,
                                       n_test=n_test, test_max=test_max)
            settings.update(statements=statements, chains=chains, order=order, train_max=train_max,
                            test_max=test_max if test_max is not None else s.max_difficulty(),
                            n_train=n_train, n_valid=n_valid, n_test=n_test, chance=1 / 10,
                            literal_guess=1 / chains)
        elif task == "composition":
            splits = make_composition_folder(seed=data_seed, entities=entities or 2000, relations=relations,
                                             out_degree=out_degree, phi=phi, test_size=test_size)
            settings.update(entities=entities or 2000, relations=relations, out_degree=out_degree, phi=phi)
        else:
            splits = make_comparison_folder(seed=data_seed, entities=entities or 1000, attributes=attributes, phi=phi,
                                            test_size=test_size)
            settings.update(entities=entities or 1000, attributes=attributes, phi=phi)
        empty = [k for k in ("train", "valid", "test") if not splits[k]]
        if empty:
            raise textlab.UsageError(f"these settings make an empty {empty[0]} split (no test_inferred_ood facts)",
                                     hint="use more --entities")
        counts = write_folder(out, splits, settings)
    textlab.status(f"wrote {out} in {timer.seconds:.1f}s")
    from rich.table import Table

    t = Table(title=f"recrnn prep {task} -> {out}")
    for col in ("split", "records"):
        t.add_column(col)
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    t.add_row("vocab", f"{len(splits['vocab']):,}")
    textlab.show(t)
    return {"out": str(out), "records": counts, "vocab": len(splits["vocab"]), "settings": settings}


# ============================================================================ analyze
def analyze(
    *,
    data: Annotated[str, Option(help="A data folder (train/valid/test.json + vocab.json) or 'sample'.")] = "sample",
) -> dict:
    """Types, lengths, answer balance and difficulty counts of each split."""
    from collections import Counter

    from rich.table import Table

    from .data import load_dataset

    ds = load_dataset(data)
    report: dict = {"data": data, "vocab": len(ds.vocab), "splits": {}}
    t = Table(title=f"recrnn data {data} (vocabulary {len(ds.vocab)})")
    for col in ("split", "records", "input tokens min/mean/max", "answers", "majority", "types", "difficulties"):
        t.add_column(col)
    for name, sp in ds.splits.items():
        lengths = sp.length.float()
        answers = Counter(ds.vocab[i] for i in sp.answer.tolist())
        top, top_n = answers.most_common(1)[0]
        types = Counter(sp.types)
        diffs = Counter(sp.difficulty) if sp.has_difficulty else {}
        ood = sum(ds.is_ood(sp))
        report["splits"][name] = {
            "records": len(sp), "length": {"min": int(lengths.min()), "mean": float(lengths.mean()),
                                           "max": int(lengths.max())},
            "answers": dict(answers.most_common()), "majority": {"token": top, "share": top_n / len(sp)},
            "types": dict(types), "difficulty": {str(k): v for k, v in sorted(diffs.items())}, "ood": ood,
        }
        t.add_row(name, f"{len(sp):,}", f"{int(lengths.min())} / {float(lengths.mean()):.1f} / {int(lengths.max())}",
                  str(len(answers)), f"{top} {top_n / len(sp):.1%}",
                  ", ".join(f"{k} {v:,}" for k, v in types.most_common(6)),
                  ", ".join(f"{k}:{v}" for k, v in sorted(diffs.items())) or "-")
    textlab.show(t)
    report["chance"] = 1 / ds.answer_classes()
    top = ds.train_max_difficulty()
    textlab.show(f"chance (1 / distinct train answers): {report['chance']:.3f}" +
                 (f"; train difficulties go up to {top}, larger ones are out of distribution" if top is not None else
                  "; out of distribution = types containing 'ood'"))
    return report


# ============================================================================ train
def train(
    run: textlab.Run,
    *,
    data: Annotated[str, Option(help="A data folder (see prep) or 'sample'.")] = "sample",
    model: Annotated[str, Option(help="recurrent (looped core) or baseline (the same parameter count, not looped).")]
    = "recurrent",
    preset: Annotated[Literal["smoke", "cpu", "quality"], Option(help="Model sizes: smoke (h=32, r=4), cpu (h=64, "
                                                                       "r=8), quality (h=128, r=8).")] = "cpu",
    mode: Annotated[Literal["full", "single"], Option(help="full: next-token loss on every position; single: loss on "
                                                           "the answer token only.")] = "single",
    mean_recurrence: Annotated[Optional[int], Option(min=1, help="Mean of the sampled depth (default: preset).")] = None,
    backprop_depth: Annotated[Optional[int], Option(min=1, help="Iterations with gradients (default: preset).")] = None,
    fixed_recurrence: Annotated[Optional[int], Option(min=1, help="Train with this depth every step (a control).")]
    = None,
    dim: Annotated[Optional[int], Option(min=8, help="Width h (default: preset).")] = None,
    heads: Annotated[Optional[int], Option(min=1, help="Attention heads (default: preset).")] = None,
    core: Annotated[Optional[int], Option(min=1, help="Blocks in the looped core (default: preset).")] = None,
    injection: Annotated[Literal["concat", "add"], Option(help="How the input re-enters each step: add (s + e, the "
                                                                      "default: it learns on a CPU) or concat (Huginn's "
                                                                      "linear adapter on concat(s, e)).")] = "add",
    norm: Annotated[Literal["sandwich", "prenorm"], Option(help="Block normalisation.")] = "sandwich",
    coda_norm: Annotated[bool, Option(help="Apply the final RMSNorm before the coda too, as Huginn does (with it the "
                                           "cpu runs did not learn even 0-hop lookups; see the README).")] = False,
    state_scale: Annotated[float, Option(min=0.0, help="Scale of the random initial state (0: zero state).")] = 1.0,
    token_mix: Annotated[int, Option(min=0, max=8, help="Causal convolution of this width over the embeddings "
                                                       "(0 = off, as in Huginn). Not in Huginn: it lets each position "
                                                       "see its neighbours, which makes in-context lookups learnable "
                                                       "in a CPU budget (see the README).")] = 3,
    lr: Annotated[float, Option(min=0.0, help="Peak learning rate (AdamW, betas 0.9/0.95).")] = 3e-3,
    batch_size: Annotated[int, Option(min=1, help="Sequences per optimizer step.")] = 64,
    steps: Annotated[int, Option(min=1, help="Optimizer steps.")] = 3000,
    time_budget: Annotated[Optional[float], Option(min=1.0, help="Stop after this many seconds of training.")] = None,
    warmup: Annotated[int, Option(min=0, help="Linear learning-rate warm-up steps.")] = 100,
    eval_every: Annotated[int, Option(min=1, help="Validate (and move the curriculum) every N steps.")] = 100,
    valid_max: Annotated[int, Option(min=1, help="Validation records used (the same number per difficulty).")] = 1000,
    curriculum: Annotated[bool, Option(help="Start at --start-difficulty hops; add the next once validation "
                                            "accuracy at the current one reaches --promote-at.")] = True,
    promote_at: Annotated[float, Option(min=0.0, max=1.0, help="Curriculum threshold: move to the next "
                                                               "difficulty when valid accuracy reaches it.")] = 0.8,
    start_difficulty: Annotated[int, Option(min=0, help="First curriculum level.")] = 0,
    aux: Annotated[Literal["none", "statements"], Option(help="statements: also predict each statement's value at "
                                                              "its left-hand variable and each used variable's value, "
                                                              "where the text so far defines it (single mode; "
                                                              "varchain/pchase data).")]
    = "none",
    aux_max_hops: Annotated[Optional[int], Option(min=0, help="--aux statements: only statements at most this many "
                                                              "hops from their root (default: all), so that longer "
                                                              "chains stay unseen in training.")] = None,
    aux_weight: Annotated[float, Option(min=0.0, help="Weight of the --aux loss.")] = 1.0,
    init: Annotated[Optional[str], Option(help="Fine-tune: start from the weights of this run or checkpoint (its "
                                               "sizes; --preset is ignored). Embeddings are matched by token, so the "
                                               "data may add tokens (they start fresh).")] = None,
    weight_decay: Annotated[float, Option(min=0.0, help="AdamW weight decay (not on norms and biases).")] = 0.01,
    grad_clip: Annotated[float, Option(min=0.0, help="Gradient-norm clip (0 = off).")] = 1.0,
) -> dict:
    """Train the recurrent-depth model (or the baseline) on a data folder."""
    from .data import aux_targets, load_dataset
    from .train import TrainSettings, train_loop

    ds = load_dataset(data)
    if aux != "none" and mode != "single":
        raise textlab.UsageError("--aux applies to --mode single (in full mode every position already has a target)")
    if aux_max_hops is not None and aux != "statements":
        raise textlab.UsageError("--aux-max-hops applies to --aux statements")
    if fixed_recurrence and model == "baseline":
        raise textlab.UsageError("--fixed-recurrence applies to the looped model; the baseline is one pass of its blocks")
    last = run.load_checkpoint("last") if run.resumed and run.checkpoint_path("last").exists() else None
    if last is not None and last.get("vocab") is not None and list(last["vocab"]) != list(ds.vocab):
        raise textlab.UsageError(f"the data's vocabulary differs from the one {run.dir} trained with: a resume "
                                 "continues on the same tokens",
                                 hint=f"to fine-tune on it, start a new run with --init {run.dir}")
    spec = textlab.registry().model(TASK, model)
    start = None
    if init is not None:
        if last is not None:  # resuming a fine-tuning run: its own checkpoint has the sizes and the weights
            base = last.get("config") or {}
        else:
            start = textlab.open_artifact(init)
            if start.task != TASK or start.model_name != model:
                raise textlab.CheckpointError(f"--init {init} holds a {start.task} {start.model_name!r} model, not a "
                                              f"{TASK} {model!r} one")
            base = start.config
        sizes = {k: v for k, v in base.items() if k not in ("vocab_size", "pad_id")}
        for key, value in (("dim", dim), ("heads", heads), ("core", core)):
            if value is not None and value != sizes.get(key):
                raise textlab.UsageError(f"--{key} {value} differs from the --init model's {sizes.get(key)}")
    else:
        sizes = dict(PRESETS[preset])
    for key, value in (("mean_recurrence", mean_recurrence), ("backprop_depth", backprop_depth), ("dim", dim),
                       ("heads", heads), ("core", core)):
        if value is not None:
            sizes[key] = value
    if init is not None:  # the architecture options are the checkpoint's too
        injection, norm, state_scale, coda_norm, token_mix = (
            sizes.pop(k, d) for k, d in (("injection", injection), ("norm", norm), ("state_scale", state_scale),
                                         ("coda_norm", coda_norm), ("token_mix", token_mix)))
    config = textlab.make_config(RecrnnConfig, {**sizes, "injection": injection, "norm": norm, "state_scale": state_scale,
                                                "coda_norm": coda_norm, "token_mix": token_mix,
                                                "vocab_size": len(ds.vocab), "pad_id": ds.pad_id})
    if start_difficulty and ds.train_max_difficulty() is not None and start_difficulty > ds.train_max_difficulty():
        raise textlab.UsageError(f"--start-difficulty {start_difficulty} is above the largest training difficulty "
                                 f"({ds.train_max_difficulty()})")
    net = spec.build(config, ds.vocab)
    if start is not None:
        from .model import load_matched

        kept = load_matched(net, start, ds.vocab)
        textlab.status(f"starting from {start.path}: {kept} of {len(ds.vocab)} tokens' embeddings carried over")
    settings = TrainSettings(mode=mode, lr=lr, batch_size=batch_size, steps=steps, time_budget=time_budget,
                             warmup=warmup, weight_decay=weight_decay, grad_clip=grad_clip, eval_every=eval_every,
                             log_every=min(20, eval_every), valid_max=valid_max, curriculum=curriculum,
                             promote_at=promote_at, start_difficulty=start_difficulty,
                             fixed_recurrence=fixed_recurrence, aux=aux, aux_weight=aux_weight)
    aux_tensor = aux_targets(ds.splits["train"], ds.vocab, aux_max_hops) if aux == "statements" else None
    source = textlab.resolve(TASK, data)
    data_ref = str(source.path.resolve()) if source.kind == "local" else data
    extra = {"data": data_ref, "mode": mode, "fixed_recurrence": fixed_recurrence,
             "train_max_difficulty": ds.train_max_difficulty(), "answer_classes": ds.answer_classes(),
             "parameters": net.num_parameters(), "looped": bool(getattr(net, "looped", False)), "aux": aux,
             "aux_max_hops": aux_max_hops, "init": init}
    textlab.status(f"{model}: {net.num_parameters():,} parameters, h={config.dim}, "
                   f"layers ({config.prelude},{config.core},{config.coda}), "
                   + (f"r = {fixed_recurrence} (fixed)" if fixed_recurrence else
                      f"mean r = {config.mean_recurrence}, backprop {config.backprop_depth}") +
                   f", mode {mode}, {len(ds.splits['train']):,} training records")
    result = train_loop(run, ds, net, settings, {"model": model, "extra": extra}, aux=aux_tensor)
    result["parameters"] = net.num_parameters()
    return result


# ============================================================================ eval
def evaluate(
    artifact: textlab.Artifact,
    *,
    steps: Annotated[str, Option(help="Recurrence steps to decode at, comma-separated (one pass up to the largest).")]
    = DEFAULT_STEPS,
    data: Annotated[Optional[str], Option(help="Data folder (default: the one the run trained on).")] = None,
    split: Annotated[Literal["train", "valid", "test"], Option(help="Which split to evaluate.")] = "test",
    exit: Annotated[Literal["none", "kl"], Option(help="kl: adaptive depth, exit when KL between successive "
                                                       "steps' answer distributions < --exit-threshold.")] = "none",
    exit_threshold: Annotated[float, Option(min=0.0, help="KL threshold for --exit kl.")] = 5e-4,
    max_steps: Annotated[int, Option(min=1, help="--exit kl: the most steps a record may take.")] = 64,
    min_steps: Annotated[int, Option(min=1, help="--exit kl: the fewest steps a record takes.")] = 1,
    state_seed: Annotated[int, Option(help="Seed of the random initial states (results are reproducible).")] = 0,
    state_draws: Annotated[int, Option(min=1, help="Repeat with this many initial-state draws (mean and spread).")]
    = 1,
    limit: Annotated[Optional[int], Option(min=1, help="At most this many records per difficulty / type.")] = None,
    batch_size: Annotated[int, Option(min=1, help="Sequences per forward pass.")] = 256,
) -> dict:
    """Accuracy per difficulty x recurrence steps (table, CSV, JSON, PNG), or adaptive exit by KL."""
    from .report import run_eval

    if artifact.task != TASK:
        raise textlab.CheckpointError(f"{artifact.path} belongs to task {artifact.task!r}, not {TASK!r}")
    try:
        step_list = sorted({int(s) for s in steps.split(",")})  # an empty item ("1,,2", "1,2,") is an error too
    except ValueError:
        raise textlab.UsageError(f"--steps {steps!r} must be comma-separated positive integers") from None
    if not step_list or step_list[0] < 1:
        raise textlab.UsageError(f"--steps {steps!r} must be comma-separated positive integers")
    if exit == "kl" and min_steps > max_steps:
        raise textlab.UsageError(f"--min-steps {min_steps} is above --max-steps {max_steps}")
    return run_eval(artifact, steps=step_list, data=data, split=split, exit=exit, exit_threshold=exit_threshold,
                    max_steps=max_steps, min_steps=min_steps, state_seed=state_seed, draws=state_draws, limit=limit,
                    batch_size=batch_size)


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
        run_label=_run_label, monitor="valid/accuracy_id")]


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
