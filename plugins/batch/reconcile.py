"""Reconciling an ended batch with what was sent: no request lost, no line silently dropped.

When a batch has ended and its result files have been read, the ids seen in
them are checked against the shard's requests and the provider's own counts:

- a request of the shard with no line in the output or error file was not
  answered, whatever the counts say: it is queued again (a retryable item
  failure, sent in the next round) and one warning names the batch, how many
  lines are missing and what the provider counted;
- a line whose ``custom_id`` is no request of ours (the journal never had it)
  is stored nowhere and billed to nobody here: one warning gives how many and
  an example id, so a mix-up at the provider is seen rather than dropped.

A batch whose results give no line at all while the provider counts answers
is not reconciled: those answers were paid for, so its results are read
again, and the batch stays journaled when they still give none (see
:meth:`plugins.batch.executor.BatchExecutor._collect`).

Both at once — ours missing, lines under ids not ours — most likely means
answers paid for under other names (a provider, or its plugin, that does not
keep ``custom_id``): the settlement then fails the missing requests rather
than pay for them again every round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

    from plugins.store import Shard, Store
    from providers.types import BatchInfo

__all__ = ["Reconciliation", "reconcile"]

log = logging.getLogger("lexibatch.batch")


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What an ended batch's result files lacked, and held that was not ours.

    Attributes:
        missing: keys of the shard's unanswered requests with no result line.
        foreign: result-line ids that name no request of ours.
    """

    missing: list[str]
    foreign: list[str]


def reconcile(
    store: Store,
    provider: str,
    shard: Shard,
    info: BatchInfo,
    *,
    waiting: list[str],
    sent: Collection[str] | None,
    seen: set[str],
) -> Reconciliation:
    """Check ``seen`` (the ids read from the batch's files) against the shard; report gaps.

    Args:
        waiting: the shard's requests still waiting for an answer.
        sent: every key the shard's batch was sent with, when known (a shard
            sealed by this run); otherwise read from the journal.
        seen: every ``custom_id`` read from the output and error files.
    """
    missing = [k for k in waiting if k not in seen]
    extra = list(seen.difference(sent if sent is not None else store.shard_keys(shard.shard_id)))
    if extra:
        # A request moved on to a later shard (a retry round) is still ours.
        known = store.request_places(provider, extra)
        extra = sorted(k for k in extra if k not in known)
    if missing:
        log.warning(
            "batch %s: %d of its requests have no line in its result files (the provider "
            "counts %d requests, %d succeeded, %d failed): %s",
            info.id,
            len(missing),
            info.total,
            info.succeeded,
            info.failed,
            "they fail, not sent again: lines under ids not ours may be their answers"
            if extra
            else "they are queued again",
        )
    if extra:
        log.warning(
            "batch %s: %d result lines name no request of ours (e.g. %r): they are ignored",
            info.id,
            len(extra),
            extra[0],
        )
    return Reconciliation(missing, extra)
