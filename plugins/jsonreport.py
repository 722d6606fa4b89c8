"""The journal's batches and the ledger's spend as JSON: what ``lexibatch serve`` answers.

Money is an exact decimal string (``"0.00001215"``), never a float with
binary noise; times are epoch seconds and ISO 8601 (UTC) side by side.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from plugins.store import Store
from providers.money import format_usd, to_decimal, usd_sum

__all__ = ["batches_json", "cost_json"]

# The provider's raw batch object is its own business, and large.
_LEFT_OUT = frozenset({"raw"})
_JSON_TYPES = (str, int, float, bool, dict, list, type(None))


def _usd(value: Any) -> str:
    """An amount as a plain decimal string, to a hundred-millionth of a cent."""
    exact = round(to_decimal(value), 10)
    return format(exact.normalize(), "f") if exact else "0"


def _iso(epoch: float) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


def batches_json(store: Store) -> dict[str, Any]:
    """Every journaled shard (with its provider batch), newest first."""
    shards = sorted(store.shards(), key=lambda s: s.created_at, reverse=True)
    rows = []
    for shard in shards:
        row = {k: v for k, v in dataclasses.asdict(shard).items() if k not in _LEFT_OUT}
        row = {k: v if isinstance(v, _JSON_TYPES) else str(v) for k, v in row.items()}
        row["created"] = _iso(shard.created_at)
        row["updated"] = _iso(shard.updated_at)
        rows.append(row)
    return {"batches": rows}


def cost_json(store: Store) -> dict[str, Any]:
    """The ledger by mode, task and model, with totals and the saving against immediate."""
    report = store.cost_report()
    rows = [
        {
            "mode": r.mode,
            "task": r.task,
            "model": r.model,
            "calls": r.requests,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "cost_usd": _usd(r.cost_usd),
            "immediate_cost_usd": _usd(r.immediate_cost_usd),
            "unpriced": r.unpriced,
        }
        for r in report
    ]
    spent = usd_sum(r.cost_usd for r in report)
    immediate = usd_sum(r.immediate_cost_usd for r in report)
    return {
        "rows": rows,
        "calls": sum(r.requests for r in report),
        "cost_usd": _usd(spent),
        "immediate_cost_usd": _usd(immediate),
        "saved_usd": _usd(immediate - spent),
        "cost": format_usd(spent),
        "saved": format_usd(immediate - spent),
    }
