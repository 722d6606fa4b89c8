"""The batch strategy: the same ``await`` as immediate mode, answered from provider batches.

Requests from every concurrently running coroutine go into shared shards
(like a DataLoader). Shards are dispatched when they reach the provider's
limit, when no new request has come for ``batch.linger`` seconds, or when
``execute_batch()`` is awaited, so ``gather`` over many calls always
completes and each stage of a multi-stage pipeline becomes one batch round.

Every request is journaled (queued) before its shard is written, and every
shard before each provider call (see :mod:`plugins.batch.executor`). On
start, unfinished shards of earlier runs are resumed, and a request that is
already in a submitted batch is waited for rather than sent again.

Each request ends in exactly one of: succeeded (validated) or a typed error,
decided by :mod:`plugins.batch.settlement` as each shard's executor hands it
the batch's lines. Retryable item failures (expired, cancelled, 5xx, rate
limit, timeout, schema-invalid content) are sent again — in the next batch
round or immediately, per ``batch.retry_via`` — for at most
``batch.max_retry_rounds`` rounds; permanent ones fail that request alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from plugins.batch.accumulator import BatchAccumulator, SealedShard
from plugins.batch.budget import BatchBudget
from plugins.batch.cleanup import FileCleanup
from plugins.batch.executor import BatchExecutor
from plugins.batch.fates import error_dict, fail_future, retries_used
from plugins.batch.gcpause import GcHold
from plugins.batch.journal import SchemaBook
from plugins.batch.kit import executor_kit
from plugins.batch.oversize import line_problem
from plugins.batch.promise import BatchPromise, BatchRequest
from plugins.batch.settlement import Settlement
from plugins.batch.shutdown import StrategyShutdown
from plugins.batch.stopped import say_why_stopped
from plugins.batch.unasked import UnaskedRequests
from plugins.batch.yielding import ClaimYield
from plugins.estimate import price_provider
from plugins.lease import BatchLease
from plugins.requestevents import RequestEvents
from plugins.store import UNFINISHED_SHARD_STATES, JournalRequest, Shard
from providers.errors import (
    InputError,
    LexibatchError,
    StoreWriteError,
    UnsupportedError,
    defect_error,
)
from providers.types import BatchLimits, Mode, Request, Response

if TYPE_CHECKING:
    from plugins.registry import StrategyContext

__all__ = ["BatchStrategy"]

log = logging.getLogger("lexibatch.batch")

# The collector is held off while one loop turn queues requests (see
# gcpause), but let run after this many, so no caller holds it off for long.
BURST_HOLD_REQUESTS = 20_000

# Journal rows are written in groups; a group is always flushed before the
# shard holding its requests is journaled, so "queued" precedes "written".
# The rows are appended, but each commit rewrites every page of the key
# index (``keys``, plugins.store.keyids) its random new keys land on; once
# that index outgrows a group, larger groups write fewer pages per row (a
# batch run into a store of 500,000 requests spent a third of the commit
# time it did with groups of 10,000). The byte bound keeps the buffer small when
# prompts are long: short ones (about 200 bytes of body) fill a group of
# 50,000, 4 KB ones flush at about 4,000 rows.
JOURNAL_CHUNK = 50_000
JOURNAL_CHUNK_BYTES = 16 << 20


class BatchStrategy(StrategyShutdown):
    """Collects requests into provider batches; the strategy behind ``mode = "batch"``."""

    name = "batch"

    def __init__(self, context: StrategyContext) -> None:
        endpoint = context.provider.batch
        if endpoint is None:
            raise UnsupportedError(
                f"provider {context.provider_name!r} has no batch endpoint — use --mode immediate"
            )
        self.context = context
        self.endpoint = endpoint
        self.store = context.store
        self.settings = context.settings
        self.hooks = context.hooks
        self.provider_name = context.provider_name
        self._price_provider = price_provider(context.provider_name)
        bset = context.settings.batch
        limits = endpoint.limits
        if context.spec.batch is not None:
            # What the provider declared when it registered, lowered by its options
            # (max_batch_requests, max_batch_bytes), bounds what its endpoint says.
            options = context.settings.provider_settings(context.provider_name)
            declared = context.spec.batch.limits(options)
            limits = BatchLimits(
                max_requests=min(limits.max_requests, declared.max_requests),
                max_bytes=min(limits.max_bytes, declared.max_bytes),
                mixed_models=limits.mixed_models and declared.mixed_models,
            )
        self.limits = BatchLimits(
            max_requests=min(limits.max_requests, bset.max_requests or limits.max_requests),
            max_bytes=min(limits.max_bytes, bset.max_bytes or limits.max_bytes),
            mixed_models=limits.mixed_models,
        )
        self.accumulator = BatchAccumulator(
            context.settings.spool_path, self.limits, self._on_sealed, self._on_spool_lost
        )
        # Read once, not per request: the settings of a strategy do not change.
        self._encode = endpoint.encode
        self._budgeted = bset.budget_usd is not None
        # A line of this many bytes (and its newline) is over the batch limit.
        self._max_line = self.limits.max_bytes
        self._journal_buffer: list[JournalRequest] = []
        self._journal_bytes = 0
        self._executors: dict[str, asyncio.Task[None]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._linger_handle: asyncio.TimerHandle | None = None
        self._last_arrival = 0.0
        self._rejoined: set[str] = set()
        self._burst = 0
        self._started = False
        # One runner per store, claimed before anything is resumed or queued.
        self._lease = BatchLease(self.store.path)
        self._lease.acquire()
        self._schemas = SchemaBook(self.store)
        self._budget = BatchBudget(bset.budget_usd)
        # The requests of this run waiting for an answer, and the keys of each
        # shard sealed by this run (none of their results can be stored yet,
        # so collecting them needs no look at the journal): both shared with
        # the settlement, which ends them.
        self._pending: dict[str, BatchRequest] = {}
        self._fresh: dict[str, list[str]] = {}
        cleanup = FileCleanup(self.store, endpoint, self.provider_name, enabled=bset.delete_files)
        #: Ends each request of this strategy's batches.
        self.settlement = Settlement(
            context,
            schemas=self._schemas,
            accumulator=self.accumulator,
            budget=self._budget,
            pending=self._pending,
            fresh=self._fresh,
            requeue=self._requeue,
            side_task=self._side_task,
            estimate=self._estimate_cost,
            cleanup=cleanup,
        )
        #: What every executor of this strategy is given (not the strategy itself).
        self.kit = executor_kit(context, endpoint, self.settlement, cleanup)
        # Requests of shards stopped in this run (their batch may be paid for),
        # by shard: asked again, they wait for that shard collected anew, never
        # for a second batch.
        self._stopped: dict[str, str] = {}
        # A refused journal write is tried again when its shard is sealed, not per request.
        self._journal_refused = False
        # Requests of this run's shards that another process answers (plugins.crossmode).
        self._yielding = ClaimYield(
            self.store, self.provider_name, self.settlement, self._side_task
        )
        # Only a journal with unfinished requests needs a lookup per request.
        self._resumable = self.store.has_open_requests(self.provider_name)

    # -- submitting --------------------------------------------------------

    async def run(self, request: Request) -> Response:
        """Queue ``request`` into a shared batch and wait for its result."""
        return await self.submit(request)

    def submit(self, request: Request, bare: bytes | None = None) -> BatchPromise:
        """Queue ``request`` without waiting; the returned promise resolves with its result.

        Awaiting the promise is optional: an error nobody reads is not logged.
        ``bare``: the request's
        :meth:`~providers.types.Request.canonical_json_without_schema`, when
        the caller serialized it already (its key was hashed from them).
        """
        if not self._started:
            self._ensure_started()
        if self._burst and self._burst % BURST_HOLD_REQUESTS:
            self._burst += 1  # within a turn's burst, the collector held already
        else:
            self._hold_for_burst()
        # Serialized once: the key is hashed from these bytes (when not known
        # yet), and the journal row is written from them.
        if bare is None:
            bare = request.canonical_json_without_schema()
        key = request.key
        pending = self._pending.get(key)
        if pending is not None:
            if pending.future is None:
                # A retry of an earlier run's request, already queued: wait for it.
                pending.future = BatchPromise(key)
            return pending.future
        future = BatchPromise(key)
        stopped = self._stopped.pop(key, None) if self._stopped else None
        if stopped is not None and self._restart(stopped):
            row = self.store.get_requests(self.provider_name, [key]).get(key)
            attempts = retries_used(row.attempts) if row is not None else 0
            self._pending[key] = BatchRequest.of(request, future, attempts=attempts)
            return future
        if self._resumable and self._attach_to_submitted(request, future):
            return future
        pending = BatchRequest.of(request, future)
        self._enqueue(request, pending, journal=True, bare=bare)
        return future

    def _hold_for_burst(self) -> None:
        # Requests queued in one loop turn (a gather starting thousands of
        # calls, or a loop of submit()) are queued with the collector held
        # off; the hold ends when the loop turns, or every BURST_HOLD_REQUESTS.
        if self._burst == 0:
            GcHold.hold()
            asyncio.get_running_loop().call_soon(self._end_burst)
        elif self._burst % BURST_HOLD_REQUESTS == 0:
            GcHold.release()
            GcHold.hold()
        self._burst += 1

    def _end_burst(self) -> None:
        if self._burst:
            self._burst = 0
            GcHold.release()
            # The turn's last request came at most this long ago (see _arm_linger).
            self._last_arrival = asyncio.get_running_loop().time()

    def _restart(self, shard_id: str) -> bool:
        """Run a shard stopped earlier in this run again; whether it is running now.

        Its other requests stay noted as stopped in it: asked again while it
        runs, they wait for it too, never for a second batch of their own.
        """
        task = self._executors.get(shard_id)
        if task is not None and not task.done():
            return True
        shard = self.store.get_shard(shard_id)
        if shard is None or shard.state not in UNFINISHED_SHARD_STATES:
            return False
        self._start_executor(shard)
        return True

    def _attach_to_submitted(self, request: Request, future: BatchPromise) -> bool:
        row = self.store.get_requests(self.provider_name, [request.key]).get(request.key)
        task = self._executors.get(row.shard_id or "") if row is not None else None
        if row is None or row.state != "submitted" or task is None or task.done():
            return False
        pending = BatchRequest.of(request, future, attempts=retries_used(row.attempts))
        self._pending[request.key] = pending
        return True

    def _enqueue(
        self, request: Request, pending: BatchRequest, *, journal: bool, bare: bytes | None = None
    ) -> None:
        """Spool ``request`` into an open shard (journaling it as queued, if new).

        ``bare``: the request's :meth:`~Request.canonical_json_without_schema`, if made already.

        Raises:
            InputError: a new request is too large for any batch, or the provider
                cannot encode it; nothing was journaled.
        """
        key = pending.key
        problem: str | None = None
        try:
            line = self._encode(request, key)
        except Exception as exc:
            # The provider's adapter cannot write it (e.g. a schema it cannot convert).
            what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            line, problem = b"", f"the provider cannot encode it ({what})"
        else:
            if len(line) >= self._max_line:
                problem = line_problem(self.endpoint, self.limits, request)
        est_cost = 0.0
        if problem is None and self._budgeted:
            priced = self.context.prices.estimate(request, "batch", self._price_provider)
            if priced is None:
                # Counted as free, it would pass any budget: a budget cannot bound it.
                problem = (
                    f"the price map has no price for {request.model}: a budget (--budget, "
                    "batch.budget_usd) cannot bound what it costs — choose a priced model, "
                    "or run without a budget"
                )
            est_cost = priced or 0.0
        if problem is not None:
            error = InputError(f"request {key}: {problem}")
            if journal:
                raise error
            # Journaled by a run with a larger limit, another version or no
            # budget: it fails alone.
            self.settlement.fail_unbuilt(key, error)
            return
        self._pending[key] = pending
        try:
            shard_id = self.accumulator.add(key, request.model, line, est_cost)
        except StoreWriteError:
            # The spool refused it: not queued, so nothing may wait for it here.
            self._pending.pop(key, None)
            raise
        if journal:
            # Journaled with its open shard's id, so sealing marks the whole
            # shard submitted in one statement.
            body = self._schemas.encode(request, bare)
            buffer = self._journal_buffer
            buffer.append(
                JournalRequest(
                    key,
                    request.model,
                    request.task,
                    body,
                    "queued",
                    shard_id,
                    pending.attempts,
                    None,
                    0.0,
                    0.0,
                    request.key_bytes,
                )
            )
            self._journal_bytes += len(body)
            # A store that refused a write is tried again when the shard is
            # sealed (only then do its requests fail), not at every request.
            if not self._journal_refused and (
                len(buffer) >= JOURNAL_CHUNK or self._journal_bytes >= JOURNAL_CHUNK_BYTES
            ):
                try:
                    self._flush_journal()
                except StoreWriteError:
                    self._journal_refused = True
        else:
            # Already journaled (a retry round): its row names an older shard.
            self._rejoined.add(key)
        # A full shard leaves now, its rows journaled, whatever the linger.
        if self.accumulator.full:
            self.accumulator.seal_if_full(request.model)
        if not self._burst or self._linger_handle is None:
            self._arm_linger()

    def _requeue(self, request: Request, pending: BatchRequest) -> None:
        """Queue an already journaled request into an open shard (a retry round, a split)."""
        self._enqueue(request, pending, journal=False)

    def _estimate_cost(self, request: Request, mode: Mode = "batch") -> float:
        # The estimator `--estimate` prints, so a budget just above it runs.
        cost = self.context.prices.estimate(request, mode, self._price_provider)
        return cost or 0.0

    def _flush_journal(self) -> None:
        if not self._journal_buffer:
            return
        rows = self._journal_buffer
        schemas = self._schemas.take()
        try:
            # The schemas the rows name commit with them, never after.
            with self.store.in_transaction():
                self.store.add_schemas(schemas)
                self.store.queue_requests(self.provider_name, rows)
        except BaseException:
            # Kept for the next try: no shard is sent before its rows are journaled.
            self._schemas.name(schemas)
            raise
        self._journal_buffer = []
        self._journal_bytes = 0
        self._journal_refused = False

    def _arm_linger(self) -> None:
        if self._burst and self._linger_handle is not None:
            # Within a turn of submits: its end (_end_burst, called before any
            # timer the turn made due) marks the arrival, not each request
            # (_enqueue does not call this then).
            return
        loop = asyncio.get_running_loop()
        self._last_arrival = loop.time()
        if self._linger_handle is None:
            self._linger_handle = loop.call_later(self.settings.batch.linger, self._on_linger)

    def _on_linger(self) -> None:
        self._linger_handle = None
        loop = asyncio.get_running_loop()
        remaining = self._last_arrival + self.settings.batch.linger - loop.time()
        if remaining > 0.001:
            self._linger_handle = loop.call_later(remaining, self._on_linger)
            return
        self._dispatch_all()

    def _dispatch_all(self) -> None:
        # Every journal row waiting belongs to an open shard: sealing flushes it.
        self.accumulator.seal_all()

    # -- dispatching -------------------------------------------------------

    def _on_sealed(self, sealed: SealedShard) -> None:
        try:
            shard = self._journal_sealed(sealed)
        except StoreWriteError as exc:
            # Nothing of the shard was sent: its requests fail with the store's
            # error; those already journaled as queued go with the next run.
            # Each waiter gets the error; the log only adds which shard it was.
            log.info("batch shard %s not sent: %s", sealed.shard_id, exc)
            sealed.path.unlink(missing_ok=True)
            kept = [r for r in self._journal_buffer if r.shard_id != sealed.shard_id]
            self._journal_buffer = kept
            self._journal_bytes = sum(len(r.body) for r in kept)
            for key in sealed.keys:
                self.settlement.reject(key, exc)
            return
        keys = sealed.keys
        if shard is not None:
            try:
                shard, keys = self._yielding.take_out(shard, keys)
            except StoreWriteError as exc:
                # Journaled, not sent: the next run (or resume) sends it.
                log.error("batch shard %s not sent: %s", sealed.shard_id, exc)
                for key in keys:
                    self.settlement.reject(key, exc)
                return
        if shard is not None:
            self._fresh[shard.shard_id] = keys
            self._start_executor(shard)

    def _on_spool_lost(self, keys: list[str], error: StoreWriteError) -> None:
        """An open shard's spool file could not be written: nothing of it was sent."""
        lost = set(keys)
        kept = [r for r in self._journal_buffer if r.key not in lost]
        self._journal_buffer = kept
        self._journal_bytes = sum(len(r.body) for r in kept)
        for key in keys:
            self.settlement.reject(key, error)

    def _journal_sealed(self, sealed: SealedShard) -> Shard | None:
        """Journal a sealed shard (its requests first); ``None`` when the budget refuses it."""
        self._flush_journal()
        error = self._budget.refusal(sealed.est_cost)
        if error is not None:
            sealed.path.unlink(missing_ok=True)
            self.store.set_request_state(
                self.provider_name, sealed.keys, "failed", error=error_dict(error)
            )
            for key in sealed.keys:
                self.settlement.reject(key, error)
            return None
        # Only a request queued again (a retry round, a resume) has rounds behind it.
        rejoined = [k for k in sealed.keys if k in self._rejoined] if self._rejoined else []
        rounds = max((self._pending[k].attempts for k in rejoined if k in self._pending), default=0)
        shard = Shard(
            shard_id=sealed.shard_id,
            provider=self.provider_name,
            model=sealed.model if not self.limits.mixed_models else "*",
            round=rounds,
            state="written",
            path=str(sealed.path),
            requests=len(sealed.keys),
            bytes=sealed.bytes,
        )
        self._rejoined.difference_update(rejoined)
        with self.store.in_transaction():
            self.store.add_shard(shard)
            self.store.submit_shard_requests(self.provider_name, sealed.shard_id)
            if rejoined:
                self.store.set_request_state(
                    self.provider_name, rejoined, "submitted", shard_id=sealed.shard_id
                )
        self._budget.commit(sealed.est_cost, shard.shard_id)
        return shard

    def _start_executor(self, shard: Shard) -> None:
        task = asyncio.get_running_loop().create_task(
            BatchExecutor(self.kit, shard).run(), name=f"lexibatch-{shard.shard_id}"
        )
        self._executors[shard.shard_id] = task
        task.add_done_callback(functools.partial(self._executor_done, shard.shard_id))

    def _executor_done(self, shard_id: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if self._stopped:
                # Collected at last: its requests are answered, no longer stopped.
                for key in [k for k, sid in self._stopped.items() if sid == shard_id]:
                    del self._stopped[key]
            return
        say_why_stopped(shard_id, exc)
        if not isinstance(exc, LexibatchError):
            # Callers meet the one error tree, whatever the provider's code raised.
            exc = defect_error(exc, provider=self.provider_name, doing=f"batch shard {shard_id}")
        fresh = self._fresh.pop(shard_id, [])
        try:
            # Still submitted in this shard: not those already answered or
            # queued again for a retry round.
            keys = self.store.shard_keys(shard_id, "submitted")
        except LexibatchError as unreadable:
            log.error("batch shard %s: its requests could not be read: %s", shard_id, unreadable)
            keys = [k for k in fresh if k in self._pending]
        for key in keys:
            self._stopped[key] = shard_id
            pending = self._pending.pop(key, None)
            if pending is not None and pending.future is not None and not pending.future.done():
                fail_future(pending.future, exc)

    def _ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        for shard in self.store.shards(self.provider_name, states=UNFINISHED_SHARD_STATES):
            self._start_executor(shard)
        leftover = self.kit.cleanup.pending()
        if leftover:
            # Files of batches collected by an earlier run that stopped before deleting them.
            self._side_task(self._delete_leftover_files(leftover))

    async def _delete_leftover_files(self, shard_ids: list[str]) -> None:
        for shard_id in shard_ids:
            await self.kit.cleanup.run(shard_id)

    def _side_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- control -----------------------------------------------------------

    async def flush(self) -> None:
        """Dispatch everything pending and wait until every request has resolved."""
        self._ensure_started()
        # Let tasks created just before this call reach their first submit.
        for _ in range(3):
            await asyncio.sleep(0)
        while True:
            self._dispatch_all()
            running: list[asyncio.Task[None]] = [
                t for t in self._executors.values() if not t.done()
            ]
            running.extend(self._side_tasks)
            if not running:
                if len(self.accumulator) == 0:
                    return
                continue
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for _ in range(3):
                await asyncio.sleep(0)

    async def resume(self) -> int:
        """Resume every unfinished shard and queued request of earlier runs; wait for all.

        Returns:
            How many queued requests were submitted anew.
        """
        self._ensure_started()
        # Nobody awaits what this finishes: the observers are told all the same.
        unasked = self.settlement.unasked = UnaskedRequests(RequestEvents(self.context.hooks))
        requeued = 0
        queued = [
            row
            for row in self.store.requests_in_state(self.provider_name, "queued")
            if row.key not in self._pending
        ]
        # Answered meanwhile (immediately, by a later run): not sent again.
        answered = self.store.result_keys(self.provider_name, (row.key for row in queued))
        if answered:
            self.store.set_request_state(self.provider_name, answered, "succeeded")
        queued = [row for row in queued if row.key not in answered]
        decoded = self._schemas.decode_each(
            [row.key for row in queued], [row.body for row in queued], check=True
        )
        for row, request in zip(queued, decoded, strict=True):
            if isinstance(request, InputError):
                self.settlement.fail_unbuilt(row.key, request)
                continue
            pending = BatchRequest.of(
                request, unasked.promise_for(request), retries_used(row.attempts)
            )
            self._enqueue(request, pending, journal=False)
            requeued += 1
        try:
            await self.flush()
        finally:
            unasked.flush()
        return requeued
