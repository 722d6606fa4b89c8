"""``lexibatch run``: provider-neutral requests from a JSONL file, results to a JSONL file.

Input, one request per line, is read and checked by
:func:`plugins.requestfile.read_requests`. Output, one line
per input line, in input order: ``{"id", "key", "status": "succeeded",
"output", "usage", "cost_usd", "mode", "model", "batch_id", "cached"}`` or
``{"id", "key", "status": "failed", "error": {...}}``. A line's ``cost_usd``
is what it paid: a line of a request that an earlier line of the run already
paid for (the same body under another id) shares that call and reads
``"cost_usd": 0.0, "cached": true``, so the lines add up to the spend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from plugins.outfile import AtomicFile
from plugins.requestfile import MAX_PROBLEMS_SHOWN, JobItem, read_requests
from plugins.retry import is_unreachable
from providers.errors import InputError, ProviderError, StoreWriteError, is_key_refused
from providers.jsonl import dumps_kept
from providers.money import to_decimal
from providers.types import Response, Usage

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
    #: The failure that showed the provider refused the API key (a 401), if one did.
    key_refused: ProviderError | None = None
    #: The first request that failed at the provider (not refused, not
    #: unreached): its line number and error, for the run's closing error line.
    first_failure: tuple[int, Exception] | None = None
    #: Requests refused when they were queued, before anything was journaled or
    #: sent for them: too large for any batch of the provider, or a request its
    #: adapter cannot write. Each fails its own line.
    refused: int = 0
    #: The first :data:`~plugins.requestfile.MAX_PROBLEMS_SHOWN` of them: (line number, why).
    refusals: list[tuple[int, str]] = field(default_factory=list)

    def refusal_error(self, path: Path, out: Path) -> InputError:
        """The one error a run ends with when it refused requests (``path``: the request file).

        Each refused line is named as ``FILE:LINE: why``; the rest of the run
        was answered and written to ``out``.
        """
        shown = [f"{path}:{line}: {why}" for line, why in self.refusals]
        if self.refused == 1:
            return InputError(
                f"{shown[0]} — it was not sent; the other requests were (results in {out})"
            )
        if self.refused > len(shown):
            shown.append(f"{path}: ... and {self.refused - len(shown)} more refused requests")
        return InputError(
            f"{path}: {self.refused} requests were refused and not sent; the other requests "
            f"were (results in {out})",
            problems=shown,
        )


async def run_requests(connector: LexiConnector, items: list[JobItem], out: Path) -> JobSummary:
    """Send every item through the connector (in its current mode); write results in input order.

    Result lines are written as their turn comes: while later requests are
    still in flight (a batch still running), the answered prefix is already
    on its way to disk. The output goes to a temporary file renamed into place
    at the end, so an interrupted run never leaves a half-written results
    file; what was paid for is in the store and a re-run takes it from there
    at no cost.

    Raises:
        StoreWriteError: the store or the spool folder could not be written
            (the first such error, once; nothing answered is lost).
        OutputWriteError: ``out`` could not be written (the answers are in the store).
    """
    lines = _ResultLines(JobSummary(total=len(items)))
    with AtomicFile(out) as sink:
        futures = await _start(connector, items)
        writer = asyncio.ensure_future(_write_in_order(futures, items, lines, sink))
        try:
            if connector.batch_mode:
                await connector.execute_batch()
            stopped = await writer
            if stopped is not None:
                waiting = [f for f in futures if not f.done()]
                if waiting:
                    await asyncio.wait(waiting)
        except BaseException:
            # Stopped from outside: the waiters are stopped and their outcomes
            # read, so none is reported as "never retrieved".
            writer.cancel()
            for future in futures:
                future.cancel()
            await asyncio.gather(writer, *futures, return_exceptions=True)
            raise
        if stopped is not None:
            # The environment failed, not the requests: one error for the run,
            # not one per line (a store error first, wherever it came), once
            # every request has ended and its answer is stored.
            # Every outcome is read first, so none is reported as "never retrieved".
            outcomes = [_outcome(future) for future in futures]
            for outcome in outcomes:
                if isinstance(outcome, StoreWriteError):
                    raise outcome
            raise stopped
        sink.commit()
    return lines.summary


async def _start(connector: LexiConnector, items: list[JobItem]) -> list[asyncio.Future[Any]]:
    """Every item's request started (queued, in batch mode): one future each, in order."""
    if not connector.batch_mode:
        return [asyncio.ensure_future(connector.generate(item.request)) for item in items]
    futures: list[asyncio.Future[Response]] = []
    try:
        # A job item's request was checked when its line was read.
        futures = await connector.submit_all([item.request for item in items], checked=True)
    except BaseException:
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
        raise
    return futures


def _outcome(future: asyncio.Future[Any]) -> Any:
    """What ``gather(..., return_exceptions=True)`` gives for a settled future."""
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception() or future.result()


#: Result lines handed to the file at a time; the event loop runs between groups.
_WRITE_GROUP = 2048


async def _write_in_order(
    futures: list[asyncio.Future[Any]], items: list[JobItem], lines: _ResultLines, sink: AtomicFile
) -> BaseException | None:
    """Write each item's result line once its outcome and every earlier one are known.

    Returns ``None`` when every line is written, or what stops the writing:
    an outcome that ends the run instead of being written (a store write
    error, an interrupt or a cancellation), or the file system refusing the
    results file. It never raises: requests still in flight are not stopped
    by the results file, so every answer paid for is still stored.
    """
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    group: list[bytes] = []
    try:
        for item, future in zip(items, futures, strict=True):
            if not future.done():
                if group:
                    sink.write(group)
                    group.clear()
                await asyncio.wait((future,))
            outcome = _outcome(future)
            if isinstance(outcome, StoreWriteError) or not isinstance(
                outcome, Exception | Response
            ):
                return outcome
            group.append(dumps(lines.line(item, outcome), option=newline))
            if len(group) >= _WRITE_GROUP:
                sink.write(group)
                group.clear()
                await asyncio.sleep(0)
        sink.write(group)
    except Exception as exc:  # the file system refused (or a line could not be made)
        return exc
    return None


# Usage values remembered while result lines are written.
_REMEMBERED = 4096


class _ResultLines:
    """Result lines of one run, counted into its summary.

    Answers often share their usage values and prices, so each usage value
    is serialized once (the most recent :data:`_REMEMBERED` are kept) and
    each price is made exact once, when the summary is read: lines count how
    many answers cost each price.
    """

    __slots__ = ("_costs", "_paid", "_summary", "_usages")

    def __init__(self, summary: JobSummary) -> None:
        self._summary = summary
        # Keys whose answer a line of this run was written with as paid: a later
        # line of the same request (an identical body under another id) shared
        # that call, and is written as costing nothing, so the lines add up to
        # what was paid.
        self._paid: set[str] = set()
        # price -> answers written at that price
        self._costs: dict[float, int] = {}
        # usage value -> its JSON
        self._usages: dict[Usage, orjson.Fragment] = {}

    @property
    def summary(self) -> JobSummary:
        """The run's summary, with the exact cost of the answers written so far."""
        summary = self._summary
        if self._costs:
            summary.cost_usd += sum(
                (to_decimal(cost) * times for cost, times in self._costs.items()), Decimal(0)
            )
            self._costs.clear()
        return summary

    def line(self, item: JobItem, outcome: Response | Exception) -> dict[str, Any]:
        """The result line of ``item`` (its outcome counted into the summary)."""
        if isinstance(outcome, Response):
            return self._answered(item, outcome)
        return _failed_line(item, outcome, self._summary)

    def _answered(self, item: JobItem, outcome: Response) -> dict[str, Any]:
        summary = self._summary
        summary.succeeded += 1
        cached = outcome.cached
        cost = outcome.cost_usd
        if not cached:
            key = item.request.key
            if key in self._paid:
                cached, cost = True, 0.0  # the call an earlier line of the same request paid
            else:
                self._paid.add(key)
        if cached:
            summary.cached += 1
        if cost is None:
            summary.unpriced += 1
        else:
            costs = self._costs
            costs[cost] = costs.get(cost, 0) + 1
        usage = outcome.usage
        usage_json = self._usages.get(usage)
        if usage_json is None:
            if len(self._usages) >= _REMEMBERED:
                self._usages.clear()
            usage_json = self._usages[usage] = orjson.Fragment(dumps_kept(usage.to_dict()))
        return {
            "id": item.id,
            "key": item.request.key,
            "status": "succeeded",
            "output": outcome.output,
            "usage": usage_json,
            "cost_usd": cost,
            "mode": outcome.mode,
            "model": outcome.model,
            "batch_id": outcome.batch_id,
            "cached": cached,
        }


def _failed_line(item: JobItem, error: Exception, summary: JobSummary) -> dict[str, Any]:
    # An error fails its own line only: the rest of the run is written.
    summary.failed += 1
    if isinstance(error, InputError):
        summary.refused += 1
        if len(summary.refusals) < MAX_PROBLEMS_SHOWN:
            summary.refusals.append((item.line, error.message))
    if is_key_refused(error) and summary.key_refused is None:
        summary.key_refused = error
    if is_unreachable(error):
        summary.not_reached += 1
        if summary.unreachable is None:
            summary.unreachable = error
    elif summary.first_failure is None and not isinstance(error, InputError):
        summary.first_failure = (item.line, error)
    detail = (
        error.to_dict()
        if isinstance(error, ProviderError)
        else {"type": type(error).__name__, "message": str(error)}
    )
    return {"id": item.id, "key": item.request.key, "status": "failed", "error": detail}
