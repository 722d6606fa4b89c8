"""The cost report of ``lexibatch cost``: what was spent, by mode, task and model."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from plugins.store import CostRow
from providers.money import format_usd, to_decimal, usd_sum

__all__ = ["spent_line", "summary_line"]


def spent_line(rows: Sequence[CostRow], timed_out: int = 0) -> str:
    """``$0.0123 for 53 paid calls, 2 of them unpriced``: what ``rows`` of the ledger add up to.

    ``timed_out``: calls sent whose answer did not come in time, which the
    provider may bill though the ledger cannot price them; said after the rest.
    """
    calls = sum(r.requests for r in rows)
    unpriced = sum(r.unpriced for r in rows)
    more = f", {unpriced:,} of them unpriced" if unpriced else ""
    noun = "call" if calls == 1 else "calls"
    late = (
        f"; {timed_out:,} more timed out, which the provider may bill as well" if timed_out else ""
    )
    spent = format_usd(usd_sum(r.cost_usd for r in rows))
    return f"{spent} for {calls:,} paid {noun}{more}{late}"


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
