"""The cost ledger: one row per paid call, and the cost report that sums them.

``calls``
    the usage ledger, one row per paid call (never for a cache hit), which
    the cost report sums.

What a call costs, and writing its row together with its cached answer, is
:mod:`plugins.ledger`'s job; this module only stores the rows and sums them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from plugins.store.keys import key_cell
from plugins.store.refs import RefTables
from plugins.store.rows import CallRecord, CostRow
from providers.types import Usage

__all__ = ["CostTables"]

# A cost report's sums over the calls it covers (see CostTables.cost_report).
_SUMS = (
    "COUNT(*), TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cached_tokens), "
    "TOTAL(reasoning_tokens), TOTAL(cost_usd), "
    "TOTAL(COALESCE(immediate_cost_usd, CASE WHEN mode = 'immediate' THEN cost_usd END)), "
    "TOTAL(cost_usd IS NULL)"
)


def _cost_row(r: Any) -> CostRow:
    return CostRow(
        mode=r[0],
        task=r[1],
        model=r[2],
        requests=int(r[3]),
        input_tokens=int(r[4]),
        output_tokens=int(r[5]),
        cached_tokens=int(r[6]),
        reasoning_tokens=int(r[7]),
        cost_usd=float(r[8]),
        immediate_cost_usd=float(r[9]),
        unpriced=int(r[10]),
    )


class CostTables(RefTables):
    """The ``calls`` table (a mixin of :class:`~plugins.store.Store`)."""

    def record_calls(self, rows: Iterable[CallRecord], *, run_id: str | None = None) -> int:
        """Record paid calls in the usage ledger; returns how many were recorded.

        ``run_id``: the run that paid for them, when another than this store's
        (answers an earlier run kept aside, stored now); it is added to the
        runs if new.
        """
        now = time.time()
        calls = list(rows)
        if not calls:
            return 0

        def run() -> int:
            refs = self._batch_refs(c.batch_id for c in calls)
            run_ref = self._run_ref(run_id)
            # Unpacked, not read by field name: this runs once per paid call.
            values = [
                (
                    provider,
                    model,
                    task,
                    mode,
                    cell or key_cell(key),
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cached_tokens,
                    usage.reasoning_tokens,
                    usage.cache_creation_tokens,
                    cost,
                    immediate,
                    refs[batch],
                    now if ts is None else ts,
                    run_ref,
                )
                for (
                    provider,
                    model,
                    task,
                    mode,
                    key,
                    usage,
                    cost,
                    immediate,
                    batch,
                    ts,
                    cell,
                ) in calls
            ]
            return self._execute_many(
                "INSERT INTO calls (provider, model, task, mode, key, input_tokens, "
                "output_tokens, cached_tokens, reasoning_tokens, cache_creation_tokens, "
                "cost_usd, immediate_cost_usd, batch, ts, run) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                values,
            )

        return self._write(run)

    def batch_usage(self, batch_id: str) -> tuple[int, Usage]:
        """The ledger's calls of one provider batch: how many, and their tokens summed."""
        ref = self._batch_ref(batch_id)
        if ref is None:
            return 0, Usage()
        rows = self._read(
            "SELECT COUNT(*), TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cached_tokens), "
            "TOTAL(reasoning_tokens), TOTAL(cache_creation_tokens) FROM calls "
            "WHERE batch = ? AND batch IS NOT NULL",
            (ref,),
        )
        count, *tokens = rows[0]
        return int(count), Usage(*(int(t) for t in tokens))

    def cost_report(self, since: float | None = None, *, run: str | None = None) -> list[CostRow]:
        """Recorded usage and cost, grouped by mode, task and model.

        Args:
            since: only calls at or after this Unix time.
            run: only calls recorded through the store instance whose
                :attr:`run_id` this is (with ``since``, the scan stays on the time index).

        An immediate call without an ``immediate_cost_usd`` counts its own
        cost as the immediate equivalent. Unpriced calls are counted apart,
        never as free.
        """
        where: list[str] = []
        params: tuple[Any, ...] = ()
        if since is not None:
            where.append("ts >= ?")
            params += (since,)
        if run is not None:
            where.append("run = (SELECT id FROM runs WHERE run_id = ?)")
            params += (run,)
        scope = " WHERE " + " AND ".join(where) if where else ""
        first = self._read(f"SELECT mode, task, model FROM calls{scope} LIMIT 1", params)
        if not first:
            return []
        # Grouping sorts every row, at twice the cost of summing them. The
        # calls of one run most often share one mode, task and model: a scan
        # that stops at the first call of another group finds out, and then
        # they are summed without sorting, in one statement (one snapshot)
        # that also counts the calls of other groups written meanwhile, and
        # is not used if there are any.
        group = (first[0][0], first[0][1], first[0][2])
        other = "(mode IS NOT ? OR task IS NOT ? OR model IS NOT ?)"
        scope_other = f"{scope} AND {other}" if scope else f" WHERE {other}"
        if not self._read(f"SELECT EXISTS(SELECT 1 FROM calls{scope_other})", params + group)[0][0]:
            one = self._read(
                f"SELECT ?, ?, ?, {_SUMS}, TOTAL({other}) FROM calls{scope}",
                group + group + params,
            )[0]
            if not one[-1]:
                return [_cost_row(one)] if one[3] else []
        return [
            _cost_row(r)
            for r in self._read(
                f"SELECT mode, task, model, {_SUMS} FROM calls{scope} "
                "GROUP BY mode, task, model ORDER BY mode, task, model",
                params,
            )
        ]

    def batch_costs(self) -> dict[str, tuple[int, float, int]]:
        """Per provider batch: ``batch id → (paid calls, cost, unpriced calls)``."""
        rows = self._read(
            "SELECT batches.batch_id, n, cost, unpriced FROM (SELECT batch, COUNT(*) AS n, "
            "TOTAL(cost_usd) AS cost, TOTAL(cost_usd IS NULL) AS unpriced FROM calls "
            "WHERE batch IS NOT NULL GROUP BY batch) JOIN batches ON batches.id = batch"
        )
        return {r[0]: (int(r[1]), float(r[2]), int(r[3])) for r in rows}

    def cost_by_provider(self, since: float | None = None) -> list[tuple[Any, ...]]:
        """The ledger by provider, mode, task and model, in that order.

        Each row: ``(provider, mode, task, model, calls, input tokens, output
        tokens, cost, immediate cost, unpriced calls)``, summed as in
        :meth:`cost_report`.
        """
        sql = (
            "SELECT provider, mode, task, model, COUNT(*), TOTAL(input_tokens), "
            "TOTAL(output_tokens), TOTAL(cost_usd), TOTAL(COALESCE(immediate_cost_usd, "
            "CASE WHEN mode = 'immediate' THEN cost_usd END)), TOTAL(cost_usd IS NULL) FROM calls"
        )
        params: tuple[Any, ...] = ()
        if since is not None:
            sql += " WHERE ts >= ?"
            params = (since,)
        sql += " GROUP BY provider, mode, task, model ORDER BY provider, mode, task, model"
        return [tuple(r) for r in self._read(sql, params)]

    def call_span(self, since: float | None = None) -> tuple[float, float] | None:
        """The first and last call's time, or ``None`` when there is none."""
        where, params = ("WHERE ts >= ?", (since,)) if since is not None else ("", ())
        first, last = self._read(f"SELECT MIN(ts), MAX(ts) FROM calls {where}", params)[0]
        return None if first is None else (float(first), float(last))

    def spend_by_bucket(
        self, size: int, offset: int = 0, since: float | None = None
    ) -> dict[int, tuple[float, int]]:
        """Cost and calls per time bucket: ``(ts + offset) // size → (cost, calls)``."""
        where, params = ("WHERE ts >= ?", (since,)) if since is not None else ("", ())
        rows = self._read(
            "SELECT CAST((ts + ?) / ? AS INTEGER) AS b, TOTAL(cost_usd), COUNT(*) FROM calls "
            f"{where} GROUP BY b ORDER BY b",
            (offset, size, *params),
        )
        return {int(b): (float(cost), int(calls)) for b, cost, calls in rows}
