"""Model sizes and every verb's options (no torch here: registering the task stays light).

The options of each verb are one dataclass (`textlab.option`): the command line, config files,
sweeps, the run's `config.toml` and the Python API all read them from here. `TrainOptions.resolve`
fills what depends on other options (a preset's or the `--init` model's sizes, the data's
defaults) and refuses combinations that cannot work, before any run directory exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import textlab
from textlab import option
from textlab import options as shared

TASK = "recrnn"


@dataclass
class RecrnnConfig:
    """Sizes of both models (the baseline reads dim/heads/mlp_ratio/layer counts and matches parameters)."""

    vocab_size: int = 58
    dim: int = 64
    heads: int = 4
    mlp_ratio: float = 3.0
    prelude: int = 1
    core: int = 2
    coda: int = 1
    mean_recurrence: int = 8
    backprop_depth: int = 4
    injection: str = "concat"  # "concat" (linear adapter on concat(s, e)) or "add" (s + e)
    norm: str = "sandwich"  # "sandwich" or "prenorm"
    state_scale: float = 1.0  # scales the random initial state (0 = zero state)
    rope_base: float = 50_000.0
    coda_norm: bool = True  # Huginn: the final norm is also applied before the coda (False: only after it)
    token_mix: int = 0  # >0: causal depthwise convolution of this width over the embeddings (not in Huginn)
    pad_id: int = 57


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"dim": 32, "heads": 2, "prelude": 1, "core": 1, "coda": 1, "mean_recurrence": 4, "backprop_depth": 2},
    "cpu": {"dim": 64, "heads": 4, "prelude": 1, "core": 2, "coda": 1, "mean_recurrence": 8, "backprop_depth": 4},
    "quality": {"dim": 128, "heads": 4, "prelude": 1, "core": 2, "coda": 1, "mean_recurrence": 8, "backprop_depth": 4},
}
# The CPU defaults of the options that shape the model (RecrnnConfig's own defaults are Huginn's,
# which checkpoints written before these options existed were made with).
ARCHITECTURE = {"injection": "add", "norm": "sandwich", "coda_norm": False, "state_scale": 1.0, "token_mix": 3}
SHAPES = ("dim", "heads", "core")  # must equal the --init model's
DEPTHS = ("mean_recurrence", "backprop_depth")  # may differ from the --init model's (fine-tuning deeper)

# Defaults that depend on the data: the embedded sample is a demo that must finish in about a minute
# on 2 cores; a real data folder gets the real defaults.
STEPS = {"sample": 150, "folder": 3000}
EVAL_EVERY = {"sample": 50, "folder": 100}
MAX_RECURRENCE = 1024  # the most core iterations a step or a record may run (the work grows with it)
MAX_DRAWS = 100  # eval --state-draws: each draw repeats the whole table

DATA_HELP = "A data folder (see prep: train/valid/test.json + vocab.json) or 'sample' (a tiny generated varchain)."
CHAIN = {"task": ("varchain", "pchase")}
RECURRENT = {"model": ("recurrent",)}
CURRICULUM = {"curriculum": (True,)}
AUX = {"aux": ("statements",)}


# ============================================================================ prep, analyze
@dataclass
class PrepOptions(textlab.Options):
    task: Literal["varchain", "pchase", "comparison", "composition"] = option(
        "varchain", help="What to generate: variable-binding chains mod 10, pointer chasing, or Grokked-style "
                         "comparison / composition.")
    out: Optional[Path] = option(None, help="Folder to write (default: data/TASK).")
    data_seed: int = option(0, flags=("--seed",), help="Generator seed: the same seed writes the same files.")
    statements: int = option(12, min=3, max=52, applies=CHAIN,
                             help="Statements per program (names A-Z, then a-z above 26).")
    chains: int = option(4, min=2, max=10, applies=CHAIN, help="Chains per program (distinct root literals).")
    train_max: int = option(4, min=0, applies=CHAIN, help="Largest number of hops in train.")
    test_max: Optional[int] = option(None, min=0, applies=CHAIN,
                                     help="Largest number of hops in valid/test (default statements - chains).")
    order: Literal["shuffled", "topological"] = option("shuffled", applies=CHAIN, help="Statement order.")
    n_train: int = option(100_000, min=1, applies=CHAIN, help="Training programs.")
    n_valid: int = option(200, min=1, applies=CHAIN, help="Valid programs per difficulty.")
    n_test: int = option(500, min=1, applies=CHAIN, help="Test programs per difficulty.")
    entities: Optional[int] = option(None, min=2, applies={"task": ("comparison", "composition")},
                                     help="Entities (default 1000 for comparison, 2000 for composition).")
    relations: int = option(200, min=1, applies={"task": ("composition",)}, help="Relations.")
    out_degree: int = option(20, min=1, applies={"task": ("composition",)}, help="Relations per entity.")
    attributes: int = option(20, min=1, applies={"task": ("comparison",)}, help="Attributes.")
    phi: float = option(3.6, min=0.0, applies={"task": ("comparison", "composition")},
                        help="Inferred / atomic facts in train.")
    test_size: int = option(3000, min=1, applies={"task": ("comparison", "composition")},
                            help="Records per test type.")
    force: bool = option(False, help="Overwrite a folder that already holds data.")

    def resolve(self) -> None:
        if self.out is None:
            self.out = Path("data") / self.task
        if self.task in ("varchain", "pchase"):
            top = self.statements - self.chains
            if self.train_max > top:
                raise textlab.UsageError(f"--train-max {self.train_max} needs at least {self.train_max + self.chains} "
                                         f"statements with {self.chains} chains")
            if self.test_max is not None and not self.train_max <= self.test_max <= top:
                raise textlab.UsageError(f"--test-max {self.test_max} must lie between --train-max {self.train_max} "
                                         f"and statements - chains ({top})")
        elif self.task == "composition" and self.out_degree > self.relations:
            raise textlab.UsageError(f"--out-degree {self.out_degree} exceeds --relations {self.relations}")


@dataclass
class AnalyzeOptions:
    data: str = option("sample", help=DATA_HELP)


# ============================================================================ train
@dataclass
class TrainOptions(textlab.Options):
    data: str = option("sample", help=DATA_HELP)
    model: str = option("recurrent", help="recurrent (looped core) or baseline (the same parameter count, not looped).")
    preset: Optional[Literal["smoke", "cpu", "quality"]] = option(
        None, help="Model sizes: smoke (h=32, r=4), cpu (h=64, r=8; the default), quality (h=128, r=8). "
                   "Not with --init (the sizes are the --init model's).")
    mode: Literal["full", "single"] = option("single", help="full: next-token loss on every position; single: loss "
                                                            "on the answer token only.")
    mean_recurrence: Optional[int] = option(None, min=1, max=MAX_RECURRENCE, applies=RECURRENT,
                                            help="Mean of the sampled depth (default: the preset's, or the --init "
                                                 "model's).")
    backprop_depth: Optional[int] = option(None, min=1, max=MAX_RECURRENCE, applies=RECURRENT,
                                           help="Iterations with gradients (default: the preset's, or the --init "
                                                "model's).")
    fixed_recurrence: Optional[int] = option(None, min=1, max=MAX_RECURRENCE, applies=RECURRENT,
                                             help="Train with this depth every step (a control).")
    dim: Optional[int] = option(None, min=8, help="Width h (default: the preset's, or the --init model's).")
    heads: Optional[int] = option(None, min=1, help="Attention heads (default: the preset's, or the --init model's).")
    core: Optional[int] = option(None, min=1, help="Blocks in the looped core (default: the preset's, or the --init "
                                                   "model's).")
    injection: Optional[Literal["concat", "add"]] = option(
        None, help="How the input re-enters each step: add (s + e, the default: it learns on a CPU) or concat "
                   "(Huginn's linear adapter on concat(s, e)).")
    norm: Optional[Literal["sandwich", "prenorm"]] = option(None, help="Block normalisation (default sandwich).")
    coda_norm: Optional[bool] = option(None, applies=RECURRENT,
                                       help="Apply the final RMSNorm before the coda too, as Huginn does (default off: "
                                            "with it the cpu runs did not learn even 0-hop lookups; see the README).")
    state_scale: Optional[float] = option(None, min=0.0, applies=RECURRENT,
                                          help="Scale of the random initial state (default 1; 0: zero state).")
    token_mix: Optional[int] = option(None, min=0, max=8,
                                      help="Causal convolution of this width over the embeddings (default 3; 0 = off, "
                                           "as in Huginn). Not in Huginn: it lets each position see its neighbours, "
                                           "which makes in-context lookups learnable in a CPU budget (see the README).")
    lr: float = shared.lr(3e-3, help="Peak learning rate (AdamW, betas 0.9/0.95).")
    batch_size: int = option(64, min=1, help="Sequences per optimizer step.")
    steps: Optional[int] = shared.steps(help="Optimizer steps (default 3,000; 150 on --data sample).")
    time_budget: Optional[float] = shared.time_budget()
    patience: Optional[int] = shared.patience()
    warmup: int = shared.warmup(100)
    eval_every: Optional[int] = shared.eval_every(help="Validate (and move the curriculum) every N steps (default "
                                                       "100; 50 on --data sample).")
    valid_max: int = option(1000, min=1, help="Validation records used (the same number per difficulty).")
    curriculum: bool = option(True, help="Start at --start-difficulty hops; add the next once validation accuracy at "
                                         "the current one reaches --promote-at.")
    promote_at: float = option(0.8, min=0.0, max=1.0, applies=CURRICULUM,
                               help="Curriculum threshold: move to the next difficulty when valid accuracy reaches it.")
    start_difficulty: int = option(0, min=0, applies=CURRICULUM, help="First curriculum level.")
    aux: Literal["none", "statements"] = option(
        "none", applies={"mode": ("single",)},
        help="statements: also predict each statement's value at its left-hand variable and each used variable's "
             "value, where the text so far defines it (varchain/pchase data).")
    aux_max_hops: Optional[int] = option(None, min=0, applies=AUX,
                                         help="Only statements at most this many hops from their root (default: all), "
                                              "so that longer chains stay unseen in training.")
    aux_weight: float = option(1.0, min=0.0, applies=AUX, help="Weight of the --aux loss.")
    init: Optional[str] = option(None, help="Fine-tune: start from the weights of this run or checkpoint (its sizes). "
                                            "Embeddings are matched by token, so the data may add tokens (they start "
                                            "fresh).")
    weight_decay: float = option(0.01, min=0.0, help="AdamW weight decay (not on norms and biases).")
    grad_clip: float = option(1.0, min=0.0, help="Gradient-norm clip (0 = off).")

    @classmethod
    def upgrade(cls, record: dict) -> dict:
        """A 0.1.0 config.json: --preset was ignored with --init (now refused there); the architecture
        options (now 'default: the preset's') were always stored; --time-budget was seconds of
        training (now seconds of the run's wall clock)."""
        if record.get("init"):
            record.pop("preset", None)
        return record

    def resolve(self) -> None:
        kind = self._data_kind()
        self.steps = self.steps or STEPS[kind]
        self.eval_every = self.eval_every or EVAL_EVERY[kind]
        if self.init is not None and self.preset is not None:
            raise textlab.UsageError(f"--preset {self.preset} does not apply with --init: the sizes are the --init "
                                     "model's", hint="drop --preset")
        if self.init is None:
            self.preset = self.preset or "cpu"
        base = self.base_config()
        for key in (*SHAPES, *DEPTHS, *ARCHITECTURE):
            value = getattr(self, key)
            if value is None:
                setattr(self, key, base[key])
            elif self.init is not None and key not in DEPTHS and value != base[key]:
                flag = "--" + key.replace("_", "-")
                raise textlab.UsageError(f"{flag} {value} differs from the --init model's {base[key]}",
                                         hint=f"drop {flag}: a fine-tuned model keeps the --init model's shape")
        spec = textlab.registry().model(TASK, self.model)
        textlab.check_build(spec, textlab.make_config(RecrnnConfig, {**base, **self.model_settings()}))

    def _data_kind(self) -> str:
        """'sample' for the embedded sample, 'folder' for a local folder (a hub name is refused now)."""
        source = textlab.resolve(TASK, self.data)
        if source.kind == "hub":
            raise textlab.DataError(f"recrnn reads a data folder or 'sample', not the hub dataset {self.data!r}",
                                    hint="make a folder with: textlab prep recrnn --task varchain --out data/varchain")
        return "sample" if source.kind == "registered" else "folder"

    def model_settings(self) -> dict:
        """The options that are fields of RecrnnConfig (sizes, depths, architecture)."""
        return {k: getattr(self, k) for k in (*SHAPES, *DEPTHS, *ARCHITECTURE) if getattr(self, k) is not None}

    def base_config(self) -> dict:
        """What the options start from: the --init model's config, or the preset's sizes with the
        CPU architecture defaults."""
        if self.init is None:
            return {**PRESETS[self.preset or "cpu"], **ARCHITECTURE}
        config = init_config(self.init, self.model, complete=all(getattr(self, k) is not None for k in
                                                                 (*SHAPES, *DEPTHS, *ARCHITECTURE)))
        if config is None:  # a resumed fine-tuning run whose --init is gone: its own last.pt has it all
            return {**PRESETS["cpu"], **ARCHITECTURE, **self.model_settings()}
        return {**ARCHITECTURE, **{k: v for k, v in config.items() if k not in ("vocab_size", "pad_id")}}


def init_config(init: str, model: str, complete: bool = False) -> dict | None:
    """The config of the --init checkpoint, checked to be a recrnn model of the same kind.

    `complete`: the options already hold every size (a resumed run's stored options); then an
    --init that is gone is not an error (None), since the run resumes from its own last.pt."""
    try:
        start = textlab.open_artifact(init)
    except textlab.TextlabError:
        if complete:
            return None
        raise
    if start.task != TASK or start.model_name != model:
        raise textlab.CheckpointError(f"--init {init} holds a {start.task} {start.model_name!r} model, not a "
                                      f"{TASK} {model!r} one")
    return dict(start.config)


# ============================================================================ eval
@dataclass
class EvalOptions(textlab.Options):
    steps: str = option("1,2,4,8,16,32", metavar="N,N,...", applies={"exit": ("none",)},
                        help=f"Recurrence steps to decode at, comma-separated (one pass up to the largest; at most "
                             f"{MAX_RECURRENCE}).")
    data: Optional[str] = option(None, help="Data folder (default: the one the run trained on).")
    split: Literal["train", "valid", "test"] = option("test", help="Which split to evaluate.")
    exit: Literal["none", "kl"] = option("none", help="kl: adaptive depth, exit when KL between successive steps' "
                                                      "answer distributions < --exit-threshold.")
    exit_threshold: float = option(5e-4, min=0.0, applies={"exit": ("kl",)}, help="KL threshold for --exit kl.")
    max_steps: int = option(64, min=1, max=MAX_RECURRENCE, applies={"exit": ("kl",)},
                            help="--exit kl: the most steps a record may take.")
    min_steps: int = option(1, min=1, max=MAX_RECURRENCE, applies={"exit": ("kl",)},
                            help="--exit kl: the fewest steps a record takes.")
    state_seed: int = option(0, help="Seed of the random initial states (results are reproducible).")
    state_draws: int = option(1, min=1, max=MAX_DRAWS, applies={"exit": ("none",)},
                              help="Repeat with this many initial-state draws (mean and spread).")
    limit: Optional[int] = option(None, min=1, help="At most this many records per difficulty / type.")
    batch_size: int = option(256, min=1, help="Sequences per forward pass.")

    @property
    def step_list(self) -> list[int]:
        return [int(s) for s in self.steps.split(",")]

    def resolve(self) -> None:
        """--steps: positive integers separated by commas (no empty item), at most MAX_RECURRENCE."""
        try:
            steps = sorted({int(s) for s in self.steps.split(",")})
        except ValueError:
            raise textlab.UsageError(f"--steps {self.steps!r} must be comma-separated positive integers") from None
        if not steps or steps[0] < 1:
            raise textlab.UsageError(f"--steps {self.steps!r} must be comma-separated positive integers")
        if steps[-1] > MAX_RECURRENCE:
            raise textlab.UsageError(f"--steps {steps[-1]} is above the largest number of recurrence steps, "
                                     f"{MAX_RECURRENCE}", hint="in the README's runs the state converged by 32 steps")
        self.steps = ",".join(map(str, steps))
        if self.exit == "kl" and self.min_steps > self.max_steps:
            raise textlab.UsageError(f"--min-steps {self.min_steps} is above --max-steps {self.max_steps}")
