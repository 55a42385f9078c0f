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
    """A handle on one progress bar: `advance(n, loss=...)`, `set(**info)`, `update(completed=)`.

    In a terminal it drives a rich bar. Elsewhere (a SLURM log, `| tee`, CI) it prints one plain
    line each time another tenth of the work is done (`plain`), or nothing (`plain=False`: the
    training engine prints one line per evaluation instead)."""

    def __init__(self, progress: Progress | None, task_id: Any, *, description: str = "", total: float | None = None,
                 unit: str = "it", plain: bool = False):
        self._progress = progress
        self._task = task_id
        self._info: dict[str, Any] = {}
        self.description, self.total, self.unit, self.plain = description, total, unit, plain
        self.completed = 0.0
        self._t0 = time.perf_counter()
        self._next_tenth = 1
        self._next_time = self._t0 + 60.0

    def advance(self, n: float = 1, **info: Any) -> None:
        if info:
            self._info.update(info)
        self.completed += n
        if self._progress is not None:
            self._progress.update(self._task, advance=n, info=_fmt_info(self._info))
        elif self.plain:
            self._plain_line()

    def set(self, **info: Any) -> None:
        self._info.update(info)
        if self._progress is not None:
            self._progress.update(self._task, info=_fmt_info(self._info))

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if self._progress is not None:
            kwargs = {k: v for k, v in (("completed", completed), ("total", total)) if v is not None}
            self._progress.update(self._task, **kwargs)

    def _plain_line(self) -> None:
        now = time.perf_counter()
        if self.total:
            tenth = int(10 * self.completed / self.total)
            if tenth < self._next_tenth:
                return
            self._next_tenth = tenth + 1
        elif now < self._next_time:  # no total: a line a minute
            return
        self._next_time = now + 60.0
        status(plain_progress(self.description, self.completed, self.total, now - self._t0, self.unit,
                              _fmt_info(self._info)))


def plain_progress(label: str, done: float, total: float | None, seconds: float, unit: str, info: str = "") -> str:
    """`prep: 40% (4,000/10,000 lines), 1.2k lines/s, elapsed 3s, eta 5s`: a progress line for logs."""
    rate = done / seconds if seconds > 0 else None
    parts = [f"{label}: " + (f"{100 * done / total:.0f}% ({done:,.0f}/{total:,.0f} {unit})" if total
                             else f"{done:,.0f} {unit}")]
    if rate:
        parts.append(f"{si(rate)} {unit}/s")
    parts.append(f"elapsed {duration(seconds)}")
    if total and rate and done < total:
        parts.append(f"eta {duration((total - done) / rate)}")
    return ", ".join(parts) + (f" ({info})" if info else "")


def duration(seconds: float) -> str:
    """4s, 3m05s, 2h10m: short durations for progress lines."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _fmt_info(info: dict[str, Any]) -> str:
    parts = []
    for k, v in info.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def progress_enabled() -> bool:
    """Progress is shown on rank 0, unless TEXTLAB_PROGRESS=0 (the tests) or quiet."""
    return _is_main() and os.environ.get("TEXTLAB_PROGRESS", "1") != "0" and not _state["quiet"]


def is_terminal() -> bool:
    return bool(err.is_terminal)


@contextlib.contextmanager
def progress(total: float | None, description: str, unit: str = "it", *, enabled: bool | None = None,
             plain: bool = True) -> Iterator[Bar]:
    """A rich progress bar on stderr with rate and ETA in a terminal; plain lines every 10% of the work
    elsewhere (`plain=False`: none). Off on non-zero ranks and with TEXTLAB_PROGRESS=0."""
    if enabled is None:
        enabled = progress_enabled()
    if not enabled or not is_terminal():
        yield Bar(None, None, description=description, total=total, unit=unit, plain=enabled and plain)
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
        yield Bar(prog, task_id, description=description, total=total, unit=unit)


class Timer:
    """Wall-clock seconds, with the load average at start and end (timings on a shared box)."""

    def __enter__(self) -> "Timer":
        self.load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
