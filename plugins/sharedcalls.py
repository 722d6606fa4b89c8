"""One task per request, shared by every caller asking it; a caller that gives up leaves it.

A request sent now is run by a task of its own, not by the first caller's
coroutine; a queued one (batch mode) settles a future of its own. Each caller
awaits it through :func:`asyncio.shield`, so a caller cancelled
(``task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``, a ``TaskGroup``
whose sibling failed) ends its own wait only:

* the other callers of the same request keep waiting for its answer;
* when the last caller of a request sent now leaves, it is withdrawn if none
  of its calls is out (nothing was paid); a call already sent may be billed
  whatever happens to it, so it goes on, and its answer is stored — asking
  again later reads it from the cache — but nothing more is sent for it;
* when the last caller of a queued request leaves, the request stays queued
  (journaled, its batch may answer it), and a later call of it is no longer
  made to wait for that batch (an urgent ``mode="immediate"`` one is sent).

A request whose task ends because the connector closed tells its callers so
with :class:`~providers.errors.ConnectorClosedError`, never a bare
``CancelledError`` they did not ask for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from providers.errors import ConnectorClosedError, UnsupportedError
from providers.types import Response

__all__ = ["SharedCalls"]


class SharedCalls:
    """The tasks running requests, by key, and how many callers wait on each.

    Args:
        inflight: the connector's requests under way by key (shared with the
            futures ``submit_all`` queues, which are waited for the same way).
        sender: the strategy that sends requests one by one (the immediate
            one). Its ``withdraw(key)`` is asked when the last caller of a
            running request leaves: ``True`` when none of its calls is out
            (the task is then cancelled), ``False`` when one is (it lands, and
            sends nothing more); its ``keep(key)`` is told when a caller comes
            back to a request that was left. A strategy without them has every
            left request withdrawn.
    """

    def __init__(self, inflight: dict[str, asyncio.Future[Response]], sender: object) -> None:
        self._inflight = inflight
        self._withdraw: Callable[[str], bool] = getattr(sender, "withdraw", _withdrawn)
        self._keep: Callable[[str], None] = getattr(sender, "keep", _kept)
        # Callers waiting, by task (not by key: a task that ended and the next one
        # of the same key are counted apart).
        self._callers: dict[asyncio.Future[Response], int] = {}
        self._tasks: dict[str, asyncio.Task[Response]] = {}
        # Futures of queued requests their callers wait for, and what to do when
        # the last one leaves.
        self._queued: dict[asyncio.Future[Response], Callable[[], None]] = {}
        #: The event loop the calls run on: the first one a call was made on.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._binding = threading.Lock()

    def bind(self) -> None:
        """Run the calls on the running event loop, which must be the first one used.

        Raises:
            UnsupportedError: another loop was used first (another ``asyncio.run``,
                another thread).
        """
        loop = asyncio.get_running_loop()
        if loop is self.loop:
            return
        with self._binding:  # two threads' first calls at once: one loop wins
            if self.loop is None:
                self.loop = loop
        if loop is not self.loop:
            # The clients, locks and tasks belong to the first loop: a call made on
            # another could be sent, paid for, and fail before its answer is kept.
            raise UnsupportedError(
                "this connector was first used on another event loop (another asyncio.run, "
                "or another thread): open a connector for each event loop"
            )

    def on_running_loop(self) -> bool:
        """Whether the running event loop is the one the calls run on."""
        return self.loop is asyncio.get_running_loop()

    def start(self, key: str, run: Coroutine[Any, Any, Response]) -> asyncio.Task[Response]:
        """Run ``run`` (the request of ``key``) as a task of its own, findable by its key."""
        task = asyncio.get_running_loop().create_task(run)
        self._inflight[key] = task
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._ended(key, done))
        return task

    def queued(self, future: asyncio.Future[Response], detach: Callable[[], None]) -> None:
        """Follow the callers of ``future`` (a queued request's); ``detach()`` when all left.

        The request stays queued (journaled, it may be answered by its batch);
        detached, a later call of it is not made to wait for that batch.
        """
        self._queued[future] = detach
        future.add_done_callback(self._unqueued)

    def _unqueued(self, future: asyncio.Future[Response]) -> None:
        self._queued.pop(future, None)
        self._callers.pop(future, None)

    def _ended(self, key: str, task: asyncio.Task[Response]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if self._tasks.get(key) is task:
            del self._tasks[key]
        self._callers.pop(task, None)
        if not task.cancelled():
            # Read: an error nobody waits for (every caller left) is not logged as lost.
            task.exception()

    async def wait(self, key: str, pending: asyncio.Future[Response]) -> Response:
        """The response of ``pending`` (a request under way), shielded from this caller's end.

        Raises:
            ConnectorClosedError: the connector closed before the request was answered.
        """
        task = self._tasks.get(key)
        sent = task is pending
        if not sent and pending not in self._queued:
            # A future submit_all handed out: its holder decides about it.
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                _closed_unless_mine(pending)
                raise
        callers = self._callers.get(pending, 0)
        if callers == 0 and sent:
            self._keep(key)
        self._callers[pending] = callers + 1
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            _closed_unless_mine(pending)
            raise
        finally:
            left = self._callers.get(pending, 1) - 1
            if left > 0:
                self._callers[pending] = left
            else:
                self._callers.pop(pending, None)
                if not pending.done():
                    if not sent:
                        self._queued.pop(pending)()
                    elif self._withdraw(key):
                        pending.cancel()

    def running(self) -> list[asyncio.Task[Response]]:
        """The tasks still running a request."""
        return [task for task in self._tasks.values() if not task.done()]


def _withdrawn(key: str) -> bool:
    """A strategy that cannot tell whether a request's call is out: it is withdrawn."""
    return True


def _kept(key: str) -> None:
    """A strategy that does not hear that a left request is wanted again."""


def _closed_unless_mine(ended: asyncio.Future[Response]) -> None:
    """A wait that ended cancelled: this caller's own doing, or the connector closing.

    Raises:
        ConnectorClosedError: the request's task (or future) was ended, not
            this caller's wait.
    """
    me = asyncio.current_task()
    if ended.cancelled() and (me is None or not me.cancelling()):
        raise ConnectorClosedError(
            "not answered: the connector was closed first (a request sent in a batch "
            "stays journaled; the next run on this store collects it)"
        ) from None
