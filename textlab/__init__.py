"""textlab: train and study text models. The core's public API.

Plugins import only from here (never from another plugin):

    import textlab
    from textlab import Option, Run, Artifact, Engine, hookimpl, TaskSpec, ModelSpec, option

The names are loaded on first use (PEP 562), so `import textlab` costs next to nothing: the
`textlab` command can catch a Ctrl-C pressed while the rest of it is still being imported, and a
plugin module stays light to import.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_FROM: dict[str, tuple[str, ...]] = {
    "typer": ("Argument", "Option"),  # typed options of keyword-style verb functions
    ".checkpoint": ("Artifact", "load_checkpoint", "load_weights", "open_artifact", "same_data", "save_checkpoint"),
    ".console": ("Timer", "progress", "show", "status", "warn"),
    ".data": ("Source", "atomic_write", "cache_dir", "fingerprint", "iter_lines", "iter_parquet", "load_hub",
              "read_json", "read_table", "resolve", "split_files", "textlab_home", "write_json"),
    ".engine": ("Callback", "Engine", "FitResult", "Fitted", "Schedule", "adamw", "fit", "seed_everything"),
    ".errors": ("CheckpointError", "DataError", "PluginError", "TextlabError", "UsageError"),
    ".runner": ("execute",),
    ".hookspecs": ("hookimpl", "hookspec"),
    ".invocation": ("Invocation",),
    ".memory": ("huge_zeros",),
    ".options": ("Duration", "Options", "option"),
    ".plugins": ("registry",),
    ".rundir": ("locate_run",),
    ".runs": ("Run", "read_metrics"),
    ".specs": ("DatasetSpec", "EmbedderSpec", "LoggerSpec", "MISSING_MEANS", "MetricSpec", "ModelSpec", "RENAMED_FROM",
               "TaskSpec", "check_build", "config_from_dict", "config_to_dict", "make_config"),
    ".text": ("Vocab", "words"),
}
_SUBMODULES = ("distributed", "jit", "options")
_WHERE = {name: module for module, names in _FROM.items() for name in names}

__all__ = sorted([*_WHERE, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'textlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__ if module.startswith(".") else None), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
