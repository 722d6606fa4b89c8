"""The cost report of ``lexibatch cost``: what was spent, by mode, task and model."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from plugins.store import CostRow

__all__ = ["print_cost_report"]


def print_cost_report(rows: Sequence[CostRow]) -> None:
    """Print a table of the ledger and the saving against immediate mode."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=120)
    if not rows:
        console.print("no paid calls recorded yet")
        return
    table = Table(title="cost by mode, task and model")
    for column in (
        "mode",
        "task",
        "model",
        "requests",
        "input tok",
        "output tok",
        "cost $",
        "immediate $",
        "unpriced",
    ):
        table.add_column(
            column, justify="right" if column[0] in "rciou" and column not in ("mode",) else "left"
        )
    for row in rows:
        table.add_row(
            row.mode,
            row.task or "-",
            row.model,
            f"{row.requests:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.cost_usd:.4f}",
            f"{row.immediate_cost_usd:.4f}",
            str(row.unpriced),
        )
    console.print(table)
    spent = sum(r.cost_usd for r in rows)
    immediate = sum(r.immediate_cost_usd for r in rows)
    by_mode: dict[str, float] = {}
    for r in rows:
        by_mode[r.mode] = by_mode.get(r.mode, 0.0) + r.cost_usd
    modes = ", ".join(f"{m} ${c:.4f}" for m, c in sorted(by_mode.items()))
    console.print(
        f"total ${spent:.4f} ({modes}); the same work immediately: ${immediate:.4f}; "
        f"saved ${immediate - spent:.4f}"
    )
    unpriced = sum(r.unpriced for r in rows)
    if unpriced:
        console.print(f"{unpriced} calls on unpriced models are not counted")
