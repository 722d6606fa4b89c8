"""What a shard's executor is given: the journal it writes, and where it hands what settled.

:class:`~plugins.batch.executor.BatchExecutor` drives one shard through its
batch's lifecycle against these few names alone, never the strategy that
made it:

- :class:`ShardJournal` — the shard's row, written before each side effect,
  and transactions;
- :class:`ShardSettlement` — where the batch's result lines, its missing
  lines and its own fate go (:class:`~plugins.batch.settlement.Settlement`);
- :class:`BatchEvents` — the observers told of a batch created or changed;
- :class:`ExecutorKit` — the above with what every executor of one strategy
  shares (the provider's endpoint, the retry policy, the queue's room, the
  lock around create).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from plugins.batch.cleanup import FileCleanup
    from plugins.batch.polling import PollSchedule
    from plugins.batch.queuecap import QueueRoom
    from plugins.retry import RetryPolicy
    from plugins.store import Shard
    from providers.errors import LexibatchError
    from providers.protocol import BatchEndpoint
    from providers.types import BatchInfo, BatchState, ItemResult

__all__ = ["BatchEvents", "ExecutorKit", "ShardJournal", "ShardSettlement"]


class ShardJournal(Protocol):
    """What an executor reads and writes of the journal."""

    def update_shard(self, shard_id: str, /, **fields: Any) -> Shard:
        """Change some columns of the shard's row, durably; returns the row as it is now."""
        ...

    def in_transaction(self, *, durable: bool = False) -> AbstractContextManager[Any]:
        """Group the calls made inside into one atomic commit."""
        ...

    def shard_keys(self, shard_id: str, state: str | None = None) -> list[str]:
        """The keys of the shard's requests (only those in ``state`` when given)."""
        ...

    def shards(
        self, provider: str | None = None, states: Iterable[str] | None = None
    ) -> list[Shard]:
        """Journaled shards, oldest first, optionally of one provider and in some states."""
        ...


class ShardSettlement(Protocol):
    """Where an executor hands what its shard's batch settled.

    Every method may be called again for the same lines after a crash, and
    must then store and bill nothing twice.
    """

    def finish_items(self, shard: Shard, info: BatchInfo, items: list[ItemResult]) -> None:
        """Store, bill and resolve one chunk of the batch's result lines."""
        ...

    def finish_missing(self, shard: Shard, info: BatchInfo, seen: set[str]) -> None:
        """End the shard's requests with no result line (``seen``: the lines read)."""
        ...

    def shard_answered(self, shard: Shard) -> None:
        """Every line is stored; called inside the transaction journaling the shard collected."""
        ...

    def shard_collected(self, shard: Shard, info: BatchInfo) -> None:
        """The shard is journaled collected: what it held for the run is let go."""
        ...

    def fail_shard(self, shard: Shard, error: LexibatchError) -> None:
        """The shard's batch was never made: its waiting requests fail or are retried."""
        ...

    def split_refused(self, shard: Shard, error: LexibatchError) -> bool:
        """Whether the shard, refused as too large, was queued again in smaller shards."""
        ...

    def split_for_queue(self, shard: Shard, share: float, why: str) -> None:
        """Queue the shard's requests again in shards of ``share`` its size, or smaller (the
        provider's queue cannot hold it whole)."""
        ...


class BatchEvents(Protocol):
    """The observers of a batch's life (the lifecycle hooks, for a strategy's provider)."""

    def submitted(self, info: BatchInfo, shard: Shard) -> None:
        """The shard's batch was created (or found) at the provider."""
        ...

    def status_changed(self, info: BatchInfo, previous: BatchState | None) -> None:
        """A poll saw the batch's state or counts change (``previous``: ``None`` at first)."""
        ...


@dataclass(frozen=True)
class ExecutorKit:
    """What every executor of one batch strategy is given (shared by its shards).

    Attributes:
        endpoint: the provider's batch endpoint.
        journal: the journal of shards.
        settlement: where settled results go.
        events: the observers of each batch.
        retry: the one retry policy, around every provider call of the lifecycle.
        queue: room in the provider's queue (``max_enqueued_tokens``).
        cleanup: deleting a collected batch's files at the provider.
        create_lock: held from journaling ``submitting`` until the batch is
            created, so at most one shard is ever in doubt after a crash.
        polls: a fresh schedule of waits between polls, one per batch.
        tokens: a shard's tokens by model, for the queue's count.
        estimated: a shard's tokens by model estimated even when no cap is
            configured (to split a shard the queue refuses); ``None``: ``tokens``.
        queue_full_as_quota: the provider words a full batch queue as any
            exhausted quota (its ``BatchSpec`` says so): a lasting 429 at
            create is a full queue.
    """

    endpoint: BatchEndpoint
    journal: ShardJournal
    settlement: ShardSettlement
    events: BatchEvents
    retry: RetryPolicy
    queue: QueueRoom
    cleanup: FileCleanup
    create_lock: asyncio.Lock
    polls: Callable[[], PollSchedule]
    tokens: Callable[[Shard], dict[str, int]]
    estimated: Callable[[Shard], dict[str, int]] | None = None
    queue_full_as_quota: bool = False
