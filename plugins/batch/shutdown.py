"""How a batch strategy ends its run: no new batch once interrupted, winding down, closing.

:class:`StrategyShutdown` is a base class of
:class:`~plugins.batch.strategy.BatchStrategy`: it holds off creating provider
batches (an interrupted run), tells whether any caller still waits on the
strategy, gives its batches under way time to finish, and closes it. It keeps
the state only these need; the rest it reads of the strategy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from providers.errors import StoreWriteError

if TYPE_CHECKING:
    from plugins.batch.accumulator import BatchAccumulator
    from plugins.batch.interfaces import ExecutorKit
    from plugins.batch.promise import BatchRequest
    from plugins.lease import BatchLease
    from plugins.store import JournalRequest

__all__ = ["StrategyShutdown"]

log = logging.getLogger("lexibatch.batch")


class StrategyShutdown:
    """Ends a batch strategy's run: holds off new batches, tells when it is idle, closes it."""

    # Defaults until the strategy stops creating or closes (its __init__ sets neither).
    _closed = False
    _create_hold: asyncio.Task[None] | None = None

    if TYPE_CHECKING:
        # The strategy's own (BatchStrategy sets them), read here.
        kit: ExecutorKit
        accumulator: BatchAccumulator
        _pending: dict[str, BatchRequest]
        _journal_buffer: list[JournalRequest]
        _executors: dict[str, asyncio.Task[None]]
        _side_tasks: set[asyncio.Task[None]]
        _linger_handle: asyncio.TimerHandle | None
        _lease: BatchLease

        def _end_burst(self) -> None: ...

        def _flush_journal(self) -> None: ...

    @property
    def _holding_creates(self) -> bool:
        """Whether :meth:`stop_creating` has started the hold on ``kit.create_lock``.

        True from then on, after :meth:`aclose` too.
        """
        # Whether the task was made, not whether it still runs: aclose ends it,
        # and a stop_creating after that must start no hold that nothing ends
        # (after an aclose that found none, stop_creating sees it closed).
        return self._create_hold is not None

    def stop_creating(self) -> None:
        """Create no new provider batch from now on (an interrupted run).

        Creating a batch is what pays for it: the shards not created yet stay
        journaled, and the next run (or ``lexibatch resume``) creates them. A
        create under way finishes, its batch journaled. Idempotent; nothing
        once the strategy is closed.
        """
        if self._holding_creates or self._closed:
            return

        async def hold() -> None:
            # Every create takes this lock; held until the strategy closes.
            await self.kit.create_lock.acquire()
            await asyncio.get_running_loop().create_future()

        # Made as BatchStrategy._side_task makes a side task (flush waits for
        # it, aclose cancels it), and kept: _holding_creates is told by it.
        task = asyncio.get_running_loop().create_task(hold())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        self._create_hold = task

    def idle(self) -> bool:
        """Whether no caller waits on this strategy: no request queued, spooled or waiting.

        Its batches may still be finishing (their files deleted, or collected
        for no caller of this run); closed now, they stay journaled and the
        next runner of the store — this process or another — takes them on.
        """
        return not self._pending and not self._journal_buffer and not len(self.accumulator)

    async def wind_down(self, seconds: float) -> bool:
        """Whether this strategy is idle, after its batches under way had ``seconds``
        seconds to finish (its callers are answered; only their files may be left)."""
        if not self.idle():
            return False
        running = [task for task in self._executors.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=seconds)
        return self.idle()

    async def aclose(self) -> None:
        """Stop: what was sent stays journaled and resumes on the next run."""
        if self._closed:
            return
        self._closed = True
        self._end_burst()
        if self._linger_handle is not None:
            self._linger_handle.cancel()
        try:
            self._flush_journal()
        except StoreWriteError as exc:
            # Nothing of these was sent; the same command queues them again.
            log.error("%d queued requests were not journaled: %s", len(self._journal_buffer), exc)
        self.accumulator.close()
        tasks = [*self._executors.values(), *self._side_tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._lease.release()
        for pending in self._pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.cancel()
        self._pending.clear()
