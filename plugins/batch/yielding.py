"""A batch run gives way to whoever else answers some of its requests.

Right after a sealed shard's rows are committed, and before anything is
uploaded, the requests of the shard that someone else has claimed (an
immediate run on this store, in another process or this one) or already
answered leave the shard: their lines are taken out of the spool file and
their callers wait for that answer.
A request whose claim is let go without an answer is queued again, in the
next shard. :mod:`plugins.crossmode` says why this order never pays twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.claims import ClaimBook
from plugins.crossmode import drop_lines, taken_elsewhere, wait_for_answer

if TYPE_CHECKING:
    from plugins.batch.settlement import Settlement
    from plugins.store import Shard, Store

__all__ = ["ClaimYield"]

log = logging.getLogger("lexibatch.batch")


class ClaimYield:
    """Takes out of this run's shards what another process is answering.

    Args:
        store: the store the processes share.
        provider: the provider's name.
        settlement: ends a request answered elsewhere, or queues it again.
        side_task: runs the wait for another process's answer alongside
            the executors.
    """

    def __init__(
        self,
        store: Store,
        provider: str,
        settlement: Settlement,
        side_task: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.store = store
        self.provider = provider
        self.settlement = settlement
        self.side_task = side_task
        # Only read: whose claims are alive (this strategy never claims).
        self.claims = ClaimBook(store, provider)
        self._shared = store.path != ":memory:"

    def take_out(self, shard: Shard, keys: list[str]) -> tuple[Shard | None, list[str]]:
        """The shard without the requests another process answers, and the keys it keeps.

        ``None`` for the shard when nothing is left to send (it is journaled
        collected, its spool file removed).

        Raises:
            StoreWriteError: the store refused the change; nothing was sent.
        """
        if not self._shared:
            return shard, keys
        taken = taken_elsewhere(self.store, self.claims, shard.shard_id)
        if not taken:
            return shard, keys
        kept = [k for k in keys if k not in taken]
        lines, size = drop_lines(Path(str(shard.path)), taken)
        with self.store.in_transaction():
            # Out of the shard, not counted as sent; queued, so a crash now
            # leaves them to the next run, which finds their answers stored.
            self.store.unshard_requests(self.provider, shard.shard_id, taken)
            if kept:
                shard = self.store.update_shard(shard.shard_id, requests=lines, bytes=size)
            else:
                self.store.update_shard(shard.shard_id, state="collected", requests=0, bytes=0)
        log.info(
            "batch shard %s: %d of its requests are being answered by another process",
            shard.shard_id,
            len(taken),
        )
        for key in taken:
            self.side_task(self._await(key))
        if not kept:
            Path(str(shard.path)).unlink(missing_ok=True)
            return None, []
        return shard, kept

    async def _await(self, key: str) -> None:
        """The other process's answer for ``key``; queued again here if none comes."""
        pending = self.settlement.pending_of(key)
        if pending is None:
            return
        answer = await wait_for_answer(
            self.store,
            self.provider,
            pending,
            still_coming=lambda: self.claims.holder(key) is not None,
        )
        if answer is not None:
            self.settlement.answered_elsewhere(key, answer)
        else:
            self.settlement.send_again(key)
