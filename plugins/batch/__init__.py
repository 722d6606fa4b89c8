"""The batch strategy and its building blocks.

- :class:`BatchRequest` — what is kept of a request while it waits.
- :class:`BatchPromise` — the awaitable a batched request resolves through.
- :class:`BatchAccumulator` — collects requests into shards, spooled to disk.
- :class:`BatchExecutor` — drives one shard through its batch's lifecycle,
  against the small interface of :mod:`plugins.batch.interfaces`.
- :class:`Settlement` — ends each request: succeeded, retried, re-routed or failed.
- :class:`BatchStrategy` — ties them to the connector; registered as ``batch``.
"""

from plugins.batch.accumulator import BatchAccumulator, SealedShard
from plugins.batch.executor import BatchExecutor
from plugins.batch.promise import BatchPromise, BatchRequest
from plugins.batch.settlement import Settlement
from plugins.batch.strategy import BatchStrategy

__all__ = [
    "BatchAccumulator",
    "BatchExecutor",
    "BatchPromise",
    "BatchRequest",
    "BatchStrategy",
    "SealedShard",
    "Settlement",
]
