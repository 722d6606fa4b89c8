"""Recording what was paid: the usage ledger and the result cache, in one commit.

A paid answer and its ledger rows are written in one transaction, so a crash
can never leave a result stored without its cost, or a cost without its
result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from plugins.estimate import price_provider
from plugins.store import CallRecord, StoredResult
from providers.pricing import Rates, cost_at
from providers.types import Completion, Mode, Request, Response, Usage

if TYPE_CHECKING:
    from plugins.registry import StrategyContext

__all__ = [
    "Pricer",
    "call_record",
    "paid_rows",
    "record_paid",
    "record_unanswered",
    "stored_result",
]


_Rates = Rates


class Pricer:
    """Prices the calls of one provider: each model's rates are looked up once.

    A batch's results are priced by the tens of thousands; one :class:`Pricer`
    per chunk keeps that to a multiplication per call.
    """

    def __init__(self, context: StrategyContext) -> None:
        self._prices = context.prices
        self._provider = price_provider(context.provider_name)
        self._rates: dict[tuple[str, Mode], tuple[_Rates, _Rates] | None] = {}
        # The last costs worked out, by the identity of their usage: a batch's
        # parser shares one Usage among answers of the same token counts.
        self._last: dict[int, tuple[Usage, str, Mode, tuple[float | None, float | None]]] = {}

    def costs(self, model: str, usage: Usage, mode: Mode) -> tuple[float | None, float | None]:
        """``(cost in mode, cost had it run immediately)``; ``None`` when unpriced."""
        last = self._last.get(id(usage))
        # The entry holds its usage, so its id cannot be another's meanwhile.
        if last is not None and last[0] is usage and last[1] == model and last[2] == mode:
            return last[3]
        both = self._costs(model, usage, mode)
        if len(self._last) >= 4096:
            self._last.clear()
        self._last[id(usage)] = (usage, model, mode, both)
        return both

    def _costs(self, model: str, usage: Usage, mode: Mode) -> tuple[float | None, float | None]:
        key = (model, mode)
        try:
            rates = self._rates[key]
        except KeyError:
            price = self._prices.price(model, self._provider)
            rates = None if price is None else (price.rates(mode), price.rates("immediate"))
            self._rates[key] = rates
        if rates is None:
            return None, None
        cost = cost_at(rates[0], usage)
        return cost, cost if mode == "immediate" else cost_at(rates[1], usage)


def call_record(
    context: StrategyContext,
    request: Request,
    completion: Completion,
    *,
    mode: Mode,
    batch_id: str | None = None,
    pricer: Pricer | None = None,
    ts: float | None = None,
) -> CallRecord:
    """The ledger row of one paid call, priced for ``mode`` and for immediate.

    ``pricer`` and ``ts`` let a caller recording many calls at once share
    the price lookups and the clock reading.
    """
    model = completion.model or request.model
    usage = completion.usage
    cost, immediate = (pricer or Pricer(context)).costs(model, usage, mode)
    return CallRecord(
        context.provider_name,
        model,
        request.task,
        mode,
        request.key,
        usage,
        cost,
        immediate,
        batch_id,
        time.time() if ts is None else ts,
    )


def stored_result(request: Request, response: Response) -> StoredResult:
    """The cache row of a validated response."""
    return StoredResult(
        key=request.key,
        model=response.model,
        task=request.task,
        mode=response.mode,
        text=response.text,
        usage=response.usage,
        cost_usd=response.cost_usd,
        request_id=response.request_id,
        batch_id=response.batch_id,
    )


def record_paid(
    context: StrategyContext,
    request: Request,
    calls: Sequence[Completion],
    *,
    final: Response,
    mode: Mode,
) -> Response:
    """Ledger every paid call and cache the final answer, atomically.

    Returns:
        ``final`` with its cost set to the sum of the calls' costs (``None``
        when any of them is unpriced).
    """
    final, records, result = paid_rows(context, request, calls, final=final, mode=mode)
    store = context.store
    with store.in_transaction():
        store.record_calls(records)
        store.put_results(context.provider_name, [result])
    return final


def paid_rows(
    context: StrategyContext,
    request: Request,
    calls: Sequence[Completion],
    *,
    final: Response,
    mode: Mode,
) -> tuple[Response, list[CallRecord], StoredResult]:
    """What :func:`record_paid` writes: ``final`` priced, its ledger rows, its cache row."""
    records = [call_record(context, request, c, mode=mode) for c in calls]
    total: float | None = 0.0
    for rec in records:
        total = None if total is None or rec.cost_usd is None else total + rec.cost_usd
    final = dataclasses.replace(final, cost_usd=total)
    return final, records, stored_result(request, final)


def record_unanswered(
    context: StrategyContext, request: Request, calls: Sequence[Completion], *, mode: Mode
) -> None:
    """Ledger paid calls that produced no usable answer (e.g. every re-ask failed)."""
    context.store.record_calls(call_record(context, request, c, mode=mode) for c in calls)
