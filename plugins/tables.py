"""The reports people read: journaled batches and spend, as terminal tables and as JSON.

``lexibatch batches list/show`` and ``lexibatch cost`` print what this module
builds. Times are shown in the local time zone with their age; money goes
through :mod:`providers.money`, so a table never shows float noise and JSON
keeps exact decimal strings.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from providers.money import format_usd, to_decimal, usd_json, usd_sum

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from plugins.store import Shard, Store
    from providers.types import BatchInfo

__all__ = [
    "BatchView",
    "ProviderCostRow",
    "age",
    "batch_detail",
    "batch_json",
    "batch_views",
    "batches_table",
    "cost_json",
    "cost_rows",
    "cost_table",
    "local_time",
    "stdout_console",
]

# Wide enough for the batches table when the output is a file or a pipe.
_PIPE_WIDTH = 200


def stdout_console() -> Console:
    """A console on stdout: the terminal's width, or a wide page when piped to a file."""
    import sys

    from rich.console import Console

    console = Console(file=sys.stdout)
    if not console.is_terminal:
        console = Console(file=sys.stdout, width=_PIPE_WIDTH)
    return console


def local_time(ts: float | None) -> str:
    """``2026-12-06 04:31:07`` in the local time zone; ``-`` when there is no time."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float) -> str:
    """A duration as people say it: ``42s``, ``3m 05s``, ``2h 14m``, ``3d 4h``."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


# --------------------------------------------------------------------------- batches


@dataclasses.dataclass(frozen=True, slots=True)
class BatchView:
    """One journaled shard with what the ledger says it cost.

    Attributes:
        shard: the journaled shard.
        paid: the ledger's calls answered through its batch.
        cost_usd: what those calls cost (exact).
        unpriced: those of its calls whose model has no price.
    """

    shard: Shard
    paid: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0

    @property
    def done(self) -> tuple[int, int]:
        """``(succeeded, failed)`` as the provider last reported them.

        A batch failed whole (the journal's ``failed``: the provider rejected
        it, and counts none of its requests) has failed every request it did
        not answer.
        """
        counts = self.shard.counts or {}
        succeeded, failed = int(counts.get("succeeded", 0)), int(counts.get("failed", 0))
        if self.shard.state == "failed":
            failed = max(failed, self.shard.requests - succeeded)
        return succeeded, failed

    @property
    def status(self) -> str:
        """The provider's last status, else the journal's state."""
        return self.shard.batch_status or self.shard.state


def batch_views(store: Store, shards: Sequence[Shard]) -> list[BatchView]:
    """``shards`` with their cost from the usage ledger."""
    costs = (
        {k: (n, to_decimal(c), u) for k, (n, c, u) in store.batch_costs().items()}
        if any(s.batch_id for s in shards)
        else {}
    )
    views = []
    for shard in shards:
        calls, spent, unpriced = costs.get(shard.batch_id or "", (0, Decimal(0), 0))
        views.append(BatchView(shard, calls, spent, unpriced))
    return views


def _state_style(status: str) -> str:
    if status in ("completed", "collected", "ended"):
        return "green"
    if status in ("failed", "expired", "cancelled", "canceled"):
        return "red"
    if status in ("cancelling", "canceling"):
        return "yellow"
    return "cyan"


def batches_table(views: Sequence[BatchView], *, now: float | None = None) -> Table:
    """The table of ``lexibatch batches list``: one row per journaled batch, oldest first."""
    from rich.table import Table

    now = time.time() if now is None else now
    table = Table(title="batches in the journal", title_justify="left")
    # The id in full whatever the width: it is what the other commands take.
    longest = max((len(v.shard.batch_id or v.shard.shard_id) + 2 for v in views), default=5)
    table.add_column("batch", no_wrap=True, min_width=longest)
    for name, justify in (
        ("provider", "left"),
        ("model", "left"),
        ("journal", "left"),
        ("status", "left"),
        ("requests", "right"),
        ("done", "right"),
        ("failed", "right"),
        ("cost", "right"),
        ("created", "left"),
        ("age", "right"),
        ("updated", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for view in views:
        s = view.shard
        succeeded, failed = view.done
        table.add_row(
            s.batch_id or f"({s.shard_id})",
            s.provider,
            s.model,
            s.state,
            f"[{_state_style(view.status)}]{s.batch_status or '-'}[/]",
            f"{s.requests:,}",
            f"{succeeded:,}",
            f"{failed:,}" if failed else "-",
            format_usd(view.cost_usd) if view.paid else "-",
            local_time(s.created_at),
            age(now - s.created_at) if s.created_at else "-",
            f"{age(now - s.updated_at)} ago" if s.updated_at else "-",
        )
    spent = usd_sum(v.cost_usd for v in views)
    table.caption = (
        f"{len(views)} batches, {sum(v.shard.requests for v in views):,} requests, "
        f"{format_usd(spent)} spent through them"
    )
    table.caption_justify = "left"
    return table


def batch_detail(
    view: BatchView, now_info: BatchInfo | None = None, *, now: float | None = None
) -> RenderableType:
    """The page of ``lexibatch batches show``: the journal's fields and the provider's view now."""
    from rich.table import Table

    now = time.time() if now is None else now
    s = view.shard
    succeeded, failed = view.done
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str]] = [
        ("batch", s.batch_id or "- (never reached the provider)"),
        ("shard", s.shard_id),
        ("provider", s.provider),
        ("model", s.model),
        ("round", str(s.round)),
        ("journal state", s.state),
        ("provider status", s.batch_status or "-"),
        ("requests", f"{s.requests:,} ({s.bytes:,} bytes)"),
        ("done", f"{succeeded:,} succeeded, {failed:,} failed"),
        ("cost", _cost_text(view)),
        ("created", f"{local_time(s.created_at)} ({age(now - s.created_at)} ago)"),
        ("updated", f"{local_time(s.updated_at)} ({age(now - s.updated_at)} ago)"),
        ("input file", s.input_file_id or "-"),
        ("local file", s.path or "-"),
    ]
    if s.error:
        rows.append(("error", f"[red]{s.error}[/]"))
    if now_info is not None:
        rows.append(
            (
                "provider now",
                f"{now_info.state.value}, {now_info.succeeded:,}/{now_info.total:,} succeeded, "
                f"{now_info.failed:,} failed",
            )
        )
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _cost_text(view: BatchView) -> str:
    if not view.paid:
        return "- (nothing collected yet)"
    more = f" (+{view.unpriced} unpriced)" if view.unpriced else ""
    return f"{format_usd(view.cost_usd)} for {view.paid:,} paid calls{more}"


def batch_json(
    view: BatchView, now_info: BatchInfo | None = None, *, raw: bool = True
) -> dict[str, Any]:
    """One batch for machines: the journal's fields, ISO times, and cost as a decimal string.

    ``raw=False`` leaves out the provider's own batch object (the list's rows).
    """
    s = view.shard
    out: dict[str, Any] = dataclasses.asdict(s)
    if not raw:
        del out["raw"]
    for field in ("created_at", "updated_at"):
        ts = out[field]
        out[field] = datetime.fromtimestamp(ts).astimezone().isoformat() if ts else None
    out["paid_calls"] = view.paid
    out["cost_usd"] = usd_json(view.cost_usd)
    out["unpriced"] = view.unpriced
    if now_info is not None:
        out["provider_now"] = {
            "state": now_info.state.value,
            "total": now_info.total,
            "succeeded": now_info.succeeded,
            "failed": now_info.failed,
        }
    return out


# --------------------------------------------------------------------------- cost


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderCostRow:
    """Spend of one provider, mode, task and model (money exact).

    Attributes:
        provider: the provider's registered name.
        mode: ``immediate`` or ``batch``.
        task: the task tag (``None``: untagged).
        model: the model billed.
        calls: paid calls.
        input_tokens: input tokens, summed.
        output_tokens: output tokens, summed.
        cost_usd: what the priced calls cost.
        immediate_usd: what they would have cost immediately.
        unpriced: calls whose model has no price.
    """

    provider: str
    mode: str
    task: str | None
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    immediate_usd: Decimal
    unpriced: int

    @property
    def saving_usd(self) -> Decimal:
        """What running these calls this way saved against immediate mode."""
        return self.immediate_usd - self.cost_usd


def cost_rows(store: Store, since: float | None = None) -> list[ProviderCostRow]:
    """The usage ledger grouped by provider, mode, task and model."""
    return [
        ProviderCostRow(
            provider=r[0],
            mode=r[1],
            task=r[2],
            model=r[3],
            calls=int(r[4]),
            input_tokens=int(r[5]),
            output_tokens=int(r[6]),
            cost_usd=to_decimal(r[7]),
            immediate_usd=to_decimal(r[8]),
            unpriced=int(r[9]),
        )
        for r in store.cost_by_provider(since)
    ]


def _saving(row_cost: Decimal, immediate: Decimal) -> str:
    saved = immediate - row_cost
    if not saved:
        return "-"
    share = f" ({saved / immediate:.0%})" if immediate else ""
    return f"{format_usd(saved)}{share}"


def cost_table(rows: Sequence[ProviderCostRow]) -> Table:
    """The table of ``lexibatch cost``, with a total line and the saving against immediate."""
    from rich.table import Table

    table = Table(
        title="spend by provider, mode, task and model", title_justify="left", show_footer=True
    )
    spent = usd_sum(r.cost_usd for r in rows)
    immediate = usd_sum(r.immediate_usd for r in rows)
    unpriced = sum(r.unpriced for r in rows)
    footer = {
        "provider": "total",
        "calls": f"{sum(r.calls for r in rows):,}",
        "input tok": f"{sum(r.input_tokens for r in rows):,}",
        "output tok": f"{sum(r.output_tokens for r in rows):,}",
        "cost": format_usd(spent),
        "immediately": format_usd(immediate),
        "saved": _saving(spent, immediate),
        "unpriced": str(unpriced) if unpriced else "",
    }
    for name in (
        "provider",
        "mode",
        "task",
        "model",
        "calls",
        "input tok",
        "output tok",
        "cost",
        "immediately",
        "saved",
        "unpriced",
    ):
        left = name in ("provider", "mode", "task", "model")
        table.add_column(name, footer=footer.get(name, ""), justify="left" if left else "right")
    for r in rows:
        table.add_row(
            r.provider,
            r.mode,
            r.task or "-",
            r.model,
            f"{r.calls:,}",
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            format_usd(r.cost_usd),
            format_usd(r.immediate_usd),
            _saving(r.cost_usd, r.immediate_usd),
            str(r.unpriced) if r.unpriced else "-",
        )
    if unpriced:
        table.caption = f"{unpriced} calls on unpriced models are not counted in the cost"
        table.caption_justify = "left"
    return table


def cost_json(rows: Sequence[ProviderCostRow]) -> dict[str, Any]:
    """The cost report for machines: rows and totals, money as exact decimal strings."""
    spent = usd_sum(r.cost_usd for r in rows)
    immediate = usd_sum(r.immediate_usd for r in rows)
    return {
        "rows": [
            {
                "provider": r.provider,
                "mode": r.mode,
                "task": r.task,
                "model": r.model,
                "calls": r.calls,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cost_usd": usd_json(r.cost_usd),
                "immediate_cost_usd": usd_json(r.immediate_usd),
                "saved_usd": usd_json(r.saving_usd),
                "unpriced": r.unpriced,
            }
            for r in rows
        ],
        "total": {
            "calls": sum(r.calls for r in rows),
            "cost_usd": usd_json(spent),
            "immediate_cost_usd": usd_json(immediate),
            "saved_usd": usd_json(immediate - spent),
            "unpriced": sum(r.unpriced for r in rows),
        },
    }
