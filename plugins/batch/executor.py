"""Driving one shard through its provider batch's lifecycle, journaling every step.

The journal states of a shard, each recorded *before* the next side effect::

    written ──upload──▶ uploaded ──room in the queue──▶ submitting ──create──▶ created
        ──poll…──▶ ended ──read results, store each──▶ collected ──▶ files deleted
                              (or failed, when the provider rejected it)

A batch the provider refuses for its queue (a 429 naming the queue at create,
or a batch failed with ``token_limit_exceeded``) goes back to ``uploaded`` and
waits for room (see :mod:`plugins.batch.queuecap`); a shard bigger than the
queue holds is split instead (forgotten, its requests queued again in smaller
shards). Any other 429 goes through the retry policy; one it gives up on at
create leaves the shard journaled before create, for the next run.

A crash anywhere resumes from the recorded state: an uploaded file is not
uploaded again, a shard in ``submitting`` first asks the provider whether the
batch exists (``find``) before creating it (and waits while the provider cannot
yet tell which of its batches is the shard's), a created batch is only polled,
and results are stored idempotently (a result already stored is not stored or
billed again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.batch.findshard import journaled_shard
from plugins.batch.gcpause import GcHold
from plugins.batch.queuecap import (
    QueueRefusedError,
    create_refusal,
    refused_at_create,
    refused_for_queue,
)
from plugins.retry import is_unreachable
from providers.errors import (
    BatchInDoubtError,
    LexibatchError,
    ProviderError,
    RateLimitError,
    UserError,
)
from providers.types import BatchInfo, BatchState, ItemResult

if TYPE_CHECKING:
    from plugins.batch.interfaces import ExecutorKit
    from plugins.store import Shard
    from providers.protocol import BatchEndpoint

__all__ = ["BatchExecutor"]

log = logging.getLogger("lexibatch.batch")

# Results are stored in chunks: one transaction per chunk keeps a 50,000-line
# batch (OpenAI's largest) to one commit. A batch's answers go in under their
# journal rows' ids (plugins.store.keyids), beside each other, and only read
# the key index; fewer commits still write fewer pages of the write-ahead
# log. A crash loses at most one chunk of work, which is read again on
# resume; the chunk's lines are held in memory until it is stored, which
# bounds it.
RESULT_CHUNK = 50_000

#: Seconds an ended batch may read as not ready (``BatchInfo.results_ready``)
#: before it is read all the same, when it says no request of it succeeded:
#: nothing paid can be missed, and its requests are reconciled. One that
#: says some succeeded is waited for, with a warning: those were paid for.
ENDED_UNREADY_GRACE = 300.0


class BatchExecutor:
    """Drives one shard (one provider batch) from its journaled state to collected.

    It knows only its :class:`~plugins.batch.interfaces.ExecutorKit`: the
    journal it writes before each step, and the settlement it hands each
    chunk of results, the missing lines and the batch's fate to.
    """

    def __init__(self, kit: ExecutorKit, shard: Shard) -> None:
        self.kit = kit
        self.shard = shard
        self.endpoint: BatchEndpoint = kit.endpoint
        self.journal = kit.journal
        self.settlement = kit.settlement
        # The provider refused this run's first attempt to create the batch.
        self._refused = False
        # The shard's tokens by model, once estimated (see plugins.batch.queuecap).
        self._held_tokens: dict[str, int] | None = None
        # The same, estimated whether or not a cap is configured (to split a refused shard).
        self._estimate: dict[str, int] | None = None
        if shard.state in ("submitting", "created"):
            # Its batch is (or may be) in flight: counted at once, before any
            # other shard of the run is admitted (executors start in turn).
            kit.queue.hold(shard.shard_id, self._tokens())

    def _update(self, **fields: Any) -> None:
        self.shard = self.journal.update_shard(self.shard.shard_id, **fields)

    async def run(self) -> None:
        """Run the shard to the end; provider failures fail its requests, never the process."""
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except UserError:
            # Not the batch's fate (e.g. the store cannot be written): the
            # shard stays resumable in the journal and the run stops.
            raise
        except LexibatchError as exc:
            if self._may_be_paid(exc):
                # Failing the shard would re-send (and pay again for) requests
                # whose batch exists: it stays journaled for the next run.
                raise
            if is_unreachable(exc) or isinstance(exc, RateLimitError):
                # The retry policy gave up on reaching the provider, or on a
                # rate limit: not the batch's fate, and a retry round would
                # only try again as long. The shard stays journaled (before
                # create: a 429 proves no batch was made); the same command
                # resumes it.
                raise
            if self.settlement.split_refused(self.shard, exc):
                return
            log.warning("batch shard %s failed: %s", self.shard.shard_id, exc)
            self._update(state="failed", error=str(exc))
            self.settlement.fail_shard(self.shard, exc)

    def _may_be_paid(self, exc: LexibatchError) -> bool:
        """Whether the shard's batch may exist at the provider despite ``exc``.

        Once created it does, whatever failed after (polling, reading the
        results). While it is being created, only a permanent refusal of
        the first attempt to create it proves it does not.
        """
        if self.shard.state in ("created", "ended"):
            return True
        if self.shard.state == "submitting":
            return not self._refused
        return False

    async def _run(self) -> None:
        sid = self.shard.shard_id
        if self._split_over_cap():
            return
        if self.shard.state == "written":
            path = Path(str(self.shard.path))
            file_id = await self._step("upload", lambda: self.endpoint.upload(path, shard_id=sid))
            self._update(state="uploaded", input_file_id=file_id)
        try:
            info = await self._until_ended()
        finally:
            # Ended, or stopped: its tokens no longer hold room in this run's count.
            self.kit.queue.release(sid)
        if info is None:
            return  # split: its requests went to smaller shards
        if self.shard.state == "created":
            self._update(
                state="ended",
                batch_status=info.state.value,
                counts=_counts(info),
                raw=dict(info.raw),
            )
        await self._collect(info)
        with self.journal.in_transaction():
            self.settlement.shard_answered(self.shard)
            self._update(state="collected")
            # Journaled with "collected": never before the results are stored.
            cleanup = self.kit.cleanup.plan(self.shard.shard_id, info)
        self.settlement.shard_collected(self.shard, info)
        if cleanup:
            await self.kit.cleanup.run(self.shard.shard_id)

    async def _until_ended(self) -> BatchInfo | None:
        """Create the shard's batch (when there is room) and poll it until it has ended.

        A batch the provider refused for its queue is journaled back to
        before create, waits for room (:mod:`plugins.batch.queuecap`) and is
        created again: neither a retry round nor a failure of its requests.
        ``None``: the shard was too big for the queue and was split.
        """
        queue = self.kit.queue
        sid = self.shard.shard_id
        while True:
            info: BatchInfo | None = None
            if self.shard.state in ("uploaded", "submitting"):
                # Before create, or in doubt after a crash: counted once there is room.
                await queue.admit(sid, self._tokens)
                try:
                    info = await self._create()
                except QueueRefusedError as refused:
                    if await self._split_or_wait(str(refused)):
                        return None
                    continue
            if self.shard.state == "created":
                # Counted while it is in flight (a no-op when already counted).
                queue.hold(sid, self._tokens())
            info = await self._poll_until_ready(info)
            if self.shard.state == "created" and refused_for_queue(info):
                why = "; ".join(info.errors)
                # Its batch never ran and is never found again as this shard's
                # (see _find): the shard goes back to before create.
                self._update(
                    state="uploaded", batch_id=None, batch_status=None, counts=None, raw=None
                )
                if await self._split_or_wait(f"batch {info.id} failed: {why}"):
                    return None
                continue
            return info

    async def _split_or_wait(self, why: str) -> bool:
        """Wait for room after the provider refused the shard for its queue; whether it was
        split instead (too big for the queue by itself)."""
        splittable = self.shard.requests > 1
        share = await self.kit.queue.refused(
            self.shard.shard_id,
            self._models(),
            why,
            tokens=self._estimated if splittable else None,
        )
        if share is None:
            return False
        self.settlement.split_for_queue(self.shard, share, why)
        return True

    def _split_over_cap(self) -> bool:
        """Split a shard not yet created that passes a configured cap by itself; whether it was."""
        queue = self.kit.queue
        if self.shard.state not in ("written", "uploaded") or self.shard.requests < 2:
            return False
        if not queue.capped:
            return False
        over = queue.over_cap(self._tokens())
        if over is None:
            return False
        model, share = over
        self.settlement.split_for_queue(
            self.shard,
            share,
            f"it holds {self._tokens()[model]:,} tokens for {model}, more than the cap of "
            f"{queue.cap(model):,} enqueued tokens",
        )
        return True

    def _models(self) -> str:
        """The shard's models, for messages."""
        models = [m for m in sorted(self._tokens()) if m != "*"]
        return ", ".join(models) or "its models"

    def _estimated(self) -> dict[str, int]:
        """The shard's tokens by model, estimated even when no cap is configured."""
        if self.kit.queue.capped or self.kit.estimated is None:
            return self._tokens()
        if self._estimate is None:
            self._estimate = self.kit.estimated(self.shard)
        return self._estimate

    def _tokens(self) -> dict[str, int]:
        """The shard's tokens by model (estimated only when a cap is configured)."""
        if self._held_tokens is None:
            self._held_tokens = self.kit.tokens(self.shard)
        return self._held_tokens

    async def _find(self) -> BatchInfo | None:
        """The shard's live batch at the provider, if any.

        A batch the provider refused for its queue carries the shard's id too;
        it never ran and is not the shard's batch. The newest batch is found
        first, so one made after a refused one is found before it.
        """
        found = await self.endpoint.find(journaled_shard(self.journal, self.shard))
        if found is not None and refused_for_queue(found):
            return None
        return found

    async def _create(self) -> BatchInfo | None:
        """Create the shard's batch, unless the provider already has it; ``None``: it had.

        While the provider cannot yet tell which of its batches is the shard's
        (:class:`~providers.errors.BatchInDoubtError`: after a crash, or a
        create that failed without an answer), the shard waits on the poll
        schedule and asks again, the create lock let go meanwhile: such a
        provider takes a batch as the shard's only once its results show the
        shard's keys, so no other shard's batch is mistaken for it.

        Raises:
            QueueRefusedError: see :meth:`_create_once`.
            RateLimitError: see :meth:`_create_once`.
        """
        schedule = None
        while True:
            try:
                return await self._create_once()
            except BatchInDoubtError as doubt:
                if schedule is None:
                    schedule = self.kit.polls()
                    log.warning(
                        "batch shard %s: %s; waiting for them to end rather than create its "
                        "batch again (that could pay for it twice)",
                        self.shard.shard_id,
                        doubt,
                    )
                await asyncio.sleep(schedule.next_wait())

    async def _create_once(self) -> BatchInfo | None:
        """:meth:`_create`, under the create lock, until the provider is in doubt.

        Raises:
            QueueRefusedError: the provider refused the create for its full
                queue (a 429 naming the queue, or one of a provider that words
                its full queue as any quota, once the retry policy gave up);
                the shard is journaled back to ``uploaded``.
            RateLimitError: another 429 the retry policy gave up on; the
                shard is journaled back to ``uploaded`` (no batch was made).
        """
        sid = self.shard.shard_id
        info: BatchInfo | None = None
        # One shard at a time between "submitting" and "created" (save one that
        # waits in doubt, see _create): after a crash at most one is in doubt, so
        # a provider that tells batches apart by their size and time (find)
        # does not meet two of this run's.
        async with self.kit.create_lock:
            if self.shard.state == "submitting":
                # A crash may have come between creating the batch and journaling
                # its id: ask the provider before creating (and paying for) it again.
                info = await self._step("find", self._find)
                if info is not None:
                    self._created(info)
                    return info
                self._say_not_found("its create was sent before the run stopped")
                self._update(state="uploaded")
            self._update(state="submitting")
            shard = self.shard
            tried = False

            async def create_unless_found() -> BatchInfo:
                # A failed create may have made the batch (its answer was lost):
                # ask the provider before creating (and paying for) it again.
                nonlocal tried
                if tried:
                    found = await self._find()
                    if found is not None:
                        return found
                    self._say_not_found("its last create failed without an answer")
                first, tried = not tried, True
                try:
                    return await self.endpoint.create(
                        Path(str(shard.path)),
                        shard.input_file_id,
                        shard_id=sid,
                        model=shard.model,
                    )
                except ProviderError as exc:
                    # Only a refusal of the first attempt proves no batch exists.
                    self._refused = first and not exc.retryable
                    if create_refusal(exc) == "queue":
                        # A full queue: waited for room, not tried again at once.
                        raise QueueRefusedError(str(exc)) from exc
                    raise

            try:
                info = await self._step("create", create_unless_found)
            except QueueRefusedError:
                # A 429 proves this try made no batch; any earlier try was
                # asked for (find) before it, so none was made.
                self._update(state="uploaded")
                raise
            except ProviderError as exc:
                if create_refusal(exc) != "rate":
                    raise
                # Still refused once the retry policy gave up: its last try was
                # refused after the provider said it had no batch of this shard
                # (find), so none was made.
                self._update(state="uploaded")
                if refused_at_create(exc, quota_worded=self.kit.queue_full_as_quota):
                    raise QueueRefusedError(str(exc)) from exc
                raise
            self._created(info)
            return info

    def _say_not_found(self, why: str) -> None:
        """Warn that the shard's batch is created again though an earlier create may have made it.

        Paid for twice if that create did make it: only the provider's
        ``find`` can tell, and it found none (a plugin whose ``find`` cannot
        find is seen here).
        """
        log.warning(
            "batch shard %s: %s, and %s finds no batch made for it: it is created again",
            self.shard.shard_id,
            why,
            self.shard.provider,
        )

    def _created(self, info: BatchInfo) -> None:
        self._update(
            state="created",
            batch_id=info.id,
            batch_status=info.state.value,
            counts=_counts(info),
            raw=dict(info.raw),
        )
        self.kit.events.submitted(info, self.shard)

    async def _poll_until_ready(self, info: BatchInfo | None) -> BatchInfo:
        schedule = self.kit.polls()
        previous: BatchState | None = None
        last: tuple[Any, ...] | None = None
        batch_id = str(self.shard.batch_id)
        if info is None:
            info = await self._step("poll", lambda: self.endpoint.poll(batch_id))
        unready_since: float | None = None
        warned = False
        while True:
            snapshot = (info.state, info.total, info.succeeded, info.failed, info.results_ready)
            if snapshot != last:
                self.kit.events.status_changed(info, previous)
                if last is None or info.state != previous:
                    self._update(batch_status=info.state.value, counts=_counts(info))
                previous, last = info.state, snapshot
            if info.state.terminal:
                if info.results_ready:
                    return info
                # A provider (or plugin) that never says its results can be read.
                unready_since = unready_since or time.monotonic()
                if time.monotonic() - unready_since >= ENDED_UNREADY_GRACE:
                    # Read early only when the provider counted its requests and none
                    # succeeded: counts left at their defaults say nothing.
                    if info.total and not info.succeeded:
                        log.warning(
                            "batch %s has ended (%s) and its results still read as not "
                            "ready; reading what it has",
                            batch_id,
                            info.state.value,
                        )
                        readable = dataclasses.replace(info, results_ready=True)
                        # Told as any change is: the display no longer shows it unreadable.
                        self.kit.events.status_changed(readable, info.state)
                        return readable
                    if not warned:
                        warned = True
                        log.warning(
                            "batch %s has ended (%s)%s, but its provider does not say its "
                            "results can be read yet (results_ready); still waiting: the "
                            "answers it holds were paid for (should they never be readable, "
                            "lexibatch batches forget %s gives the batch up, and its "
                            "requests are sent, and paid for, again)",
                            batch_id,
                            info.state.value,
                            f" with {info.succeeded} answers" if info.succeeded else "",
                            batch_id,
                        )
            await asyncio.sleep(schedule.next_wait(info.retry_after))
            info = await self._step("poll", lambda: self.endpoint.poll(batch_id))

    async def _collect(self, info: BatchInfo) -> None:
        seen: set[str] = set()

        async def download() -> None:
            await self._settle_lines(info, seen)
            if not seen and info.succeeded:
                # The provider counts answers, and its results gave none: they
                # are not readable yet (or its plugin reads the wrong file).
                # Queued again, they would be paid for again: read again instead.
                raise _unread(info, self.shard.provider)

        # A download that breaks off is read again from its start, per the one retry
        # policy: the lines settled before the break are skipped, the rest settled then.
        await self._step("download", download)
        self.settlement.finish_missing(self.shard, info, seen)

    async def _settle_lines(self, info: BatchInfo, seen: set[str]) -> None:
        """Read the batch's result lines and settle them chunk by chunk; ``seen`` grows with them.

        Lines whose id ``seen`` holds already (settled by an earlier try of the
        same download) are skipped: a line is settled once.
        """
        settlement = self.settlement
        settled = frozenset(seen)
        chunk: list[ItemResult] = []
        add = chunk.append
        results = self.endpoint.results(info)
        holding = False
        try:
            async for item in results:
                if settled and item.custom_id in settled:
                    continue
                if not holding:
                    # From a chunk's first line until it is stored (see gcpause).
                    GcHold.hold()
                    holding = True
                add(item)
                if len(chunk) >= RESULT_CHUNK:
                    seen.update(map(_custom_id, chunk))
                    settlement.finish_items(self.shard, info, chunk)
                    chunk = []
                    add = chunk.append
                    GcHold.release()
                    holding = False
                    # Let awaiting callers run (and queue their next stage) between chunks.
                    await asyncio.sleep(0)
            if chunk:
                seen.update(map(_custom_id, chunk))
                settlement.finish_items(self.shard, info, chunk)
        finally:
            if holding:
                GcHold.release()

    async def _step(self, what: str, call: Any) -> Any:
        """One provider call of the lifecycle, tried again per the one retry policy.

        An exception outside the error tree (a defect of the provider's
        adapter or plugin) is noted with the step it came from, which the
        defect's message then names (:func:`providers.errors.defect_error`).
        """
        try:
            result = await self.kit.retry.call(call, what=f"batch {what} of {self.shard.shard_id}")
        except LexibatchError:
            raise
        except Exception as exc:
            exc.add_note(f"during the batch's {what}")
            raise
        expected = _RETURNS.get(what)
        if expected is not None and not isinstance(result, expected):
            # Said here, not as the attribute it lacks wherever it is first used.
            names = " or ".join("None" if t is type(None) else t.__name__ for t in expected)
            raise TypeError(
                f"the batch endpoint's {what} returned {type(result).__name__}, not {names}"
            )
        return result


# What each step of the endpoint returns (see providers.protocol.BatchEndpoint).
_RETURNS: dict[str, tuple[type, ...]] = {
    "upload": (str, type(None)),
    "create": (BatchInfo,),
    "find": (BatchInfo, type(None)),
    "poll": (BatchInfo,),
}

# The id each result line names (read for a whole chunk at once).
_custom_id = attrgetter("custom_id")


def _unread(info: BatchInfo, provider: str) -> ProviderError:
    """The error of an ended batch whose results gave no line though it counts answers."""
    error = ProviderError(
        f"batch {info.id} counts {info.succeeded:,} answers, but its results gave no line: "
        "they were paid for, so its requests are not sent again; the batch stays journaled "
        "and is read again by the next run (or lexibatch resume); should its results never "
        f"come, lexibatch batches forget {info.id} gives it up (its requests are then sent, "
        "and paid for, again)",
        provider=provider,
        code="results_unread",
    )
    error.retryable = True  # read again, per the retry policy
    return error


def _counts(info: BatchInfo) -> dict[str, int]:
    return {"total": info.total, "succeeded": info.succeeded, "failed": info.failed}
