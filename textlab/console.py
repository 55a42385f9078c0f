"""Where output goes: results to stdout, progress and status to stderr.

In `--json` mode the rich tables a verb would print are suppressed and the verb's return value
is printed as JSON instead (by the CLI), so scripts get exactly one parseable document.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

def _width(stream: object) -> int | None:
    """Wide output when piped to a file or CI log (rich would default to 80 columns)."""
    if os.environ.get("COLUMNS"):
        return None
    isatty = getattr(stream, "isatty", None)
    return None if isatty and isatty() else 160


class _Console(Console):
    """A rich console that survives its reader going away.

    rich exits the program (SystemExit 1) when a pipe it writes to breaks; with `textlab train ... |
    tee log`, the Ctrl-C that stops training also kills `tee`, and that exit would mark the run
    failed instead of letting it save last.pt and end interrupted. Here the console falls silent."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.file.fileno())
        except (OSError, ValueError, AttributeError):
            pass


out = _Console(soft_wrap=False, width=_width(sys.stdout))
err = _Console(stderr=True, soft_wrap=False, width=_width(sys.stderr))

_state = {"json": False, "quiet": False}


@contextlib.contextmanager
def to_stderr() -> Iterator[None]:
    """Results printed inside go to stderr (a step of a larger command: its tables are progress)."""
    saved = out.file
    out.file = sys.stderr
    try:
        yield
    finally:
        out.file = saved


def set_json(enabled: bool) -> None:
    _state["json"] = enabled


def json_mode() -> bool:
    return _state["json"]


def show(*renderables: Any) -> None:
    """Print a result (table, text) to stdout, unless the command runs with --json (rank 0 only)."""
    if not _state["json"] and _is_main():
        out.print(*renderables)


def status(message: str) -> None:
    """A status line on stderr (suppressed on non-zero ranks)."""
    if _is_main() and not _state["quiet"]:
        err.print(f"[dim]{escape(message)}[/dim]", highlight=False)  # a path like "news [final]" is not markup


def warn(message: str) -> None:
    if _is_main():
        err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def error_line(message: str) -> None:
    """The one red line of a failed command (rank 0 only: under torchrun every rank would repeat it)."""
    if not _is_main() and not os.environ.get("TEXTLAB_DEBUG"):
        return
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def si(value: float, digits: int = 3) -> str:
    """1234567 -> '1.23M'."""
    if value is None or not math.isfinite(value):
        return "?"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits - 1}g}{unit}" if value / scale < 10 else f"{value / scale:.{max(digits - 2, 0)}f}{unit}"
    return f"{value:.{digits}g}"


class RateColumn(ProgressColumn):
    """Items per second with a unit: `12.3k tok/s`."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "it")
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"? {unit}/s", style="progress.data.speed")
        return Text(f"{si(speed)} {unit}/s", style="progress.data.speed")


class Bar:
    """A handle on one progress bar: `advance(n, loss=...)`, `set(**info)`."""

    def __init__(self, progress: Progress | None, task_id: Any):
        self._progress = progress
        self._task = task_id
        self._info: dict[str, Any] = {}

    def advance(self, n: float = 1, **info: Any) -> None:
        if info:
            self._info.update(info)
        if self._progress is not None:
            self._progress.update(self._task, advance=n, info=_fmt_info(self._info))

    def set(self, **info: Any) -> None:
        self._info.update(info)
        if self._progress is not None:
            self._progress.update(self._task, info=_fmt_info(self._info))

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        if self._progress is not None:
            kwargs = {k: v for k, v in (("completed", completed), ("total", total)) if v is not None}
            self._progress.update(self._task, **kwargs)


def _fmt_info(info: dict[str, Any]) -> str:
    parts = []
    for k, v in info.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


@contextlib.contextmanager
def progress(total: float | None, description: str, unit: str = "it", *, enabled: bool | None = None) -> Iterator[Bar]:
    """A rich progress bar on stderr with rate and ETA. Off on non-zero ranks and with TEXTLAB_PROGRESS=0."""
    if enabled is None:
        enabled = _is_main() and os.environ.get("TEXTLAB_PROGRESS", "1") != "0" and not _state["quiet"]
    if not enabled:
        yield Bar(None, None)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=20),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}" if total else "{task.completed:,.0f}"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=err, transient=False, refresh_per_second=4) as prog:
        task_id = prog.add_task(description, total=total, unit=unit, info="")
        yield Bar(prog, task_id)


class Timer:
    """Wall-clock seconds, with the load average at start and end (timings on a shared box)."""

    def __enter__(self) -> "Timer":
        self.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
