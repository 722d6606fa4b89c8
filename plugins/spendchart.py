"""Spend over time, drawn in the terminal: ``lexibatch cost --chart``.

The ledger's calls are summed into buckets (a minute up to a week) chosen so
the whole history fits in at most :data:`MAX_BUCKETS` rows, and each bucket
is one horizontal bar of block characters, eighths included, scaled to the
busiest bucket. Buckets are aligned to the local clock (an "hour" starts at
``:00``, a "day" at local midnight); empty ones between are drawn empty, so
the time axis reads straight.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from providers.money import format_usd, to_decimal

if TYPE_CHECKING:
    from rich.console import RenderableType

    from plugins.store import Store

__all__ = ["BUCKETS", "MAX_BUCKETS", "SpendBucket", "bucket_size", "spend_buckets", "spend_chart"]

#: Bucket sizes tried, smallest first, with how a bucket's start is labelled.
BUCKETS: tuple[tuple[int, str, str], ...] = (
    (60, "minute", "%m-%d %H:%M"),
    (5 * 60, "5 minutes", "%m-%d %H:%M"),
    (15 * 60, "15 minutes", "%m-%d %H:%M"),
    (3600, "hour", "%m-%d %H:00"),
    (6 * 3600, "6 hours", "%m-%d %H:00"),
    (86400, "day", "%a %Y-%m-%d"),
    (7 * 86400, "week", "wk of %Y-%m-%d"),
)

#: At most this many bars: a chart taller than a screen is not read.
MAX_BUCKETS = 40

_EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclasses.dataclass(frozen=True, slots=True)
class SpendBucket:
    """What was spent in one bucket of time.

    Attributes:
        start: the bucket's first second (Unix time).
        cost_usd: the priced calls' cost in it.
        calls: paid calls in it.
    """

    start: float
    cost_usd: Decimal
    calls: int


def bucket_size(span: float) -> tuple[int, str, str]:
    """The smallest of :data:`BUCKETS` that shows ``span`` seconds in :data:`MAX_BUCKETS` bars."""
    for size, name, fmt in BUCKETS:
        if span / size < MAX_BUCKETS:
            return size, name, fmt
    return BUCKETS[-1]


def _offset() -> int:
    # Local clock alignment: a day bucket starts at local midnight.
    return int(time.localtime().tm_gmtoff)


def spend_buckets(store: Store, since: float | None = None) -> tuple[list[SpendBucket], str, str]:
    """The ledger summed by bucket (gaps filled), the bucket's name, and its label format."""
    span = store.call_span(since)
    if span is None:
        return [], "", ""
    size, name, fmt = bucket_size(span[1] - span[0])
    offset = _offset()
    found = {
        b: (to_decimal(cost), calls)
        for b, (cost, calls) in store.spend_by_bucket(size, offset, since).items()
    }
    low, high = min(found), max(found)
    buckets = [
        SpendBucket(b * size - offset, *found.get(b, (Decimal(0), 0))) for b in range(low, high + 1)
    ]
    return buckets, name, fmt


def _bar(value: Decimal, peak: Decimal, width: int) -> str:
    if peak <= 0 or value <= 0:
        return ""
    eighths = int(value / peak * width * 8)
    # A real spend always shows: at least a sliver.
    eighths = max(eighths, 1)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def spend_chart(
    buckets: Sequence[SpendBucket], name: str, fmt: str, *, width: int = 40
) -> RenderableType:
    """Horizontal bars, one per bucket: its local start, the bar, the amount and the calls."""
    from rich.table import Table

    peak = max((b.cost_usd for b in buckets), default=Decimal(0))
    table = Table.grid(padding=(0, 1))
    table.title = f"spend per {name} (local time)" if buckets else None
    table.title_justify = "left"
    table.add_column(style="dim")
    table.add_column(width=width, no_wrap=True, style="green")
    table.add_column(justify="right")
    table.add_column(justify="right", style="dim")
    for b in buckets:
        label = datetime.fromtimestamp(b.start).strftime(fmt)
        calls = f"{b.calls:,} call" + ("" if b.calls == 1 else "s") if b.calls else ""
        table.add_row(
            label,
            _bar(b.cost_usd, peak, width),
            format_usd(b.cost_usd) if b.calls else "",
            calls,
        )
    return table
