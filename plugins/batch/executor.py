"""Driving one shard through its provider batch's lifecycle, journaling every step.

The journal states of a shard, each recorded *before* the next side effect::

    written ──upload──▶ uploaded ──▶ submitting ──create──▶ created
        ──poll…──▶ ended ──read results, store each──▶ collected ──▶ files deleted
                              (or failed, when the provider rejected it)

A crash anywhere resumes from the recorded state: an uploaded file is not
uploaded again, a shard in ``submitting`` first asks the provider whether the
batch exists (``find``) before creating it, a created batch is only polled,
and results are stored idempotently (a result already stored is not stored or
billed again).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.batch.gcpause import GcHold
from plugins.batch.ledgercheck import check_ledger
from plugins.batch.polling import PollSchedule
from plugins.retry import is_unreachable
from providers.errors import LexibatchError, ProviderError, UserError
from providers.types import BatchInfo, BatchState, ItemResult

if TYPE_CHECKING:
    from plugins.batch.strategy import BatchStrategy
    from plugins.store import Shard
    from providers.protocol import BatchEndpoint

__all__ = ["BatchExecutor"]

log = logging.getLogger("lexibatch.batch")

# Results are stored in chunks: one transaction per chunk keeps a 50,000-line
# batch to a handful of commits (each commit of randomly keyed rows is dear)
# while a crash loses at most one chunk of work, which is read again on resume.
RESULT_CHUNK = 10_000


class BatchExecutor:
    """Drives one shard (one provider batch) from its journaled state to collected."""

    def __init__(self, owner: BatchStrategy, shard: Shard) -> None:
        self.owner = owner
        self.shard = shard
        self.endpoint: BatchEndpoint = owner.endpoint
        self.store = owner.store
        # The provider refused this run's first attempt to create the batch.
        self._refused = False

    def _update(self, **fields: Any) -> None:
        self.shard = self.store.update_shard(self.shard.shard_id, **fields)

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
            if is_unreachable(exc):
                # The retry policy gave up on reaching the provider: not the
                # batch's fate, and a retry round would only try again as
                # long. The shard stays journaled; the same command resumes it.
                raise
            if self.owner.split_refused(self.shard, exc):
                return
            log.warning("batch shard %s failed: %s", self.shard.shard_id, exc)
            self._update(state="failed", error=str(exc))
            self.owner.fail_shard(self.shard, exc)

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
        if self.shard.state == "written":
            path = Path(str(self.shard.path))
            file_id = await self._step("upload", lambda: self.endpoint.upload(path, shard_id=sid))
            self._update(state="uploaded", input_file_id=file_id)
        info: BatchInfo | None = None
        # Its batch, if any, was created after the shard was journaled.
        since = self.shard.created_at
        # One shard at a time between "submitting" and "created": after a crash
        # at most one is in doubt, so asking the provider for it (find) cannot
        # mistake another shard's batch for its own.
        async with self.owner.create_lock:
            if self.shard.state == "submitting":
                # A crash may have come between creating the batch and journaling
                # its id: ask the provider before creating (and paying for) it again.
                info = await self._step("find", lambda: self.endpoint.find(sid, since=since))
                if info is not None:
                    self._created(info)
                else:
                    self._update(state="uploaded")
            if self.shard.state == "uploaded":
                self._update(state="submitting")
                shard = self.shard
                tried = False

                async def create_unless_found() -> BatchInfo:
                    # A failed create may have made the batch (its answer was lost):
                    # ask the provider before creating (and paying for) it again.
                    nonlocal tried
                    if tried:
                        found = await self.endpoint.find(sid, since=since)
                        if found is not None:
                            return found
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
                        raise

                info = await self._step("create", create_unless_found)
                self._created(info)
        if self.shard.state in ("created", "ended"):
            info = await self._poll_until_ready(info)
            if self.shard.state == "created":
                self._update(
                    state="ended",
                    batch_status=info.state.value,
                    counts=_counts(info),
                    raw=dict(info.raw),
                )
            await self._collect(info)
            with self.store.in_transaction():
                self.owner.shard_answered(self.shard)
                self._update(state="collected")
                # Journaled with "collected": never before the results are stored.
                cleanup = self.owner.cleanup.plan(self.shard.shard_id, info)
            self.owner.shard_collected(self.shard)
            check_ledger(self.store, info)
            if cleanup:
                await self.owner.cleanup.run(self.shard.shard_id)

    def _created(self, info: BatchInfo) -> None:
        self._update(
            state="created",
            batch_id=info.id,
            batch_status=info.state.value,
            counts=_counts(info),
            raw=dict(info.raw),
        )
        self.owner.hooks.batch_submitted(
            batch=info,
            shard_id=self.shard.shard_id,
            provider=self.owner.provider_name,
            requests=self.shard.requests,
        )

    async def _poll_until_ready(self, info: BatchInfo | None) -> BatchInfo:
        settings = self.owner.settings.batch
        schedule = PollSchedule(
            settings.first_poll, settings.poll_interval, settings.max_poll_interval
        )
        previous: BatchState | None = None
        last: tuple[Any, ...] | None = None
        batch_id = str(self.shard.batch_id)
        if info is None:
            info = await self._step("poll", lambda: self.endpoint.poll(batch_id))
        while True:
            snapshot = (info.state, info.total, info.succeeded, info.failed, info.results_ready)
            if snapshot != last:
                self.owner.hooks.batch_status_changed(
                    batch=info, previous=previous, provider=self.owner.provider_name
                )
                if last is None or info.state != previous:
                    self._update(batch_status=info.state.value, counts=_counts(info))
                previous, last = info.state, snapshot
            if info.state.terminal and info.results_ready:
                return info
            await asyncio.sleep(schedule.next_wait(info.retry_after))
            info = await self._step("poll", lambda: self.endpoint.poll(batch_id))

    async def _collect(self, info: BatchInfo) -> None:
        owner = self.owner
        seen: set[str] = set()
        chunk: list[ItemResult] = []
        results = self.endpoint.results(info)
        holding = False
        try:
            async for item in results:
                if not holding:
                    # From a chunk's first line until it is stored (see gcpause).
                    GcHold.hold()
                    holding = True
                seen.add(item.custom_id)
                chunk.append(item)
                if len(chunk) >= RESULT_CHUNK:
                    owner.finish_items(self.shard, info, chunk)
                    chunk = []
                    GcHold.release()
                    holding = False
                    # Let awaiting callers run (and queue their next stage) between chunks.
                    await asyncio.sleep(0)
            if chunk:
                owner.finish_items(self.shard, info, chunk)
        finally:
            if holding:
                GcHold.release()
        owner.finish_missing(self.shard, info, seen)

    async def _step(self, what: str, call: Any) -> Any:
        """One provider call of the lifecycle, tried again per the one retry policy."""
        return await self.owner.context.retry.call(
            call, what=f"batch {what} of {self.shard.shard_id}"
        )


def _counts(info: BatchInfo) -> dict[str, int]:
    return {"total": info.total, "succeeded": info.succeeded, "failed": info.failed}
