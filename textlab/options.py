"""Options declared once: each verb's options are one dataclass.

    @dataclass
    class TrainOptions(textlab.Options):
        data: str = textlab.option("sample", help="Where the text comes from.")
        layers: int = textlab.option(4, min=1, help="Number of blocks.")
        chunk_size: int = textlab.option(64, min=1, help="Chunk length.", applies={"model": ("gla",)})
        steps: Optional[int] = textlab.options.steps()
        time_budget: Optional[float] = textlab.options.time_budget()

    def train(run: textlab.Run, opts: TrainOptions) -> dict: ...

A field's metadata (help, bounds, choices, unit, the models it applies to, old spellings) is the
one place the option is described: the command line (`--layers`, its help and checks), config
files, `--set KEY=VALUE`, sweep values, the run's stored `config.toml` and the Python API all read
it, and `coerce` is the one function that checks a value, wherever it comes from.

Options that several tasks share are made by the factories below (`steps`, `epochs`,
`time_budget`, `patience`, `eval_every`, `lr`, `warmup`), so they have one name and one unit
everywhere. A verb written with plain keyword options (`def train(run, *, steps: Annotated[int,
textlab.Option(min=1)] = 40)`) gets the same treatment: its options dataclass is made from its
signature.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

from .errors import UsageError

META_KEY = "textlab.option"
CORE_PANEL = "core options"


# ============================================================================ durations
class Duration(float):
    """Seconds, written as 90s, 20m, 1h30m, 1.5h or a bare number of seconds."""

    @classmethod
    def parse(cls, text: Any) -> "Duration":
        if isinstance(text, bool):
            raise ValueError(f"cannot read the duration {text!r}")
        if isinstance(text, (int, float)):
            return cls(float(text))
        s = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?(e[-+]?\d+)?", s):
            return cls(float(s))
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", s)
        if not parts or "".join(a + b for a, b in parts) != s:
            raise ValueError(f"cannot read the duration {text!r} (use e.g. 90s, 20m, 1h30m, or seconds)")
        return cls(sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts))

    def __str__(self) -> str:
        return format_duration(float(self))


def format_duration(seconds: float) -> str:
    """1800 -> '30m', 5400 -> '1h30m', 95 -> '1m35s', 2.5 -> '2.5s'."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


# ============================================================================ declaring options
@dataclass(frozen=True)
class OptionMeta:
    """What `option()` records about a field, beyond its type and default."""

    help: str = ""
    min: float | None = None  # closed bounds: min <= x <= max
    max: float | None = None
    gt: float | None = None  # open bounds: gt < x < lt
    lt: float | None = None
    choices: tuple | None = None
    flags: tuple[str, ...] = ()  # e.g. ("-k", "--top"); default: --field-name
    panel: str | None = None  # a heading of its own in --help
    applies: Mapping[str, tuple] | None = None  # {"model": ("rnn",)}: refused when set for other models
    unit: str | None = None  # said in --help: "seconds", "steps"...
    old: tuple[str, ...] = ()  # earlier spellings: refused with the new name
    note: str | None = None  # shown with an old spelling (a changed unit, say)
    metavar: str | None = None
    argument: bool = False  # positional
    hidden: bool = False
    record: bool = True  # stored in config.toml (False: how to run, not what: --json, --resume...)
    parser: Callable[[str], Any] | None = None  # a keyword-style verb's own typer parser (reads text typed by a person)


def option(default: Any = dataclasses.MISSING, *, help: str = "", min: float | None = None,
           max: float | None = None, gt: float | None = None, lt: float | None = None,
           choices: tuple | None = None, flags: tuple[str, ...] | str = (), panel: str | None = None,
           applies: Mapping[str, Any] | None = None, unit: str | None = None, old: tuple[str, ...] | str = (),
           note: str | None = None, metavar: str | None = None, argument: bool = False, hidden: bool = False,
           record: bool = True) -> Any:
    """A dataclass field that is a command-line option (see the module docstring)."""
    if isinstance(flags, str):
        flags = (flags,)
    if isinstance(old, str):
        old = (old,)
    applies = {k: tuple(v) if isinstance(v, (list, tuple, set, frozenset)) else (v,) for k, v in (applies or {}).items()}
    meta = OptionMeta(help=help, min=min, max=max, gt=gt, lt=lt, choices=tuple(choices) if choices else None,
                      flags=tuple(flags), panel=panel, applies=applies or None, unit=unit, old=tuple(old), note=note,
                      metavar=metavar, argument=argument, hidden=hidden, record=record)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={META_KEY: meta})
    return dataclasses.field(default=default, metadata={META_KEY: meta})


class Options:
    """Optional base class of a verb's options dataclass: hooks the core calls before the verb runs.

    `resolve()` fills settings whose defaults depend on other options (a model's own learning
    rate, say) and checks combinations (raise `textlab.UsageError`), building the model on the
    meta device where that is what tells; it runs for every grid point of a sweep before the first
    run starts, and on the stored options of a resumed run. `upgrade(record)` maps options stored
    by an earlier textlab (renamed keys, changed units) to today's.
    """

    def resolve(self) -> None:
        return None

    @classmethod
    def upgrade(cls, record: dict) -> dict:
        return record


# ============================================================================ the shared options
def steps(default: int | None = None, *, help: str = "Stop after this many optimizer steps.", **kw: Any) -> Any:
    return option(default, min=1, unit="steps", help=help, **kw)


def epochs(default: int | None = 1, *, help: str = "Passes over the training data.", **kw: Any) -> Any:
    return option(default, min=1, unit="epochs", help=help, **kw)


def time_budget(*, help: str = "Stop after this much wall-clock time, everything the command does included "
                                "(90s, 20m, 1h30m; a bare number is seconds; 0: no limit).", **kw: Any) -> Any:
    return option(None, min=0, unit="duration", help=help, **kw)


def patience(*, help: str = "Stop after this many evaluations without a better monitored metric.", **kw: Any) -> Any:
    return option(None, min=1, unit="evaluations", help=help, **kw)


def eval_every(default: int | None = None, *, help: str = "Evaluate every N optimizer steps.", **kw: Any) -> Any:
    return option(default, min=1, unit="steps", help=help, **kw)


def lr(default: float | None, *, help: str = "Peak learning rate.", **kw: Any) -> Any:
    return option(default, gt=0, help=help, **kw)


def warmup(default: int = 0, *, help: str = "Linear learning-rate warm-up steps.", **kw: Any) -> Any:
    return option(default, min=0, unit="steps", help=help, **kw)


# ============================================================================ reading declarations
@dataclass(frozen=True)
class OptionSpec:
    """One option as the core sees it: name, type, default and metadata."""

    name: str
    kind: Any  # int, float, str, bool, Path, Duration, or a tuple of choices
    default: Any
    meta: OptionMeta
    optional: bool = False  # None is a value
    multiple: bool = False  # a list (a repeatable option)

    @property
    def flag(self) -> str:
        """The long spelling: `--time-budget`."""
        longs = [f for f in self.meta.flags if f.startswith("--")]
        return (longs[0].split("/")[0] if longs else "--" + self.name.replace("_", "-"))

    @property
    def choices(self) -> tuple | None:
        return self.kind if isinstance(self.kind, tuple) else self.meta.choices

    def default_value(self) -> Any:
        if isinstance(self.default, (list, dict, set)):
            return type(self.default)(self.default)
        return self.default


def _unwrap(tp: Any) -> tuple[Any, bool, bool, tuple]:
    """(base type, optional, multiple, extra Annotated metadata) of an annotation."""
    extras: tuple = ()
    if typing.get_origin(tp) is typing.Annotated:
        extras = tuple(tp.__metadata__)
        tp = typing.get_args(tp)[0]
    optional = False
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0] if len(args) == 1 else tp
    multiple = False
    if typing.get_origin(tp) in (list, tuple, typing.List):
        multiple = True
        tp = typing.get_args(tp)[0] if typing.get_args(tp) else str
    if typing.get_origin(tp) is typing.Annotated:
        extras += tuple(tp.__metadata__)
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) is Literal:
        tp = tuple(typing.get_args(tp))
    return tp, optional, multiple, extras


def specs_of(cls: type) -> list[OptionSpec]:
    """The options of an options dataclass, in declaration order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional, multiple, _ = _unwrap(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)  # type: ignore[misc]
        meta = f.metadata.get(META_KEY) or OptionMeta()
        if isinstance(kind, type) and issubclass(kind, Duration):
            kind = Duration
        if f.metadata.get(META_KEY) and meta.unit == "duration":
            kind = Duration
        if default is None:
            optional = True
        out.append(OptionSpec(f.name, kind, default, meta, optional, multiple))
    return out


def spec_map(cls: type) -> dict[str, OptionSpec]:
    return {s.name: s for s in specs_of(cls)}


def dataclass_from_function(func: Callable[..., Any], skip: int, name: str) -> type:
    """An options dataclass made from a verb's keyword parameters (`Annotated[T, textlab.Option(...)]`).

    `skip`: leading parameters that are not options (`run`, `artifact`).
    """
    hints = typing.get_type_hints(func, include_extras=True)
    fields = []
    for p in list(inspect.signature(func).parameters.values())[skip:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError("*args/**kwargs cannot become options")
        ann = hints.get(p.name, str)
        _, _, _, extras = _unwrap(ann)
        info = next((e for e in extras if hasattr(e, "param_decls")), None)  # typer's OptionInfo / ArgumentInfo
        default = p.default if p.default is not p.empty else getattr(info, "default", dataclasses.MISSING)
        if default is ... or default is p.empty:
            default = dataclasses.MISSING
        meta = OptionMeta()
        if info is not None:
            decls = tuple(getattr(info, "param_decls", None) or ())
            if isinstance(getattr(info, "default", None), str) and info.default.startswith("-"):
                decls = (info.default, *decls)  # Annotated[..., Option("--seed")]: typer reads it as a name
            decls = tuple(d for d in decls if isinstance(d, str) and d.startswith("-"))
            argument = type(info).__name__ == "ArgumentInfo"
            meta = OptionMeta(help=getattr(info, "help", None) or "", min=getattr(info, "min", None),
                              max=getattr(info, "max", None), flags=decls, panel=getattr(info, "rich_help_panel", None),
                              metavar=getattr(info, "metavar", None), argument=argument,
                              hidden=bool(getattr(info, "hidden", False)))
            if getattr(info, "parser", None) is not None:
                meta = dataclasses.replace(meta, parser=info.parser)
        if p.kind == p.POSITIONAL_OR_KEYWORD and info is None and default is dataclasses.MISSING:
            meta = dataclasses.replace(meta, argument=True)
        fdef = dataclasses.field(default=default, metadata={META_KEY: meta}) if not isinstance(default, list) else \
            dataclasses.field(default_factory=lambda d=default: list(d), metadata={META_KEY: meta})
        fields.append((p.name, ann, fdef))
    fields.sort(key=lambda f: f[2].default is dataclasses.MISSING and f[2].default_factory is dataclasses.MISSING,
                reverse=True)  # dataclasses want fields without defaults first
    cls = dataclasses.make_dataclass(name, fields)
    cls.__textlab_keywords__ = True  # type: ignore[attr-defined]
    return cls


# ============================================================================ checking values
def coerce(spec: OptionSpec, value: Any, where: str | None = None) -> Any:
    """`value` (a string typed by a person, or a value from TOML/JSON/Python) as the option's type.

    Raises UsageError naming the option (`where`, default its flag) and what is wrong.
    """
    where = where or spec.flag
    if value is None:
        if spec.optional or spec.default is None:
            return None
        raise UsageError(f"{where} needs a value")
    if spec.multiple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [_one(spec, v, where) for v in items]
    return _one(spec, value, where)


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _one(spec: OptionSpec, value: Any, where: str) -> Any:
    kind = spec.kind
    parser = spec.meta.parser
    if parser is not None and isinstance(value, str):
        import typer

        try:
            return parser(value)
        except (typer.BadParameter, ValueError) as exc:
            raise UsageError(f"{where}: {exc}") from None
    try:
        if isinstance(kind, tuple):  # choices
            return _choice(spec, value, where)
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise UsageError(f"{where}: a flag takes true or false (1/0, yes/no, on/off), not {value!r}")
        if kind is Duration:
            out: Any = Duration.parse(value)
            if out == 0 and spec.optional:
                return None  # a budget of 0: no limit
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value) if not isinstance(value, str) else int(value.strip().replace("_", ""))
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if math.isinf(out):
                raise UsageError(f"{where}: {value!r} is not a finite number")
        elif kind is Path or (isinstance(kind, type) and issubclass(kind, Path)):
            if not isinstance(value, (str, Path)) or str(value) == "":
                raise ValueError
            out = Path(value).expanduser()
        elif kind is str or kind is Any:
            if not isinstance(value, (str, int, float, Path)) or isinstance(value, bool):
                raise ValueError
            out = str(value)
        else:
            out = value
    except UsageError:
        raise
    except (TypeError, ValueError) as exc:
        what = {int: "an integer", float: "a number", Duration: "a duration (90s, 20m, 1h30m or seconds)"}.get(
            kind, "a path" if kind is Path else "text")
        detail = str(exc) if kind is Duration and str(exc) else f"{value!r} is not {what}"
        raise UsageError(f"{where}: {detail}") from None
    if spec.choices and not isinstance(kind, tuple):
        _choice(spec, out, where)
    _bounds(spec, out, where)
    return out


def _choice(spec: OptionSpec, value: Any, where: str) -> Any:
    choices = spec.choices or ()
    for c in choices:
        if value == c or (isinstance(value, str) and str(c) == value):
            return c
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f"did you mean {close[0]!r}?" if close else None
    raise UsageError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}", hint=hint)


def _bounds(spec: OptionSpec, value: Any, where: str) -> None:
    m = spec.meta
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if isinstance(value, float) and math.isnan(value):
        raise UsageError(f"{where}: nan is not a number it can use")
    bad = ((m.min is not None and value < m.min) or (m.max is not None and value > m.max)
           or (m.gt is not None and value <= m.gt) or (m.lt is not None and value >= m.lt))
    if bad:
        raise UsageError(f"{where}: {value:g} is not in the range {range_text(m)}")


def range_text(m: OptionMeta) -> str:
    """`x>=1`, `0<x<1`, `0<=x<=0.9`."""
    lo = f"{m.min:g}<=" if m.min is not None else (f"{m.gt:g}<" if m.gt is not None else "")
    hi = f"<={m.max:g}" if m.max is not None else (f"<{m.lt:g}" if m.lt is not None else "")
    if lo and hi:
        return f"{lo}x{hi}"
    if lo:
        return f"x{'>=' if m.min is not None else '>'}{m.min if m.min is not None else m.gt:g}"
    if hi:
        return f"x{hi}"
    return ""


def make(cls: type, values: Mapping[str, Any], *, where: Callable[[OptionSpec], str] | None = None,
         strict: bool = True) -> Any:
    """An options dataclass instance from `values` (each checked by `coerce`; defaults for the rest).

    An unknown key is one UsageError naming it and the closest option names (`strict`), or dropped.
    """
    specs = spec_map(cls)
    unknown = [k for k in values if k not in specs]
    if unknown and strict:
        raise unknown_option(unknown[0], list(specs), where_prefix=where(None) if where else "")  # type: ignore[arg-type]
    kwargs = {}
    for name, spec in specs.items():
        if name in values:
            kwargs[name] = coerce(spec, values[name], where(spec) if where else None)
        elif spec.default is dataclasses.MISSING:
            raise UsageError(f"{spec.flag} is required" if not spec.meta.argument else f"{spec.name.upper()} is required")
    return cls(**kwargs)


def unknown_option(key: str, names: list[str], where_prefix: str = "") -> UsageError:
    norm = key.strip().lstrip("-").replace("-", "_")
    close = difflib.get_close_matches(norm, names, n=3, cutoff=0.5)
    hint = ("did you mean " + " or ".join(close) + "?") if close else ("options: " + ", ".join(sorted(names)))
    return UsageError(f"{where_prefix}unknown option {key!r}", hint=hint)


def normalize_key(key: str) -> str:
    """`--time-budget`, `time-budget`, `time_budget` -> `time_budget`."""
    return key.strip().lstrip("-").replace("-", "_")


def check_applies(cls: type, opts: Any, given: set[str] | frozenset[str]) -> None:
    """An option set explicitly that does not apply to the other options' values is one line naming both."""
    for spec in specs_of(cls):
        if spec.name not in given or not spec.meta.applies:
            continue
        for other, allowed in spec.meta.applies.items():
            value = getattr(opts, other, None)
            if value not in allowed:
                other_flag = "--" + other.replace("_", "-")
                allowed_s = " or ".join(f"{other_flag} {a}" for a in allowed)
                raise UsageError(f"{spec.flag} applies to {allowed_s}, not {other_flag} {value}",
                                 hint=f"drop {spec.flag}, or choose {allowed_s}")


def applies(spec: OptionSpec, opts: Any) -> bool:
    """Whether the option means anything for these option values (its `applies` condition)."""
    return all(getattr(opts, k, None) in v for k, v in (spec.meta.applies or {}).items())


# ============================================================================ plain values, TOML
def plain(value: Any) -> Any:
    """A value as TOML/JSON holds it (paths as text, durations as seconds)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Duration):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def as_dict(opts: Any, *, only_recorded: bool = False) -> dict:
    """Field name -> plain value of an options instance."""
    out = {}
    for spec in specs_of(type(opts)):
        if only_recorded and not spec.meta.record:
            continue
        out[spec.name] = plain(getattr(opts, spec.name))
    return out


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    text = str(value)
    escaped = "".join(_TOML_ESCAPES.get(c, c if ord(c) >= 0x20 and ord(c) != 0x7F else f"\\u{ord(c):04x}") for c in text)
    return f'"{escaped}"'


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_value(key)


def dump_toml(tables: Mapping[str, Any], header: str = "", comments: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """TOML text: top-level scalars first, then one `[table]` per dict value. `None` values are
    written as comments (TOML has no null); `comments[table][key]` adds a note after a key."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []
    comments = comments or {}

    def body(items: Mapping[str, Any], table: str) -> list[str]:
        out = []
        for k, v in items.items():
            note = comments.get(table, {}).get(k)
            if v is None:
                out.append(f"# {toml_key(k)} ={'  # ' + note if note else ' (not set)'}")
                continue
            out.append(f"{toml_key(k)} = {toml_value(v)}" + (f"  # {note}" if note else ""))
        return out

    scalars = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    if scalars:
        lines += body(scalars, "")
    for name, items in tables.items():
        if isinstance(items, dict):
            lines += ["", f"[{toml_key(name)}]", *body(items, name)]
    return "\n".join(lines).strip("\n") + "\n"


def read_config_file(path: Path) -> dict:
    """A TOML (`.toml`) or YAML (`.yaml`, `.yml`) config file as a dict; a file that does not
    parse is one UsageError with its line and column."""
    from .errors import DataError

    path = Path(path)
    if path.is_dir():
        raise DataError(f"--config {path} is a folder; give a .toml or .yaml file")
    if not path.is_file():
        raise DataError(f"--config {path}: no such file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"--config {path}: cannot read it as UTF-8 text ({exc.__class__.__name__})") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UsageError(f"--config {path}: reading YAML needs PyYAML", hint="pip install pyyaml, or use TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UsageError(f"--config {path} is not valid YAML{where}: {problem}") from None
        data = {} if data is None else data
    elif suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"--config {path} is not valid TOML: {exc}") from None
    else:
        raise UsageError(f"--config {path}: expected a .toml, .yaml or .yml file")
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a table of options at the top, not {type(data).__name__}")
    return data
