"""The journal's batches and the ledger's spend as JSON: what ``lexibatch serve`` answers.

The same objects ``lexibatch batches list --json`` and ``lexibatch cost
--json`` print (built by :mod:`plugins.tables`), so the service and the
command line never disagree: money as exact decimal strings
(``"0.00001215"``), times in ISO 8601. The cost report also carries its
totals at the top level, with the amounts as a person reads them
(``cost``, ``saved``).
"""

from __future__ import annotations

from typing import Any

from plugins.store import Store
from plugins.tables import batch_json, batch_views, cost_rows
from plugins.tables import cost_json as cost_report_json
from providers.money import format_usd, to_decimal

__all__ = ["batches_json", "cost_json"]


def batches_json(store: Store) -> dict[str, Any]:
    """Every journaled shard (with its provider batch and its cost), newest first."""
    shards = sorted(store.shards(), key=lambda s: s.created_at, reverse=True)
    return {"batches": [batch_json(view, raw=False) for view in batch_views(store, shards)]}


def cost_json(store: Store) -> dict[str, Any]:
    """The ledger by provider, mode, task and model, with its totals and the saving."""
    report = cost_report_json(cost_rows(store))
    total = report["total"]
    return {
        "rows": report["rows"],
        **total,
        "cost": format_usd(to_decimal(total["cost_usd"])),
        "saved": format_usd(to_decimal(total["saved_usd"])),
    }
