"""textlab: train and study text models. The core's public API.

Plugins import only from here (never from another plugin):

    import textlab
    from textlab import Argument, Option, Run, Artifact, fit, hookimpl, TaskSpec, ModelSpec
"""

__version__ = "0.1.0"

from typer import Argument, Option  # noqa: E402  (typed options for verb functions)

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
from .loop import FitResult, fit, seed_everything  # noqa: E402
from .plugins import registry  # noqa: E402
from .runs import Run, read_metrics  # noqa: E402
from .specs import (  # noqa: E402
    DatasetSpec,
    EmbedderSpec,
    LoggerSpec,
    MISSING_MEANS,
    MetricSpec,
    ModelSpec,
    TaskSpec,
    config_from_dict,
    config_to_dict,
    make_config,
)
from .text import Vocab, words  # noqa: E402
from . import distributed  # noqa: E402

__all__ = [
    "Argument", "Artifact", "CheckpointError", "DataError", "DatasetSpec", "EmbedderSpec", "FitResult", "LoggerSpec", "MISSING_MEANS", "MetricSpec",
    "ModelSpec", "Option", "PluginError", "Run", "Source", "TaskSpec", "TextlabError", "Timer", "UsageError", "Vocab",
    "atomic_write", "cache_dir", "config_from_dict", "config_to_dict", "distributed", "fingerprint", "fit",
    "hookimpl", "hookspec", "iter_lines", "load_checkpoint", "load_hub", "load_weights", "make_config", "open_artifact", "progress",
    "read_json", "read_metrics", "read_table", "registry", "resolve", "same_data", "save_checkpoint", "seed_everything", "show",
    "split_files", "status", "textlab_home", "warn", "words", "write_json",
]
