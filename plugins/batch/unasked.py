"""Requests a run finishes that nobody in it asked for, told to the observers all the same.

``lexibatch resume`` has no callers: it sends the requests earlier runs
left queued and collects the batches they left running, and every answer
it stores was paid for. Its progress display (``requests … done``,
``spent``) and any other observer of the ``requests_finished`` hooks learn
of them as of a caller's: each such request gets a
:class:`~plugins.batch.promise.BatchPromise` that :class:`UnaskedRequests`
follows (one follower for all), and its outcome is told when it settles.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from plugins.batch.promise import BatchPromise, Follower
from providers.errors import LexibatchError

if TYPE_CHECKING:
    from plugins.requestevents import RequestEvents
    from providers.types import Request

__all__ = ["UnaskedRequests"]

log = logging.getLogger("lexibatch.batch")


class UnaskedRequests(Follower):
    """Promises for requests nobody awaits, whose outcomes are told to ``events``.

    Args:
        events: where finished requests are told to the observer hooks.
    """

    __slots__ = ("_events", "_requests")

    def __init__(self, events: RequestEvents) -> None:
        self._events = events
        # key -> the request its promise answers (for the observers)
        self._requests: dict[str, Request] = {}

    def promise_for(self, request: Request) -> BatchPromise:
        """A promise for ``request``, whose outcome is told to the observers when it settles."""
        promise = BatchPromise(request.key)
        self._requests[request.key] = request
        promise.follow(self)
        return promise

    def settled(self, promise: BatchPromise) -> None:
        """Tell the observers how ``promise``'s request ended (see :class:`Follower`)."""
        request = self._requests.pop(promise.key, None)
        if request is None or promise.cancelled():
            return
        error = promise.exception()
        try:
            if error is None:
                self._events.finished(request, promise.result(), None)
            elif isinstance(error, LexibatchError):
                self._events.finished(request, None, error)
        except Exception as exc:
            # Reported, not raised: the answers settled with this one still settle.
            log.error("an observer of finished requests failed: %s", exc, exc_info=exc)

    def flush(self) -> None:
        """Tell the observers now what has finished since the last turn of the event loop."""
        self._events.flush()
