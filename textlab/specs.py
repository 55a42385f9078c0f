"""Typed records that plugins return from their hooks.

Every hook returns a list of these frozen dataclasses; the plugin manager collects them, checks
that names are unique and sorts them. Records hold plain callables, so a plugin module can stay
light to import (torch is imported inside the callables, not at module level).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

# The verbs of the command line. A task's function for one of these must have the matching kind:
#   "task":     textlab VERB TASK [options]          plain keyword options
#   "run":      textlab train TASK [options]         first parameter `run: textlab.Run`
#   "artifact": textlab VERB RUN-OR-CHECKPOINT ...    first parameter `artifact: textlab.Artifact`
CORE_VERBS: dict[str, str] = {
    "prep": "task",
    "vocab": "task",
    "pairs": "task",
    "train": "run",
    "eval": "artifact",
    "neighbors": "artifact",
    "generate": "artifact",
    "analyze": "task",
}


def verb_kind(func: Any) -> str:
    """'run', 'artifact' or 'task', from the name of the function's first parameter."""
    import inspect

    params = list(inspect.signature(func).parameters.values())
    if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        if params[0].name == "run":
            return "run"
        if params[0].name == "artifact":
            return "artifact"
    return "task"


@dataclass(frozen=True)
class TaskSpec:
    """A task: its name, one line of help, and the verbs it supports.

    `verbs` maps a verb name to a plain function with typed keyword options (typer `Annotated`
    options are welcome). Besides the eight core verbs a task may add its own (for example
    `export`); the kind of an extra verb follows from its first parameter (`Run`, `Artifact`
    or neither).

    `run_label(options) -> str` names the model part of a run directory
    (`<timestamp>-<label>`); the default is the `model` option, or the task name.
    `monitor` is the metric that marks a run's best checkpoint (for `textlab runs`).
    `quickstart`: the commands that make a run of the task from nothing, shown when a verb is
    given a run or checkpoint that does not exist. `own_loop`: the task trains with a loop of its
    own rather than the core engine (`--precision` and `--compile` are then refused).
    """

    name: str
    help: str
    verbs: Mapping[str, Callable[..., Any]] = field(default_factory=dict, hash=False)
    run_label: Callable[[dict], str] | None = field(default=None, hash=False)
    monitor: str | None = None
    quickstart: str | None = None
    own_loop: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """A model of a task. `build(config, vocab)` returns a `torch.nn.Module`.

    `config` is a dataclass type; `textlab.make_config` fills it from a task's options and
    `key=value` overrides, and checkpoints store it as a plain dict.
    """

    task: str
    name: str
    config: type
    build: Callable[[Any, Any], Any] = field(hash=False)
    help: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A named data source of a task: `--data NAME` calls `load(split, **options)`.

    What `load` returns is the task's business (rows, a pyarrow table, a path...).
    The embedded sample of a task is a dataset named `sample`.
    """

    task: str
    name: str
    load: Callable[..., Any] = field(hash=False)
    help: str = ""
    splits: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class MetricSpec:
    """A metric: `fn(predictions, targets) -> float` (optional) and its direction.

    The direction is what `analyze`, `runs` and best-checkpoint selection use.
    `task=None` means the metric applies to every task.
    """

    name: str
    higher_is_better: bool
    fn: Callable[..., float] | None = field(default=None, hash=False)
    help: str = ""
    task: str | None = None


@dataclass(frozen=True)
class LoggerSpec:
    """Where metrics go besides `metrics.jsonl`: `factory(run_dir, config) -> logger`.

    The logger has `log(record: dict)` (a metrics.jsonl record) and `close()`.
    Chosen with `textlab train TASK --logger NAME`.
    """

    name: str
    factory: Callable[..., Any] = field(hash=False)
    help: str = ""


@dataclass(frozen=True)
class EmbedderSpec:
    """A way to learn word vectors from plain text, for other tasks to start their embeddings from.

    `train(text, out_dir, *, dim, seed, device) -> dict` reads `text` (one line per document,
    tokens separated by spaces), may write anything under `out_dir` (a folder it owns, inside the
    calling run), and returns at least `{"vectors": path}`: a word2vec text file of `dim`-sized
    vectors. Tasks find embedders by name (`textlab.registry().embedder(name)`), so a task can use
    another plugin's vectors without importing it.
    """

    name: str
    train: Callable[..., dict] = field(hash=False)
    help: str = ""


def check_build(spec: ModelSpec, config: Any, vocab: Any = None) -> None:
    """Build the model on the meta device (no memory, no time): a config that cannot make a model
    (a head count that does not divide the width...) is one UsageError now, before any data is
    read or any run of a sweep trains."""
    from .errors import UsageError

    import torch

    try:
        with torch.device("meta"):
            spec.build(config, vocab)
    except (ValueError, AssertionError, RuntimeError, TypeError, ZeroDivisionError) as exc:
        from .errors import first_line

        raise UsageError(f"cannot build model {spec.name!r} of task {spec.task!r}: {first_line(exc)}") from None


RECORD_TYPES = {
    "textlab_tasks": TaskSpec,
    "textlab_models": ModelSpec,
    "textlab_datasets": DatasetSpec,
    "textlab_metrics": MetricSpec,
    "textlab_loggers": LoggerSpec,
    "textlab_embedders": EmbedderSpec,
}


def make_config(config_type: type, options: Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Any:
    """Build a config dataclass from a task's options (a dict, or the verb's options dataclass: the
    fields with the config's names) and explicit overrides.

    Fields not named in either keep their defaults; unknown override keys are an error.
    Override values given as strings (from `--model-config key=value`) are converted to the
    field's type.
    """
    from .errors import UsageError

    fields = {f.name: f for f in dataclasses.fields(config_type)}
    values: dict[str, Any] = {}
    if dataclasses.is_dataclass(options) and not isinstance(options, type):  # a verb's options: same names
        options = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    for key, value in (options or {}).items():
        if key in fields:
            values[key] = value
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise UsageError(
                f"unknown model setting {key!r} for {config_type.__name__}",
                hint="settings: " + ", ".join(sorted(fields)),
            )
        values[key] = _coerce(value, fields[key], config_type) if isinstance(value, str) else value
    return config_type(**values)


def _coerce(text: str, f: dataclasses.Field, config_type: type) -> Any:
    from .errors import UsageError

    import typing

    hints = typing.get_type_hints(config_type)
    kind = hints.get(f.name, str)
    origin = typing.get_origin(kind)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        kind = args[0] if args else str
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind in (int, float, str):
            return kind(text)
    except ValueError:
        raise UsageError(f"model setting {f.name}={text!r} is not a valid {kind.__name__}") from None
    return text


def config_to_dict(config: Any) -> dict:
    """A config dataclass (or dict) as a plain dict of JSON-friendly values."""
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config or {})


MISSING_MEANS = "textlab_missing_means"
RENAMED_FROM = "textlab_renamed_from"


def config_from_dict(config_type: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass from a checkpoint's dict, ignoring keys it no longer has.

    A field added after checkpoints were written keeps its default for them, unless its metadata
    says what older checkpoints meant: `field(default="new", metadata={MISSING_MEANS: "old"})`
    (for a setting whose default changed the computation, such as a hash function). A field
    renamed since reads its old key: `field(default=4, metadata={RENAMED_FROM: "n_layers"})`.
    """
    fields = dataclasses.fields(config_type)
    values = {f.name: data[f.name] for f in fields if f.name in data}
    for f in fields:
        if f.name in data:
            continue
        old = f.metadata.get(RENAMED_FROM)
        if old is not None and old in data:
            values[f.name] = data[old]
        elif MISSING_MEANS in f.metadata:
            values[f.name] = f.metadata[MISSING_MEANS]
    return config_type(**values)
