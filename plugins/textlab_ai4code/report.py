"""Rich tables of the metrics (per notebook-length bucket)."""

from __future__ import annotations

import textlab

COLUMNS = (("kendall_tau", "Kendall tau"), ("mean_tau", "mean tau"), ("spearman", "Spearman"),
           ("gap_accuracy", "right gap"), ("position_mae", "pos. MAE"))


def show_metrics(metrics: dict, title: str) -> None:
    """One row per notebook-length bucket (cells per notebook), then all notebooks."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("cells per notebook")
    t.add_column("notebooks", justify="right")
    for _, label in COLUMNS:
        t.add_column(label, justify="right")
    for bucket, m in metrics.items():
        style = "bold" if bucket == "all" else None
        t.add_row(bucket, f"{m['notebooks']:,}", *(_fmt(m.get(k)) for k, _ in COLUMNS), style=style)
    textlab.show(t)
    textlab.show("[dim]Kendall tau: pooled inversions, as Kaggle scored; mean tau: per notebook; right gap: share of "
                 "markdown cells between the right two code cells; pos. MAE: mean |position error| of markdown, in cells[/dim]")


def _fmt(value) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
