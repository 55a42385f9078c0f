"""Errors a user can cause. Each becomes one red line on stderr and a non-zero exit.

`TEXTLAB_DEBUG=1` shows the traceback instead.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most `limit` characters), or its type's name."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0].strip()
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:(") + "…"


class TextlabError(Exception):
    """Base class: a problem the user can fix. Exit code 1 unless a subclass says otherwise."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The one line shown to the user."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(TextlabError):
    """Unknown task, verb, option or value; a word not in the vocabulary."""

    exit_code = 2


class DataError(TextlabError):
    """Missing, unreachable or malformed data."""

    exit_code = 2


class CheckpointError(TextlabError):
    """A checkpoint that is missing, corrupt, truncated, foreign or from another task."""

    exit_code = 1


class PluginError(TextlabError):
    """A plugin that registers something wrongly (for example a name another plugin owns)."""

    exit_code = 1


class WriteError(TextlabError, OSError):
    """A file that could not be written (a full disk, no permission, a read-only folder).

    Also an OSError, so code that handles OSError still catches it; its line names the file."""

    exit_code = 1
