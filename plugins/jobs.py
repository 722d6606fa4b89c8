"""``lexibatch run``: provider-neutral requests from a JSONL file, results to a JSONL file.

Input, one request per line, is read and checked by
:func:`plugins.requestfile.read_requests`. Output, one line
per input line, in input order: ``{"id", "key", "status": "succeeded",
"output", "usage", "cost_usd", "mode", "model", "batch_id", "cached"}`` or
``{"id", "key", "status": "failed", "error": {...}}``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from plugins.outfile import write_atomically
from plugins.requestfile import JobItem, read_requests
from plugins.retry import is_unreachable
from providers.errors import ProviderError, StoreWriteError
from providers.money import to_decimal
from providers.types import Request, Response

if TYPE_CHECKING:
    from plugins.connector import LexiConnector

__all__ = ["JobItem", "JobSummary", "read_requests", "run_requests"]


@dataclass
class JobSummary:
    """What a run did."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    #: What the answers written cost (exactly); the ledger also holds failed requests' calls.
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0
    #: The failure that showed the provider could not be reached, if one did.
    unreachable: ProviderError | None = None
    #: Requests that failed because the provider could not be reached.
    not_reached: int = 0


async def run_requests(connector: LexiConnector, items: list[JobItem], out: Path) -> JobSummary:
    """Send every item through the connector (in its current mode); write results in input order.

    The output is written to a temporary file and renamed into place, so an
    interrupted run never leaves a half-written results file; what was paid
    for is in the store and a re-run takes it from there at no cost.

    Raises:
        StoreWriteError: the store or the spool folder could not be written
            (the first such error, once; nothing answered is lost).
        OutputWriteError: ``out`` could not be written (the answers are in the store).
    """
    if connector.batch_mode:
        outcomes = await _gather_batched(connector, [item.request for item in items])
    else:
        coros = [connector.generate(item.request) for item in items]
        outcomes = await asyncio.gather(*coros, return_exceptions=True)
    # The environment failed, not the requests: one error for the run, not one per line.
    for outcome in outcomes:
        if isinstance(outcome, StoreWriteError):
            raise outcome
    summary = JobSummary(total=len(items))
    write_atomically(
        out,
        (
            orjson.dumps(_result_line(item, outcome, summary)) + b"\n"
            for item, outcome in zip(items, outcomes, strict=True)
        ),
    )
    return summary


async def _gather_batched(connector: LexiConnector, requests: list[Request]) -> list[Any]:
    futures: list[asyncio.Future[Response]] = []
    try:
        # A job item's request was checked when its line was read.
        futures = await connector.submit_all(requests, checked=True)
        await connector.execute_batch()
    except BaseException:
        # Dispatching failed: the waiters are stopped and their outcomes read,
        # so none is reported as "never retrieved".
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
        raise
    waiting = [f for f in futures if not f.done()]
    if waiting:
        await asyncio.gather(*waiting, return_exceptions=True)
    return [_outcome(f) for f in futures]


def _outcome(future: asyncio.Future[Response]) -> Any:
    """What ``gather(..., return_exceptions=True)`` gives for a settled future."""
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()


def _result_line(item: JobItem, outcome: Any, summary: JobSummary) -> dict[str, Any]:
    if isinstance(outcome, Response):
        summary.succeeded += 1
        summary.cached += int(outcome.cached)
        if outcome.cost_usd is None:
            summary.unpriced += 1
        else:
            summary.cost_usd += to_decimal(outcome.cost_usd)
        return {
            "id": item.id,
            "key": item.request.key,
            "status": "succeeded",
            "output": outcome.output,
            "usage": outcome.usage.to_dict(),
            "cost_usd": outcome.cost_usd,
            "mode": outcome.mode,
            "model": outcome.model,
            "batch_id": outcome.batch_id,
            "cached": outcome.cached,
        }
    if not isinstance(outcome, Exception):
        # An interrupt or a cancellation: not the request's outcome.
        raise outcome
    # Any other error fails its own line only: the rest of the run is written.
    summary.failed += 1
    error = outcome
    if is_unreachable(error):
        summary.not_reached += 1
        if summary.unreachable is None:
            summary.unreachable = error
    detail = (
        error.to_dict()
        if isinstance(error, ProviderError)
        else {"type": type(error).__name__, "message": str(error)}
    )
    return {"id": item.id, "key": item.request.key, "status": "failed", "error": detail}
