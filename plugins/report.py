"""The cost report of ``lexibatch cost``: what was spent, by mode, task and model."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from decimal import Decimal

from plugins.store import CostRow
from providers.money import format_usd, to_decimal, usd_sum

__all__ = ["print_cost_report", "spent_line", "summary_line"]


def spent_line(rows: Sequence[CostRow]) -> str:
    """``$0.0123 for 53 paid calls (+2 unpriced)``: what ``rows`` of the ledger add up to."""
    calls = sum(r.requests for r in rows)
    unpriced = sum(r.unpriced for r in rows)
    more = f" (+{unpriced} unpriced)" if unpriced else ""
    noun = "call" if calls == 1 else "calls"
    return f"{format_usd(usd_sum(r.cost_usd for r in rows))} for {calls:,} paid {noun}{more}"


def summary_line(rows: Sequence[CostRow]) -> str:
    """The total of ``rows`` by mode, and the saving against immediate calls."""
    spent = usd_sum(r.cost_usd for r in rows)
    immediate = usd_sum(r.immediate_cost_usd for r in rows)
    by_mode: dict[str, Decimal] = {}
    for r in rows:
        by_mode[r.mode] = by_mode.get(r.mode, Decimal(0)) + to_decimal(r.cost_usd)
    modes = ", ".join(f"{m} {format_usd(c)}" for m, c in sorted(by_mode.items()))
    return (
        f"total {format_usd(spent)} for {sum(r.requests for r in rows):,} paid calls ({modes}); "
        f"the same work immediately: {format_usd(immediate)}; "
        f"saved {format_usd(immediate - spent)}"
    )


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
        "calls",
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
            format_usd(row.cost_usd).lstrip("$"),
            format_usd(row.immediate_cost_usd).lstrip("$"),
            str(row.unpriced),
        )
    console.print(table)
    console.print(summary_line(rows))
    unpriced = sum(r.unpriced for r in rows)
    if unpriced:
        console.print(f"{unpriced} calls on unpriced models are not counted")
