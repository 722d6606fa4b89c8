"""Requests started and finished, told to the observer hooks in groups, not one call each.

A run of 100,000 requests would otherwise make 200,000 hook calls (each
walks pluggy's machinery) for a progress display that redraws a few times
a second. :class:`RequestEvents` gathers what started and what ended and
tells the ``requests_started`` and ``requests_finished`` hooks once per turn
of the event loop, each call carrying every request of that turn (a chunk
of a request file, a batch's answers); :meth:`RequestEvents.flush` tells
them at once (the connector does when one awaited call ends, and when it
closes). A plugin that implements the per-request hooks
``request_started`` and ``request_finished`` is still called once per
request, at the moment it happens, as before.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NamedTuple

from plugins.observers import GuardedHook

if TYPE_CHECKING:
    from providers.errors import LexibatchError
    from providers.types import Request, Response

__all__ = ["RequestEvents", "RequestOutcome"]


class RequestOutcome(NamedTuple):
    """How one request ended: exactly one of ``response`` and ``error`` is set."""

    request: Request
    response: Response | None
    error: LexibatchError | None


# A named tuple made from a tuple of its fields, without the Python-level
# __new__ that takes them one by one (one outcome per request).
_outcome = tuple.__new__


class RequestEvents:
    """Started and finished requests, gathered and told to the hooks once per loop turn.

    Args:
        hooks: the plugin manager's hook relay.
    """

    __slots__ = (
        "_finished",
        "_many_finished",
        "_many_started",
        "_one_finished",
        "_one_started",
        "_scheduled",
        "_started",
    )

    def __init__(self, hooks: Any) -> None:
        # An observer that raises is logged and passed over (see plugins.observers).
        self._many_started = GuardedHook(hooks.requests_started)
        self._many_finished = GuardedHook(hooks.requests_finished)
        self._one_started = GuardedHook(hooks.request_started)
        self._one_finished = GuardedHook(hooks.request_finished)
        self._started: list[Request] = []
        self._finished: list[RequestOutcome] = []
        self._scheduled = False

    def started(self, request: Request) -> None:
        """``request`` is being looked up and, unless the store has its answer, sent."""
        if self._one_started.get_hookimpls():
            self._one_started(request=request)
        self._started.append(request)
        if not self._scheduled:
            self._schedule()

    def finished(
        self, request: Request, response: Response | None, error: LexibatchError | None
    ) -> None:
        """``request`` ended with ``response`` or ``error``."""
        if self._one_finished.get_hookimpls():
            self._one_finished(request=request, response=response, error=error)
        self._finished.append(_outcome(RequestOutcome, (request, response, error)))
        if not self._scheduled:
            self._schedule()

    def flush(self) -> None:
        """Tell the hooks what was gathered (what started first, then what finished)."""
        self._scheduled = False
        started, self._started = self._started, []
        finished, self._finished = self._finished, []
        if started:
            self._many_started(requests=started)
        if finished:
            self._many_finished(outcomes=finished)

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Outside a running loop nothing else is coming this turn: tell now.
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)
