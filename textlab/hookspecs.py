"""The hooks a textlab plugin can implement.

A plugin is a module (or any object) registered under the `textlab.plugins` entry-point group.
It implements any of these functions, decorated with `textlab.hookimpl`, each returning a list
of records from `textlab.specs`::

    import textlab

    @textlab.hookimpl
    def textlab_tasks():
        return [textlab.TaskSpec(name="mytask", help="...", verbs={"train": train})]

None of the hooks takes arguments and none is `firstresult`: every plugin contributes, and the
manager attributes each record to the plugin that returned it.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("textlab")
hookimpl = pluggy.HookimplMarker("textlab")


@hookspec
def textlab_tasks():  # type: ignore[empty-body]
    """Return a list of `TaskSpec`: tasks with their verbs."""


@hookspec
def textlab_models():  # type: ignore[empty-body]
    """Return a list of `ModelSpec`: models, each for one task (can be another plugin's task)."""


@hookspec
def textlab_datasets():  # type: ignore[empty-body]
    """Return a list of `DatasetSpec`: named data sources for `--data NAME`."""


@hookspec
def textlab_metrics():  # type: ignore[empty-body]
    """Return a list of `MetricSpec`: metric names, functions and their direction."""


@hookspec
def textlab_loggers():  # type: ignore[empty-body]
    """Return a list of `LoggerSpec`: where metrics go besides metrics.jsonl."""


@hookspec
def textlab_embedders():  # type: ignore[empty-body]
    """Return a list of `EmbedderSpec`: ways to learn word vectors from text (for other tasks)."""
