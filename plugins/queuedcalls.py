"""The futures :meth:`~plugins.connector.LexiConnector.submit_all` hands out for queued requests.

A request queued with the batch strategy gets a
:class:`~plugins.batch.promise.BatchPromise`; its caller gets an ``asyncio``
future, settled as ``generate`` would end: with the response or the typed
error, its ``requests_finished`` observers told. :class:`QueuedCalls`
follows every such promise (one follower for all of them, no callback per
request) and settles its future the moment the promise settles: a batch's
answers reach their callers in the turn they are handed over, without a
turn of the event loop per request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from plugins.batch.promise import BatchPromise, Follower
from providers.errors import LexibatchError

if TYPE_CHECKING:
    from plugins.requestevents import RequestEvents
    from providers.types import Request, Response

__all__ = ["QueuedCalls", "pass_on"]

log = logging.getLogger("lexibatch.connector")


class QueuedCalls(Follower):
    """Queued requests and their callers' futures, settled as their promises settle.

    Args:
        inflight: the connector's futures of requests under way, by key
            (shared: an identical request asked meanwhile waits for the same
            future; a settled one leaves it).
        events: where finished requests are told to the observer hooks.
    """

    __slots__ = ("_events", "_inflight", "_requests")

    def __init__(
        self, inflight: dict[str, asyncio.Future[Response]], events: RequestEvents
    ) -> None:
        self._inflight = inflight
        self._events = events
        # key -> the request its future answers (for the observers)
        self._requests: dict[str, Request] = {}

    def add(
        self, request: Request, future: asyncio.Future[Response], promise: BatchPromise
    ) -> None:
        """Settle ``future`` as ``promise`` (of ``request``) settles; at once if it has."""
        key = request.key
        self._inflight[key] = future
        self._requests[key] = request
        promise.follow(self)

    def forget(self, key: str) -> None:
        """Stop following request ``key`` for a caller (every caller of it left)."""
        self._requests.pop(key, None)

    def __len__(self) -> int:
        """How many queued requests have not settled yet."""
        return len(self._requests)

    def settled(self, promise: BatchPromise) -> None:
        """Pass ``promise``'s outcome on to its caller's future (see :class:`Follower`)."""
        key = promise.key
        request = self._requests.pop(key, None)
        if request is None:
            # Forgotten: every caller left (a later call of it may be under way).
            return
        future = self._inflight.pop(key, None)
        if future is None or future.done():
            # Its caller stopped waiting (the future was cancelled): nothing to tell.
            return
        told = pass_on(promise, future)
        if told is not None:
            self._finished(request, *told)

    def _finished(
        self, request: Request, response: Response | None, error: LexibatchError | None
    ) -> None:
        try:
            self._events.finished(request, response, error)
        except Exception as exc:
            # Reported, not raised: the answers handed over with this one
            # still reach their callers.
            log.error("an observer of finished requests failed: %s", exc, exc_info=exc)


def pass_on(
    done: Any, future: asyncio.Future[Response]
) -> tuple[Response | None, LexibatchError | None] | None:
    """Settle ``future`` as ``done`` (a promise or a future) settled.

    Returns what the observers are told of it (the response, or the
    lexibatch error), or ``None`` when there is nothing to tell: cancelled,
    or failed with an error that is not lexibatch's.
    """
    if done.cancelled():
        future.cancel()
        return None
    error = done.exception()
    if error is None:
        response = done.result()
        future.set_result(response)
        return response, None
    future.set_exception(error)
    return (None, error) if isinstance(error, LexibatchError) else None
