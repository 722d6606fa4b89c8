"""An immediate run and a batch run on one store at once: each request is paid for once.

Immediate requests are claimed in the store before they are sent
(:mod:`plugins.claims`); batch requests are journaled (queued, then submitted
with their sealed shard) before their batch is uploaded and created. Each side
looks at the other's record, in this order:

1. **Immediate** (``I1``, ``I2``): claim the request and commit the claim
   (``I1``); then read its journal row (``I2``). A row queued or submitted
   while another process runs the store's batches means the batch will pay
   for it: the claim is let go and the batch's answer is waited for.
2. **Batch** (``B1``, ``B2``): journal the sealed shard's rows as submitted
   and commit (``B1``); then, before uploading or creating anything, read
   which of the shard's requests someone else has claimed or already answered
   (``B2``, one query joined on the shard's keys): another live process, or
   in this process another connector, or an immediate call for a request
   whose batch-mode caller gave up while it waited in the open shard. Those lines are
   taken out of the spool file, their rows leave the shard, and their callers
   wait for the claim holder's answer (sent in a batch again only if the
   holder lets its claim go without one).

SQLite runs write transactions one at a time and a read sees every commit
made before it began, so for one request the two commits are ordered:

- ``I1`` before ``B2``: ``B2`` sees the claim (or, once the holder is done,
  its stored answer, committed together with the claim's release), and the
  batch does not send the request. ``I2`` may also find the row: then the
  holder lets its claim go and waits for the batch, the batch finds the claim
  gone without an answer and queues the request in its next shard, and that
  shard's ``B2`` finds no claim: it is sent once, in that batch.
- ``B1`` before ``I1``: ``I2`` comes after ``B1`` and finds the row
  submitted: the immediate side does not send it and waits for the batch's
  answer; ``B2`` may or may not see the short-lived claim — either way the
  batch still holds the request or queues it again, and it is sent once.

In every order at most one side sends each request.

A batch run can die (``kill -9``) while an immediate run waits for one of its
requests, or before the immediate run first looks. What its journal row says
decides (:func:`batch_holds`):

- **queued**: no batch at the provider holds it (its shard was never sealed,
  or its earlier batch ended without answering it): the immediate run sends
  it, and the next batch run finds its answer stored and does not send it.
- **submitted**, in a shard still unfinished: its batch was created at the
  provider, or may have been (the shard is journaled before the upload and
  the create). Sending it immediately could pay for it a second time, so the
  immediate run *adopts* the orphaned batch instead: it takes the store's
  batch lease and collects the shard as ``lexibatch resume`` would (finding
  the batch at the provider when its creation was never heard back, creating
  it only when it provably does not exist). Should another process take the
  lease first, that process collects it and the answer is waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from plugins.lease import runner_elsewhere
from plugins.results import cached_response
from plugins.store import UNFINISHED_SHARD_STATES
from providers.errors import SchemaValidationError

if TYPE_CHECKING:
    from plugins.claims import ClaimBook
    from plugins.store import Store
    from providers.types import Request, Response

__all__ = [
    "BatchHold",
    "batch_holds",
    "drop_lines",
    "taken_elsewhere",
    "wait_for_answer",
]

# Waiting for another process's answer: the first and the longest pause between looks.
_POLL_FIRST = 0.05
_POLL_MAX = 1.0

# Journal states in which a batch run will send, or has sent, a request.
_BATCH_STATES = ("queued", "submitted")


#: Who answers a request from a batch: ``"running"``, a live batch run of
#: another process; ``"orphaned"``, a batch journaled as submitted whose run is gone.
BatchHold = Literal["running", "orphaned"]


def batch_holds(store: Store, provider: str, key: str) -> BatchHold | None:
    """Whether a batch answers ``key``, so that sending it immediately could pay twice.

    Returns:
        ``"running"`` while another process runs the store's batches and
        holds ``key`` (queued, or submitted); ``"orphaned"`` when no process
        runs them and ``key`` is in a shard journaled as submitted and not
        finished (its batch exists at the provider, or may); ``None`` when no
        batch will answer it (never journaled, only queued by a run that is
        gone, or its batch is over): it may be sent.
    """
    # The state alone first: an immediate request is seldom journaled at all.
    state = store.request_states(provider, [key]).get(key)
    if state not in _BATCH_STATES:
        return None
    if runner_elsewhere(store.path):
        return "running"
    row = store.get_requests(provider, [key]).get(key) if state == "submitted" else None
    if row is None or row.state != "submitted" or row.shard_id is None:
        return None
    shard = store.get_shard(row.shard_id)
    if shard is None or shard.state not in UNFINISHED_SHARD_STATES:
        return None
    return "orphaned"


def taken_elsewhere(store: Store, claims: ClaimBook, shard_id: str) -> set[str]:
    """Requests of ``shard_id`` someone else is answering now, or whose answer is stored.

    Someone else is any live claim holder: another process, and also another
    connector of this process, or this connector's immediate strategy asked
    for a request whose batch-mode caller gave up (cancelled) while it waited
    in the open shard. Neither of those is covered by the connector's
    one-call-per-request rule, and the immediate side sends a request that is
    only queued here (see :func:`batch_holds`), so the batch must leave it out.
    ``claims`` is the batch's own book, which never claims.
    """
    taken = {
        key
        for key, owner, expires_at in store.claims_in_shard(claims.provider, shard_id)
        if owner != claims.owner and not claims.lapsed(owner, expires_at)
    }
    taken.update(store.answered_in_shard(claims.provider, shard_id))
    return taken


def drop_lines(path: Path, keys: Collection[str]) -> tuple[int, int]:
    """Rewrite the batch input file ``path`` without the lines of ``keys``; its (lines, bytes)."""
    kept = [
        line
        for line in path.read_bytes().splitlines()
        if line.strip() and orjson.loads(line).get("custom_id") not in keys
    ]
    data = b"".join(line + b"\n" for line in kept)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)
    return len(kept), len(data)


async def wait_for_answer(
    store: Store, provider: str, request: Request | Any, *, still_coming: Callable[[], bool]
) -> Response | None:
    """The answer another process is getting for ``request``, once it is stored.

    ``None`` once ``still_coming()`` says it will not come (the other process
    let the request go without an answer): the caller sends it itself.
    """
    delay = _POLL_FIRST
    while True:
        await asyncio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)
        stored = store.get_result(provider, request.key)
        if stored is not None:
            try:
                return cached_response(request, stored, provider=provider)
            except SchemaValidationError:
                # An answer that no longer fits is the connector's to retire; send anew.
                return None
        # Looked again: the answer may have landed just before the holder let go.
        if not still_coming() and store.get_result(provider, request.key) is None:
            return None
