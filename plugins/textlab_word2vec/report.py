"""Small tables and number formats shared by the verbs' reports."""

from __future__ import annotations

import textlab


def kv_table(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column table (name, value) on stdout (rank 0's only, under torchrun)."""
    from rich.table import Table

    if not textlab.distributed.is_main():
        return
    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    textlab.show(t)


def public(info: dict) -> dict:
    """A step's info without its bookkeeping keys."""
    return {k: v for k, v in info.items() if k not in ("step", "version")}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
