"""textlab: train and study text models. The core's public API.

Plugins import only from here (never from another plugin):

    import textlab
    from textlab import Argument, Option, Run, Artifact, fit, hookimpl, TaskSpec, ModelSpec
"""

from ._version import __version__  # noqa: F401

from typer import Argument, Option  # noqa: E402  (typed options of keyword-style verb functions)

from .checkpoint import Artifact, load_checkpoint, load_weights, open_artifact, same_data, save_checkpoint  # noqa: E402
from .console import Timer, progress, show, status, warn  # noqa: E402
from .data import (  # noqa: E402
    Source,
    atomic_write,
    cache_dir,
    fingerprint,
    iter_lines,
    load_hub,
    read_json,
    read_table,
    resolve,
    split_files,
    textlab_home,
    write_json,
)
from .errors import CheckpointError, DataError, PluginError, TextlabError, UsageError  # noqa: E402
from .hookspecs import hookimpl, hookspec  # noqa: E402
from .engine import Callback, Engine, FitResult, Fitted, Schedule, adamw, fit, seed_everything  # noqa: E402
from .execute import execute  # noqa: E402
from .invocation import Invocation  # noqa: E402
from . import options  # noqa: E402
from .options import Duration, Options, option  # noqa: E402
from .plugins import registry  # noqa: E402
from .runs import Run, read_metrics  # noqa: E402
from .rundir import locate_run  # noqa: E402
from .specs import (  # noqa: E402
    DatasetSpec,
    EmbedderSpec,
    LoggerSpec,
    MISSING_MEANS,
    RENAMED_FROM,
    MetricSpec,
    ModelSpec,
    TaskSpec,
    check_build,
    config_from_dict,
    config_to_dict,
    make_config,
)
from .text import Vocab, words  # noqa: E402
from . import distributed  # noqa: E402

__all__ = [
    "Argument", "Artifact", "Callback", "CheckpointError", "DataError", "DatasetSpec", "Duration", "EmbedderSpec", "Engine",
    "FitResult", "Fitted", "Invocation", "LoggerSpec", "MISSING_MEANS", "MetricSpec", "RENAMED_FROM", "ModelSpec", "Option", "Options",
    "PluginError", "Run", "Schedule", "Source", "TaskSpec", "TextlabError", "Timer", "UsageError", "Vocab",
    "adamw", "atomic_write", "cache_dir", "check_build", "config_from_dict", "config_to_dict", "distributed", "execute", "fingerprint", "fit",
    "hookimpl", "hookspec", "iter_lines", "load_checkpoint", "load_hub", "load_weights", "locate_run", "make_config",
    "open_artifact", "option", "options", "progress", "read_json", "read_metrics", "read_table", "registry", "resolve",
    "same_data", "save_checkpoint", "seed_everything", "show", "split_files", "status", "textlab_home", "warn", "words",
    "write_json",
]
