"""An invocation: one verb of one task with its checked options.

    inv = textlab.Invocation.make("gla", "train", {"steps": 200, "d_model": 64}, {"seed": 1})
    print(inv.config_toml())             # what `--print-config` prints
    result = textlab.execute(inv)        # what `textlab train gla --steps 200 --d-model 64 --seed 1` does

It is made from the command line (`cli.py` parses, then calls `Invocation.from_cli`), from a run's
stored record (`from_record`: resume and rerun), from a grid point of a sweep (`with_changes`), or
in Python (`make`). Whatever made it, every value went through `options.coerce`, and
`runner.execute` (`textlab.execute`) runs it the same way. Nothing here reads module globals or re-enters the
command-line parser.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

from . import options as O
from .errors import DataError, PluginError, UsageError
from .options import CORE_PANEL, option
from .specs import TaskSpec, verb_kind

RECORD_FILE = "config.toml"
LEGACY_RECORD_FILE = "config.json"  # written by textlab 0.1


# ============================================================================ the core's own options
@dataclass
class TaskCore:
    """Options the core gives every verb."""

    threads: Optional[int] = option(None, min=1, help="CPU threads for torch (default: torch's choice).",
                                    panel=CORE_PANEL)
    json_output: bool = option(False, flags=("--json",), help="Print the result as JSON on stdout.", panel=CORE_PANEL,
                               record=False)


@dataclass
class ArtifactCore(TaskCore):
    """... and the verbs that read a run or checkpoint (eval, generate, neighbors...)."""

    device: str = option("auto", help="auto, cpu, cuda, cuda:N.", panel=CORE_PANEL)
    checkpoint: Literal["best", "last"] = option("best", help="Which checkpoint of a run directory.", panel=CORE_PANEL)


@dataclass
class RunCore(TaskCore):
    """... and train."""

    seed: int = option(0, help="Random seed (data order, init, dropout).", panel=CORE_PANEL)
    device: str = option("auto", help="auto, cpu, cuda, cuda:N.", panel=CORE_PANEL)
    runs_dir: Optional[Path] = option(None, help="Root of run directories (env TEXTLAB_RUNS, else ./runs).",
                                      panel=CORE_PANEL, record=False)
    name: Optional[str] = option(None, help="Suffix for the run directory name.", panel=CORE_PANEL)
    logger: list[str] = option([], help="Also log metrics to: csv, tensorboard, ... (repeatable).", panel=CORE_PANEL)
    sweep: list[str] = option([], help="KEY=V1,V2,...: one run per value (repeat for a grid), then a comparison.",
                              panel=CORE_PANEL, record=False)
    resume: Optional[Path] = option(None, help="Continue the run in this directory from its last.pt.", panel=CORE_PANEL,
                                    record=False)
    nproc: int = option(1, min=1, help="Train on N processes: relaunches this command under torchrun (DDP; gloo "
                                       "on CPU, nccl on GPU).", panel=CORE_PANEL, record=False)
    precision: Literal["fp32", "bf16", "fp16"] = option(
        "fp32", help="Train in this floating-point precision (autocast; fp16 with a gradient scaler). A resume keeps "
                     "the run's.", panel=CORE_PANEL)
    compile: bool = option(False, help="Compile the model with torch.compile (a resume keeps the run's choice).",
                           panel=CORE_PANEL)
    config: Optional[Path] = option(None, help="Read options from this TOML or YAML file (options on the command "
                                               "line win); a [sweep] table gives a grid.", panel=CORE_PANEL, record=False)
    print_config: bool = option(False, help="Print the resolved options (defaults included) as TOML and exit.",
                                panel=CORE_PANEL, record=False)


CORE_OF_KIND: dict[str, type] = {"task": TaskCore, "artifact": ArtifactCore, "run": RunCore}


# ============================================================================ verbs
@dataclass(frozen=True)
class Verb:
    """A task's function for one verb, with its options dataclass and its kind (run/artifact/task)."""

    task: TaskSpec
    name: str
    func: Callable[..., Any] = field(hash=False)
    kind: str
    options: type
    keywords: bool  # a plain keyword-option function (its options dataclass was made from its signature)

    @property
    def core(self) -> type:
        return CORE_OF_KIND[self.kind]

    def specs(self) -> list[O.OptionSpec]:
        """The verb's options; a train verb's `model` has the task's registered models as its choices."""
        specs = O.specs_of(self.options)
        if self.kind != "run":
            return specs
        from .plugins import registry

        names = tuple(m.name for m in registry().models_for(self.task.name))
        return [dataclasses.replace(s, meta=dataclasses.replace(s.meta, choices=names))
                if s.name == "model" and names and not isinstance(s.kind, tuple) else s for s in specs]

    def call(self, first: Any, opts: Any) -> Any:
        args = () if self.kind == "task" else (first,)
        if self.keywords:
            return self.func(*args, **{f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)})
        return self.func(*args, opts)


@functools.lru_cache(maxsize=None)
def _options_of(func: Callable[..., Any], kind: str, label: str) -> tuple[type, bool]:
    params = list(inspect.signature(func).parameters.values())
    rest = params[1:] if kind in ("run", "artifact") else params
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"{label}: cannot read its option types ({exc})") from None
    if len(rest) == 1 and dataclasses.is_dataclass(hints.get(rest[0].name)):
        return hints[rest[0].name], False
    try:
        return O.dataclass_from_function(func, len(params) - len(rest), label.replace(" ", "_")), True
    except TypeError as exc:
        raise PluginError(f"{label}: {exc}") from None


def get_verb(task: str | TaskSpec, verb: str) -> Verb:
    """The verb `verb` of `task` (an unknown task or verb is one UsageError)."""
    from .plugins import registry

    spec = registry().task(task, verb) if isinstance(task, str) else task
    func = spec.verbs[verb]
    kind = verb_kind(func)
    cls, keywords = _options_of(func, kind, f"task {spec.name!r}, verb {verb!r}")
    reserved = {f.name for f in dataclasses.fields(CORE_OF_KIND[kind])}
    clash = sorted(reserved & {f.name for f in dataclasses.fields(cls)})
    if clash:
        raise PluginError(f"task {spec.name!r}, verb {verb!r}: option {clash[0]!r} is reserved by the core")
    return Verb(spec, verb, func, kind, cls, keywords)


# ============================================================================ the invocation
@dataclass(frozen=True)
class Invocation:
    verb: Verb
    options: Any  # the verb's options dataclass, every value checked
    core: Any  # TaskCore / ArtifactCore / RunCore
    given: frozenset[str] = frozenset()  # options set explicitly (command line, config file, --set)
    target: str | None = None  # artifact verbs: the run directory or checkpoint
    grid: tuple[tuple[str, tuple], ...] = ()  # a sweep: (option, values) axes
    parent: str | None = None  # made from this run's record (`textlab rerun`): recorded in the new run.json

    @property
    def task(self) -> str:
        return self.verb.task.name

    @property
    def kind(self) -> str:
        return self.verb.kind

    # ------------------------------------------------------------------ making one
    @classmethod
    def make(cls, task: str, verb: str, options: Mapping[str, Any] | None = None,
             core: Mapping[str, Any] | None = None, *, target: str | None = None) -> "Invocation":
        """From Python: every key checked and named in any error; `given` is the keys passed."""
        v = get_verb(task, verb)
        options, core = dict(options or {}), dict(core or {})
        opts = _build(v, options, "")
        core_obj = O.make(v.core, core, where=lambda s: s.flag if s else "core: ")
        return cls(v, opts, core_obj, frozenset(options) | frozenset(core), target).with_grid(core_obj)

    @classmethod
    def from_cli(cls, verb: Verb, values: Mapping[str, Any], given: set[str], target: str | None = None) -> "Invocation":
        """From what the command line parsed: `values` holds every option (defaults included)."""
        core_names = {f.name for f in dataclasses.fields(verb.core)}
        core = O.make(verb.core, {k: v for k, v in values.items() if k in core_names})
        task_values = {k: v for k, v in values.items() if k not in core_names}
        if verb.kind == "run" and core.config is not None:
            inv = cls._from_file(verb, core, task_values, given, target)
        else:
            inv = cls(verb, _build(verb, task_values, ""), core, frozenset(given), target)
        return inv.with_grid(inv.core)

    @classmethod
    def _from_file(cls, verb: Verb, core: Any, values: Mapping[str, Any], given: set[str],
                   target: str | None) -> "Invocation":
        """`--config FILE`: the file's options, under those given on the command line."""
        path = Path(core.config)
        prefix = f"--config {path}: "
        file_opts, file_core, sweep = split_config(O.read_config_file(path), verb, prefix)
        merged = {**values, **{k: v for k, v in file_opts.items() if k not in given}}
        opts = _build(verb, merged, prefix)
        core_specs = O.spec_map(verb.core)
        core_obj = dataclasses.replace(core, **{k: O.coerce(core_specs[k], v, f"{prefix}{k}")
                                                for k, v in file_core.items() if k not in given})
        inv = cls(verb, opts, core_obj, frozenset(given) | frozenset(file_opts) | frozenset(file_core), target)
        grid = tuple((k, tuple(v if isinstance(v, list) else [v])) for k, v in sweep.items())
        return dataclasses.replace(inv, grid=_check_grid(inv, grid, f"{prefix}[sweep] "))

    @classmethod
    def from_record(cls, run_dir: Path, changes: Mapping[str, Any] | None = None, *,
                    where: str = "--set ") -> "Invocation":
        """A past run's stored options (config.toml, or 0.1's config.json), changed where told."""
        info = _run_info(run_dir)
        verb = get_verb(str(info.get("task")), "train")
        record = read_record(run_dir, verb)
        core_names = {f.name for f in dataclasses.fields(verb.core)}
        changes = {O.normalize_key(k): v for k, v in (changes or {}).items()}
        specs = {s.name: s for s in verb.specs()}
        for k in changes:
            if k not in specs and k not in core_names:
                raise O.unknown_option(k, sorted(specs), where_prefix=where)
        stored = {k: v for k, v in record["options"].items() if k in specs}  # an option dropped since: ignored
        opts = _build(verb, stored, f"{run_dir}/{RECORD_FILE}: ")
        core = O.make(verb.core, {k: v for k, v in record["core"].items() if k in core_names},
                      where=lambda s: f"{run_dir}/{RECORD_FILE}: {s.name}" if s else "")
        inv = cls(verb, opts, core, parent=str(Path(run_dir).resolve()))
        return inv.with_changes(changes, where) if changes else inv

    def with_changes(self, changes: Mapping[str, Any], where: str) -> "Invocation":
        """The same invocation with some options changed (a sweep's grid point, `--set`)."""
        core_names = {f.name for f in dataclasses.fields(self.verb.core)}
        specs = {s.name: s for s in self.verb.specs()}
        opt_values, core_values = {}, {}
        for k, v in changes.items():
            if k in core_names:
                core_values[k] = O.coerce(O.spec_map(self.verb.core)[k], v, f"{where}{k}")
            elif k in specs:
                opt_values[k] = O.coerce(specs[k], v, f"{where}{k}")
            else:
                raise O.unknown_option(k, list(specs), where_prefix=where)
        return dataclasses.replace(self, options=dataclasses.replace(self.options, **opt_values),
                                   core=dataclasses.replace(self.core, **core_values),
                                   given=self.given | frozenset(changes), grid=())

    def with_grid(self, core: Any) -> "Invocation":
        """`--sweep KEY=V1,V2` options as grid axes, after a config file's (each value checked now)."""
        if self.kind != "run" or not getattr(core, "sweep", None):
            return self
        axes = list(self.grid)
        for text in core.sweep:
            key, eq, values = text.partition("=")
            items = [v.strip() for v in values.split(",") if v.strip()]
            if not eq or not key.strip():
                raise UsageError(f"--sweep {text!r} must look like KEY=V1,V2,...")
            if not items:
                raise UsageError(f"--sweep {text!r} gives no values", hint="--sweep KEY=V1,V2,...")
            axes.append((O.normalize_key(key), tuple(items)))
        return dataclasses.replace(self, grid=_check_grid(self, tuple(axes), "--sweep "))

    # ------------------------------------------------------------------ what it will do
    def resolved(self) -> "Invocation":
        """Options with the task's own defaults filled and combinations checked (`Options.resolve`)."""
        O.check_applies(self.verb.options, self.options, self.given)
        if self.kind == "run" and self.verb.task.own_loop and (self.core.precision != "fp32" or self.core.compile):
            raise UsageError(f"--precision and --compile apply to tasks that train with the core engine; "
                             f"{self.task} trains with a loop of its own")
        opts = dataclasses.replace(self.options)
        if hasattr(opts, "resolve"):
            opts.resolve()
        return dataclasses.replace(self, options=opts)

    def record(self) -> dict:
        """What config.toml holds: the resolved options that apply, and the core options of a run."""
        opts = {}
        for spec in self.verb.specs():
            if spec.meta.record and O.applies(spec, self.options):
                opts[spec.name] = O.plain(getattr(self.options, spec.name))
        core = {s.name: O.plain(getattr(self.core, s.name)) for s in O.specs_of(self.verb.core) if s.meta.record}
        return {"task": self.task, "verb": self.verb.name, "options": opts, "core": core}

    def config_toml(self) -> str:
        rec = self.record()
        tables: dict[str, Any] = {"task": rec["task"], "verb": rec["verb"], "options": rec["options"],
                                  "core": rec["core"]}
        if self.grid:
            tables["sweep"] = {k: [O.plain(_typed(self, k, v)) for v in vals] for k, vals in self.grid}
        header = (f"textlab {rec['verb']} {rec['task']}: resolved options (defaults included)\n"
                  f"run it again: textlab {rec['verb']} {rec['task']} --config THIS_FILE")
        return O.dump_toml(tables, header)

    def to_argv(self, drop: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """Command-line words that make this invocation again (its explicitly given options)."""
        words = [self.verb.name, self.task] if self.target is None else [self.verb.name, self.target]
        specs = {**{s.name: s for s in self.verb.specs()}, **O.spec_map(self.verb.core)}
        for name in sorted(self.given - set(drop) - {"config", "sweep"}, key=lambda n: list(specs).index(n)
                           if n in specs else 0):
            spec = specs.get(name)
            if spec is None:
                continue
            value = getattr(self.options if hasattr(self.options, name) else self.core, name)
            words += _words(spec, value)
        for key, values in self.grid:
            words += ["--sweep", f"{key}={','.join(str(O.plain(_typed(self, key, v))) for v in values)}"]
        return words


# ============================================================================ helpers
def _build(verb: Verb, values: Mapping[str, Any], prefix: str) -> Any:
    specs = {s.name: s for s in verb.specs()}
    unknown = [k for k in values if k not in specs]
    if unknown:
        raise O.unknown_option(unknown[0], list(specs), where_prefix=prefix)
    kwargs = {}
    for name, spec in specs.items():
        if name in values:
            kwargs[name] = O.coerce(spec, values[name], f"{prefix}{name}" if prefix else None)
        elif spec.default is dataclasses.MISSING:
            raise UsageError(f"{prefix}{spec.flag} is required" if not spec.meta.argument
                             else f"{prefix}{spec.name.upper()} is required")
    return verb.options(**kwargs)


def _typed(inv: Invocation, key: str, value: Any) -> Any:
    specs = {**{s.name: s for s in inv.verb.specs()}, **O.spec_map(inv.verb.core)}
    return O.coerce(specs[key], value, f"--sweep {key}")


def _check_grid(inv: Invocation, axes: tuple, where: str) -> tuple:
    specs = {s.name: s for s in inv.verb.specs()}
    seen = set()
    for key, values in axes:
        if key in seen:
            raise UsageError(f"{where}names {key} twice", hint=f"give all its values once: --sweep {key}=V1,V2,...")
        seen.add(key)
        if key not in specs and key != "seed":
            raise O.unknown_option(key, list(specs), where_prefix=where)
        if key in inv.given:
            spec = specs.get(key)
            flag = spec.flag if spec else "--" + key
            raise UsageError(f"{where}{key} and {flag} both set {key}", hint=f"drop {flag}, or drop {key} from the sweep")
    return axes  # each value is checked with its grid point, before the first run (execute.sweep)


def _words(spec: O.OptionSpec, value: Any) -> list[str]:
    if value is None:
        return []
    flags = [f for f in spec.meta.flags if f.startswith("--")]
    if spec.kind is bool:
        if flags and "/" in flags[0]:
            on, off = flags[0].split("/", 1)
            return [on if value else off]
        return [spec.flag] if value else ["--no-" + spec.flag[2:]]
    if spec.meta.argument:
        return [str(O.plain(v)) for v in (value if isinstance(value, list) else [value])]
    if spec.multiple:
        return [w for v in value for w in (spec.flag, str(O.plain(v)))]
    return [spec.flag, str(O.plain(value))]


def split_config(data: Mapping[str, Any], verb: Verb, prefix: str) -> tuple[dict, dict, dict]:
    """A config file's (task options, core options, sweep grid). Flat keys or [options]/[core]
    tables; `task`/`verb` keys must match the command."""
    core_names = {s.name for s in O.specs_of(verb.core)}
    task_names = {s.name for s in verb.specs()}
    opts, core, sweep = {}, {}, {}
    for key, value in data.items():
        name = O.normalize_key(key)
        if name in ("task", "verb"):
            want = verb.task.name if name == "task" else verb.name
            if value != want:
                raise UsageError(f"{prefix}it is a config of {name} {value!r}, not {want!r}")
        elif name in ("options", "core") and isinstance(value, dict):
            for k, v in value.items():
                target = core if O.normalize_key(k) in core_names else opts
                target[O.normalize_key(k)] = v
        elif name == "sweep":
            if not isinstance(value, dict):
                raise UsageError(f"{prefix}sweep must be a table of value lists", hint="[sweep]  lr = [0.1, 0.2]")
            sweep = {O.normalize_key(k): v for k, v in value.items()}
        elif name in core_names:
            core[name] = value
        else:
            opts[name] = value
    for k in opts:
        if k not in task_names:
            raise O.unknown_option(k, sorted(task_names | core_names), where_prefix=prefix)
    for k in ("config", "sweep", "resume", "print_config"):
        if k in core:
            raise UsageError(f"{prefix}{k} cannot be set in a config file")
    return opts, core, sweep


# ============================================================================ records (config.toml)
def _run_info(run_dir: Path) -> dict:
    from .data import read_json

    info = read_json(Path(run_dir) / "run.json", "run.json")
    if not isinstance(info, dict) or not info.get("task"):
        raise DataError(f"{run_dir}/run.json is not a textlab run record")
    return info


def read_record(run_dir: Path, verb: Verb) -> dict:
    """A run's stored options as {"options": ..., "core": ...} (config.toml; or textlab 0.1's
    config.json, one flat table with null for defaults, upgraded by the task's `Options.upgrade`)."""
    from .runs import read_config

    data = read_config(Path(run_dir))
    if not data:
        raise DataError(f"{run_dir} holds no {RECORD_FILE} (nor a {LEGACY_RECORD_FILE} of textlab 0.1)")
    opts, core = dict(data.get("options") or {}), dict(data.get("core") or {})
    if not (Path(run_dir) / RECORD_FILE).exists():
        core_names = {s.name for s in O.specs_of(verb.core) if s.meta.record}
        core = {k: opts.pop(k) for k in list(opts) if k in core_names}
        opts = {k: v for k, v in opts.items() if v is not None}
        core = {k: v for k, v in core.items() if v is not None}
        upgrade = getattr(verb.options, "upgrade", None)
        if upgrade is not None:
            opts = upgrade(opts)
    return {"options": opts, "core": core}


def write_record(run_dir: Path, inv: Invocation) -> None:
    from .data import atomic_write

    with atomic_write(Path(run_dir) / RECORD_FILE, "w", encoding="utf-8") as fh:
        fh.write(inv.config_toml())
