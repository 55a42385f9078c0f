"""The plugin manager: load plugins from entry points, collect and check what they register.

There is one loading path. The built-in task plugins are entry points of the `textlab`
distribution in the `textlab.plugins` group, exactly like a third party's. A plugin that fails to
import (or whose hook raises) is recorded with its error and skipped; the others keep working.
Two plugins registering the same name is an error that names both.

`TEXTLAB_PLUGINS=a,b` loads only the named entry points (the core is always loaded).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError, first_line
from .specs import CORE_VERBS, RECORD_TYPES, verb_kind, DatasetSpec, EmbedderSpec, LoggerSpec, MetricSpec, ModelSpec, TaskSpec

ENTRY_POINT_GROUP = "textlab.plugins"
CORE_NAME = "textlab"


@dataclass
class PluginInfo:
    """What `textlab plugins` shows about one plugin."""

    name: str
    version: str
    module: str
    distribution: str
    error: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "distribution": self.distribution,
            "status": "ok" if self.ok else "failed",
            "error": self.error,
            "hooks": sorted(h for h, names in self.registered.items() if names is not None),
            "registers": {k: v for k, v in self.registered.items()},
        }


_KIND_LABEL = {"textlab_tasks": "tasks", "textlab_models": "models", "textlab_datasets": "datasets",
               "textlab_metrics": "metrics", "textlab_loggers": "loggers", "textlab_embedders": "embedders"}


class Registry:
    """Everything the loaded plugins register, checked and sorted."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("textlab")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.tasks: dict[str, TaskSpec] = {}
        self.models: dict[tuple[str, str], ModelSpec] = {}
        self.datasets: dict[tuple[str, str], DatasetSpec] = {}
        self.metrics: dict[tuple[str, str], MetricSpec] = {}
        self.loggers: dict[str, LoggerSpec] = {}
        self.embedders: dict[str, EmbedderSpec] = {}
        self.owner: dict[tuple[str, Any], str] = {}

    # ------------------------------------------------------------------ loading
    def load(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> "Registry":
        from . import builtins

        self._register(CORE_NAME, builtins, _dist_version("textlab"), "textlab")
        allow = os.environ.get("TEXTLAB_PLUGINS")
        allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
        seen: set[tuple[str, str]] = set()
        eps = list(entry_points) if entry_points is not None else _entry_points()
        unknown = sorted((allowed or set()) - {ep.name for ep in eps})
        if unknown:  # a typo would otherwise load fewer plugins without a word
            raise PluginError(f"TEXTLAB_PLUGINS names {', '.join(map(repr, unknown))}, not an installed plugin",
                              hint="installed: " + (", ".join(sorted({ep.name for ep in eps})) or "none"))
        for ep in sorted(eps, key=lambda e: e.name):
            if (ep.name, ep.value) in seen:
                continue
            seen.add((ep.name, ep.value))
            if allowed is not None and ep.name not in allowed:
                continue
            dist_name = getattr(getattr(ep, "dist", None), "name", None) or "?"
            dist_version = getattr(getattr(ep, "dist", None), "version", None) or "?"
            if ep.name in {p.name for p in self.plugins}:
                raise PluginError(
                    f"two plugins are named {ep.name!r}: {self._info(ep.name).distribution} and {dist_name}"
                )
            try:
                module = ep.load()
            except BaseException as exc:  # noqa: BLE001 - a broken plugin must not take the CLI down
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.plugins.append(PluginInfo(ep.name, dist_version, ep.value, dist_name,
                                               error=_short_error(exc)))
                continue
            version = getattr(module, "__version__", None) or dist_version
            self._register(ep.name, module, str(version), dist_name)
        return self

    def _info(self, name: str) -> PluginInfo:
        return next(p for p in self.plugins if p.name == name)

    def _register(self, name: str, module: Any, version: str, dist: str) -> None:
        info = PluginInfo(name, version, getattr(module, "__name__", repr(module)), dist)
        self.plugins.append(info)
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # hookimpl with a wrong signature or unknown hook name
            info.error = _short_error(exc)
            return
        collected: dict[str, list[Any]] = {}
        try:
            unknown = [h for h in _marked_hooks(module) if h not in RECORD_TYPES]
            if unknown:
                raise TypeError(f"unknown hook {unknown[0]!r} (hooks: {', '.join(RECORD_TYPES)})")
            for hook_name, record_type in RECORD_TYPES.items():
                impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin_name == name]
                if not impls:
                    continue
                records = [r for impl in impls for r in (impl.function() or [])]
                for rec in records:
                    if not isinstance(rec, record_type):
                        raise TypeError(f"{hook_name} returned {type(rec).__name__}, expected {record_type.__name__}")
                    if isinstance(rec, TaskSpec):
                        _check_task(rec)
                collected[hook_name] = list(records)
        except Exception as exc:  # noqa: BLE001
            info.error = _short_error(exc)
            self.pm.unregister(module)
            return
        for hook_name, records in collected.items():
            info.registered[_KIND_LABEL[hook_name]] = [self._add(name, rec) for rec in records]

    def _add(self, plugin: str, rec: Any) -> str:
        if isinstance(rec, TaskSpec):
            table, key, label = self.tasks, rec.name, f"task {rec.name!r}"
        elif isinstance(rec, ModelSpec):
            table, key, label = self.models, (rec.task, rec.name), f"model {rec.name!r} of task {rec.task!r}"
        elif isinstance(rec, DatasetSpec):
            table, key, label = self.datasets, (rec.task, rec.name), f"dataset {rec.name!r} of task {rec.task!r}"
        elif isinstance(rec, MetricSpec):
            table, key, label = self.metrics, (rec.task or "", rec.name), f"metric {rec.name!r}"
        elif isinstance(rec, EmbedderSpec):
            table, key, label = self.embedders, rec.name, f"embedder {rec.name!r}"
        else:
            table, key, label = self.loggers, rec.name, f"logger {rec.name!r}"
        kind = type(rec).__name__
        if (kind, key) in self.owner:
            raise PluginError(f"{label} is registered by two plugins: {self.owner[(kind, key)]!r} and {plugin!r}",
                              hint="uninstall one, or choose with TEXTLAB_PLUGINS=...")
        self.owner[(kind, key)] = plugin
        table[key] = rec  # type: ignore[index]
        return key if isinstance(key, str) else "/".join(k for k in key if k)

    # ------------------------------------------------------------------ queries
    def task(self, name: str, verb: str | None = None) -> TaskSpec:
        """The task called `name`; with `verb`, also check that it supports that verb."""
        spec = self.tasks.get(name)
        if spec is None:
            raise UsageError(f"unknown task {name!r}", hint=_suggest(name, self.tasks) or _listing("tasks", self.tasks))
        if verb is not None and verb not in spec.verbs:
            raise UsageError(f"task {name!r} does not support {verb!r}",
                             hint=f"it supports: {', '.join(sorted(spec.verbs))}")
        return spec

    def tasks_for(self, verb: str) -> list[TaskSpec]:
        return [t for _, t in sorted(self.tasks.items()) if verb in t.verbs]

    def verbs(self) -> dict[str, str]:
        """Every verb name -> its kind: the core verbs and those tasks add."""
        kinds = dict(CORE_VERBS)
        for task in self.tasks.values():
            for verb, func in task.verbs.items():
                kinds.setdefault(verb, verb_kind(func))
        return kinds

    def models_for(self, task: str) -> list[ModelSpec]:
        return [m for (t, _), m in sorted(self.models.items()) if t == task]

    def model(self, task: str, name: str) -> ModelSpec:
        spec = self.models.get((task, name))
        if spec is None:
            names = {m.name: m for m in self.models_for(task)}
            raise UsageError(f"unknown model {name!r} for task {task!r}",
                             hint=_suggest(name, names) or _listing("models", names))
        return spec

    def dataset(self, task: str, name: str) -> DatasetSpec | None:
        return self.datasets.get((task, name))

    def datasets_for(self, task: str) -> list[DatasetSpec]:
        return [d for (t, _), d in sorted(self.datasets.items()) if t == task]

    def metric(self, name: str, task: str | None = None) -> MetricSpec | None:
        base = name.split("/")[-1]
        return self.metrics.get((task or "", base)) or self.metrics.get(("", base))

    def higher_is_better(self, name: str, task: str | None = None) -> bool:
        spec = self.metric(name, task)
        if spec is not None:
            return spec.higher_is_better
        low = ("loss", "bpc", "perplexity", "ppl", "error", "mae", "time", "seconds")
        return not any(w in name.split("/")[-1].lower() for w in low)

    def logger(self, name: str) -> LoggerSpec:
        spec = self.loggers.get(name)
        if spec is None:
            raise UsageError(f"unknown logger {name!r}", hint=_suggest(name, self.loggers) or _listing("loggers", self.loggers))
        return spec

    def embedder(self, name: str) -> EmbedderSpec:
        spec = self.embedders.get(name)
        if spec is None:
            raise UsageError(f"unknown embedder {name!r}",
                             hint=_suggest(name, self.embedders) or _listing("embedders", self.embedders))
        return spec


def _check_task(spec: TaskSpec) -> None:
    for verb, func in spec.verbs.items():
        if not callable(func):
            raise TypeError(f"task {spec.name!r}: verb {verb!r} is not callable")
        want = CORE_VERBS.get(verb)
        got = verb_kind(func)
        if want is not None and want != got:
            first = {"run": "run", "artifact": "artifact", "task": "no positional"}[want]
            raise TypeError(f"task {spec.name!r}: verb {verb!r} must take {first} first parameter")


def _marked_hooks(module: Any) -> list[str]:
    return [n for n in dir(module) if hasattr(getattr(module, n, None), "textlab_impl")]


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        from ._version import __version__

        return __version__


def _short_error(exc: BaseException) -> str:
    if os.environ.get("TEXTLAB_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    text = first_line(exc)
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _suggest(name: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None


def _listing(label: str, choices: Iterable[str]) -> str:
    names = sorted(choices)
    return f"{label}: {', '.join(names)}" if names else f"no {label} are installed"


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry().load()
    return _REGISTRY


def reset() -> None:
    """Forget the loaded registry (tests, or after installing a plugin in-process)."""
    global _REGISTRY
    _REGISTRY = None
    importlib.invalidate_caches()
