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

Each request ends in exactly one of: succeeded (validated) or a typed error.
Retryable item failures (expired, cancelled, 5xx, rate limit, timeout,
schema-invalid content) are sent again — in the next batch round or
immediately, per ``batch.retry_via`` — for at most ``batch.max_retry_rounds``
rounds; permanent ones fail that request alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.batch.accumulator import BatchAccumulator, SealedShard
from plugins.batch.cleanup import FileCleanup
from plugins.batch.executor import BatchExecutor
from plugins.batch.gcpause import GcHold
from plugins.batch.journal import SchemaBook
from plugins.batch.lease import BatchLease
from plugins.batch.oversize import halved, halved_to_fit, line_problem, too_large
from plugins.batch.promise import BatchPromise, BatchRequest
from plugins.batch.queuecap import QueueRoom
from plugins.batch.reconcile import reconcile
from plugins.batch.usercancel import cancelled_error, user_cancelled
from plugins.batch.yielding import ClaimYield
from plugins.estimate import price_provider
from plugins.ledger import Pricer, call_record, stored_result
from plugins.results import build_response, more_tokens, storable, unusable
from plugins.retry import is_unreachable
from plugins.store import UNFINISHED_SHARD_STATES, JournalRequest, Shard
from providers.errors import (
    AuthenticationError,
    BatchCancelledError,
    BatchExpiredError,
    BatchFailedError,
    BatchItemError,
    BudgetExceededError,
    InputError,
    LexibatchError,
    ProviderError,
    StoreWriteError,
    UnsupportedError,
)
from providers.types import (
    BatchInfo,
    BatchLimits,
    BatchState,
    ItemResult,
    Mode,
    Request,
    Response,
)

if TYPE_CHECKING:
    from plugins.registry import StrategyContext
    from plugins.store import CallRecord, StoredResult

__all__ = ["BatchStrategy"]

log = logging.getLogger("lexibatch.batch")

# The collector is held off while one loop turn queues requests (see
# gcpause), but let run after this many, so no caller holds it off for long.
BURST_HOLD_REQUESTS = 20_000

# Journal rows are written in groups; a group is always flushed before the
# shard holding its requests is journaled, so "queued" precedes "written".
# Each commit rewrites the index pages its randomly keyed rows touch, so
# larger groups cost less per row (10,000 rows: a quarter less than 2,000);
# the byte bound keeps the buffer small when prompts are long.
JOURNAL_CHUNK = 10_000
JOURNAL_CHUNK_BYTES = 4 << 20


def _fail(future: asyncio.Future[Response], error: BaseException) -> None:
    future.set_exception(error)
    # The error is the promise's to report: a request nobody awaits (queued
    # with submit(), or resumed from the journal) must not make asyncio log
    # it as never retrieved. An awaiting caller still receives it.
    future.exception()


class BatchStrategy:
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
        self.limits = BatchLimits(
            max_requests=min(limits.max_requests, bset.max_requests or limits.max_requests),
            max_bytes=min(limits.max_bytes, bset.max_bytes or limits.max_bytes),
            mixed_models=limits.mixed_models,
        )
        self.accumulator = BatchAccumulator(
            context.settings.spool_path, self.limits, self._on_sealed, self._on_spool_lost
        )
        self._pending: dict[str, BatchRequest] = {}
        self._journal_buffer: list[JournalRequest] = []
        self._journal_bytes = 0
        self._executors: dict[str, asyncio.Task[None]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._linger_handle: asyncio.TimerHandle | None = None
        self._last_arrival = 0.0
        self._rejoined: set[str] = set()
        # The keys of each shard sealed by this run: none of their results
        # can be stored yet, so collecting them needs no look at the journal.
        self._fresh: dict[str, list[str]] = {}
        self._burst = 0
        self._committed_usd = 0.0
        # Each budgeted shard's estimate, until its batch is known to be billed or refused.
        self._shard_cost: dict[str, float] = {}
        self._started = False
        self._closed = False
        # One runner per store, claimed before anything is resumed or queued.
        self._lease = BatchLease(self.store.path)
        self._lease.acquire()
        self._schemas = SchemaBook(self.store)
        #: Deletes collected batches' files at the provider (``batch.delete_files``).
        self.cleanup = FileCleanup(
            self.store, endpoint, self.provider_name, enabled=bset.delete_files
        )
        #: Held by an executor from journaling "submitting" until its batch is created.
        self.create_lock = asyncio.Lock()
        #: The tokens each model has enqueued, and the shards waiting for room.
        pset = context.settings.provider_settings(self.provider_name)
        self.queue = QueueRoom(
            pset.enqueued_token_cap,
            pset.max_enqueued_tokens is not None or bool(pset.max_enqueued_tokens_by_model),
            (bset.poll_interval, bset.max_poll_interval),
            functools.partial(_waiting_for_room, self.hooks, self.provider_name),
        )
        # Requests of shards stopped in this run (their batch may be paid for),
        # by shard: asked again, they wait for that shard collected anew, never
        # for a second batch.
        self._stopped: dict[str, str] = {}
        # A refused journal write is tried again when its shard is sealed, not per request.
        self._journal_refused = False
        # Journaled requests failed because they cannot be rebuilt or sent (see _fail_unbuilt).
        self._unbuilt = 0
        # Requests of this run's shards that another process answers (plugins.crossmode).
        self._yielding = ClaimYield(self)
        # Shards found cancelled by the user (said once each).
        self._cancel_told: set[str] = set()
        # Only a journal with unfinished requests needs a lookup per request.
        self._resumable = self.store.has_open_requests(self.provider_name)

    # -- submitting --------------------------------------------------------

    async def run(self, request: Request) -> Response:
        """Queue ``request`` into a shared batch and wait for its result."""
        return await self.submit(request)

    def submit(self, request: Request) -> BatchPromise:
        """Queue ``request`` without waiting; the returned promise resolves with its result.

        Awaiting the promise is optional: an error nobody reads is not logged.
        """
        self._ensure_started()
        self._hold_for_burst()
        key = request.key
        pending = self._pending.get(key)
        if pending is not None:
            if pending.future is None:
                # A retry of an earlier run's request, already queued: wait for it.
                pending.future = asyncio.get_running_loop().create_future()
            return BatchPromise(key, pending.future)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        stopped = self._stopped.get(key)
        if stopped is not None and self._restart(stopped):
            row = self.store.get_requests(self.provider_name, [key]).get(key)
            attempts = _retries(row.attempts) if row is not None else 0
            self._pending[key] = BatchRequest.of(request, future, attempts=attempts)
            return BatchPromise(key, future)
        if self._resumable and self._attach_to_submitted(request, future):
            return BatchPromise(key, future)
        pending = BatchRequest.of(request, future)
        self._enqueue(request, pending, journal=True)
        return BatchPromise(key, future)

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

    def _restart(self, shard_id: str) -> bool:
        """Run a shard stopped earlier in this run again; whether it is running now."""
        task = self._executors.get(shard_id)
        if task is not None and not task.done():
            return True
        shard = self.store.get_shard(shard_id)
        if shard is None or shard.state not in UNFINISHED_SHARD_STATES:
            return False
        for key in [k for k, sid in self._stopped.items() if sid == shard_id]:
            del self._stopped[key]
        self._start_executor(shard)
        return True

    def _attach_to_submitted(self, request: Request, future: asyncio.Future[Response]) -> bool:
        row = self.store.get_requests(self.provider_name, [request.key]).get(request.key)
        task = self._executors.get(row.shard_id or "") if row is not None else None
        if row is None or row.state != "submitted" or task is None or task.done():
            return False
        pending = BatchRequest.of(request, future, attempts=_retries(row.attempts))
        self._pending[request.key] = pending
        return True

    def _enqueue(self, request: Request, pending: BatchRequest, *, journal: bool) -> None:
        """Spool ``request`` into an open shard (journaling it as queued, if new).

        Raises:
            InputError: a new request is too large for any batch, or the provider
                cannot encode it; nothing was journaled.
        """
        key = pending.key
        problem: str | None = None
        try:
            line = self.endpoint.encode(request, key)
        except Exception as exc:
            # The provider's adapter cannot write it (e.g. a schema it cannot convert).
            what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            line, problem = b"", f"the provider cannot encode it ({what})"
        else:
            if len(line) + 1 > self.limits.max_bytes:
                problem = line_problem(self.endpoint, self.limits, request)
        if problem is not None:
            error = InputError(f"request {key}: {problem}")
            if journal:
                raise error
            # Journaled by a run with a larger limit, or another version: it fails alone.
            self._fail_unbuilt(key, error)
            return
        self._pending[key] = pending
        if self.settings.batch.budget_usd is not None:
            pending.est_cost = self._estimate_cost(request)
        try:
            shard_id = self.accumulator.add(key, request.model, line, pending.est_cost)
        except StoreWriteError:
            # The spool refused it: not queued, so nothing may wait for it here.
            self._pending.pop(key, None)
            raise
        if journal:
            # Journaled with its open shard's id, so sealing marks the whole
            # shard submitted in one statement.
            body = self._schemas.encode(request)
            self._journal_buffer.append(
                JournalRequest(
                    key, request.model, request.task, body, "queued", shard_id, pending.attempts
                )
            )
            self._journal_bytes += len(body)
            # A store that refused a write is tried again when the shard is
            # sealed (only then do its requests fail), not at every request.
            if not self._journal_refused and (
                len(self._journal_buffer) >= JOURNAL_CHUNK
                or self._journal_bytes >= JOURNAL_CHUNK_BYTES
            ):
                try:
                    self._flush_journal()
                except StoreWriteError:
                    self._journal_refused = True
        else:
            # Already journaled (a retry round): its row names an older shard.
            self._rejoined.add(key)
        # A full shard leaves now, its rows journaled, whatever the linger.
        self.accumulator.seal_if_full(request.model)
        self._arm_linger()

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
                self._reject(key, exc)
            return
        keys = sealed.keys
        if shard is not None:
            try:
                shard, keys = self._yielding.take_out(shard, keys)
            except StoreWriteError as exc:
                # Journaled, not sent: the next run (or resume) sends it.
                log.error("batch shard %s not sent: %s", sealed.shard_id, exc)
                for key in keys:
                    self._reject(key, exc)
                return
        if shard is not None:
            self._fresh[shard.shard_id] = keys
            self._start_executor(shard)

    def answered_elsewhere(self, key: str, response: Response) -> None:
        """Another process answered ``key`` (its answer is stored): its caller has it."""
        self.store.set_request_state(self.provider_name, [key], "succeeded")
        pending = self._pending.pop(key, None)
        if pending is not None and pending.future is not None and not pending.future.done():
            pending.future.set_result(response)

    def send_again(self, key: str) -> None:
        """Queue journaled ``key`` into an open shard again (not a retry round)."""
        pending = self._pending.get(key) or self._stubs_for([key]).get(key)
        if pending is None:
            return
        rows = self.store.get_requests(self.provider_name, [key])
        decoded = self._schemas.decode_each(list(rows), [r.body for r in rows.values()])
        for request in decoded:
            if isinstance(request, InputError):
                self._fail_unbuilt(key, request)
            else:
                self._enqueue(request, pending, journal=False)

    def pending_of(self, key: str) -> BatchRequest | None:
        """What finishing ``key`` needs (its caller's future, if one waits)."""
        return self._pending.get(key) or self._stubs_for([key]).get(key)

    def side_task(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` alongside the executors; ``flush`` waits for it too."""
        self._side_task(work)

    def _on_spool_lost(self, keys: list[str], error: StoreWriteError) -> None:
        """An open shard's spool file could not be written: nothing of it was sent."""
        lost = set(keys)
        kept = [r for r in self._journal_buffer if r.key not in lost]
        self._journal_buffer = kept
        self._journal_bytes = sum(len(r.body) for r in kept)
        for key in keys:
            self._reject(key, error)

    def _journal_sealed(self, sealed: SealedShard) -> Shard | None:
        """Journal a sealed shard (its requests first); ``None`` when the budget refuses it."""
        self._flush_journal()
        budget = self.settings.batch.budget_usd
        if budget is not None and self._committed_usd + sealed.est_cost > budget:
            error = BudgetExceededError(self._committed_usd + sealed.est_cost, budget)
            sealed.path.unlink(missing_ok=True)
            self.store.set_request_state(
                self.provider_name, sealed.keys, "failed", error=_error_dict(error)
            )
            for key in sealed.keys:
                self._reject(key, error)
            return None
        rounds = max(
            (self._pending[k].attempts for k in sealed.keys if k in self._pending), default=0
        )
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
        rejoined = [k for k in sealed.keys if k in self._rejoined]
        self._rejoined.difference_update(rejoined)
        with self.store.in_transaction():
            self.store.add_shard(shard)
            self.store.submit_shard_requests(self.provider_name, sealed.shard_id)
            if rejoined:
                self.store.set_request_state(
                    self.provider_name, rejoined, "submitted", shard_id=sealed.shard_id
                )
        self._committed_usd += sealed.est_cost
        if sealed.est_cost:
            self._shard_cost[shard.shard_id] = sealed.est_cost
        return shard

    def _start_executor(self, shard: Shard) -> None:
        task = asyncio.get_running_loop().create_task(
            BatchExecutor(self, shard).run(), name=f"lexibatch-{shard.shard_id}"
        )
        self._executors[shard.shard_id] = task
        task.add_done_callback(functools.partial(self._executor_done, shard.shard_id))

    def _executor_done(self, shard_id: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, ProviderError) and not exc.retryable:
            # The provider refused a batch that exists (or may): trying again
            # will not help if it is gone; only the user can give it up.
            log.error(
                "batch shard %s stopped: %s — it stays journaled; if the provider no longer "
                "has this batch, `lexibatch batches forget %s` gives it up and the next run "
                "sends its requests again",
                shard_id,
                exc,
                shard_id,
            )
        elif is_unreachable(exc):
            # Every shard stops alike when the provider cannot be reached: the
            # error reaches each waiter, and the caller says it once.
            log.info("batch shard %s stopped, stays journaled: %s", shard_id, exc)
        elif isinstance(exc, LexibatchError):
            # The store could not be written, or the provider could not be
            # reached once the batch existed: the journal resumes the shard
            # on the next run; one line says why this one stopped.
            log.error(
                "batch shard %s stopped: %s — it stays journaled; run the same command "
                "again (or lexibatch resume) to collect it",
                shard_id,
                exc,
            )
        else:
            # A bug, not a provider failure (those are handled in the executor):
            # fail the shard's waiters loudly rather than leave them hanging.
            log.error("batch shard %s crashed", shard_id, exc_info=exc)
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
                _fail(pending.future, exc)

    def _ensure_started(self) -> None:
        if self._started:
            return
        self._started = True
        for shard in self.store.shards(self.provider_name, states=UNFINISHED_SHARD_STATES):
            self._start_executor(shard)
        leftover = self.cleanup.pending()
        if leftover:
            # Files of batches collected by an earlier run that stopped before deleting them.
            self._side_task(self._delete_leftover_files(leftover))

    async def _delete_leftover_files(self, shard_ids: list[str]) -> None:
        for shard_id in shard_ids:
            await self.cleanup.run(shard_id)

    def _side_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # -- finishing (called by executors) ------------------------------------

    def finish_items(self, shard: Shard, info: BatchInfo, items: list[ItemResult]) -> None:
        """Store, bill and resolve one chunk of a batch's result lines.

        Idempotent: a line whose request is no longer waiting in this shard
        (answered already, its result stored before a crash, or not ours) is
        skipped, so reading a batch's results again never bills twice.
        """
        pending_of = self._pending
        done: set[str] = set()
        stubs: dict[str, BatchRequest] = {}
        keys = [item.custom_id for item in items]
        here = ("submitted", shard.shard_id)
        fresh = shard.shard_id in self._fresh
        billed: set[str] = set()
        if not fresh:
            # A shard of an earlier run: its results may be partly stored, and
            # a request may have moved on to a later shard (a retry round).
            places = self.store.request_places(self.provider_name, keys)
            done = self.store.result_keys(self.provider_name, keys)
            done.update(k for k in keys if places.get(k) != here)
            # An answer stored, then retired (it no longer fits): read again,
            # it is judged again but was billed already.
            billed = self.store.retired_keys(self.provider_name, info.id, keys)
        unwaited = [k for k in keys if k not in pending_of and k not in done]
        if unwaited and fresh:
            places = self.store.request_places(self.provider_name, unwaited)
            unwaited = [k for k in unwaited if places.get(k) == here]
        # A line of this shard with nobody waiting (its caller gave up) is still
        # stored and billed: it was paid for.
        stubs = self._stubs_for(unwaited)
        results: list[StoredResult] = []
        calls: list[CallRecord] = []
        pricer = Pricer(self.context)
        now = time.time()
        succeeded: list[tuple[BatchRequest, Response]] = []
        failed: list[tuple[BatchRequest, LexibatchError]] = []
        # Asked once a chunk, at its first cancelled line.
        user_cancel: bool | None = None
        for item in items:
            key = item.custom_id
            if key in done:
                continue
            pending = pending_of.get(key) or stubs.get(key)
            if pending is None:
                continue
            done.add(key)
            completion = item.completion
            if completion is None:
                error = item.error or BatchItemError("no result", provider=self.provider_name)
                if isinstance(error, BatchCancelledError):
                    if user_cancel is None:
                        user_cancel = self._user_cancelled(shard)
                    if user_cancel:
                        error = cancelled_error(info.id, self.provider_name)
                failed.append((pending, error))
                continue
            record = call_record(
                self.context,
                pending,  # type: ignore[arg-type]
                completion,
                mode="batch",
                batch_id=info.id,
                pricer=pricer,
                ts=now,
            )
            if key not in billed:
                calls.append(record)
            try:
                response = build_response(
                    pending,  # type: ignore[arg-type]
                    completion,
                    provider=self.provider_name,
                    mode="batch",
                    cost_usd=record.cost_usd,
                    batch_id=info.id,
                )
                result = stored_result(pending, response)  # type: ignore[arg-type]
                storable(result)
            except ProviderError as exc:
                # Does not fit, was cut at max_tokens, was refused, or cannot be used at all.
                failed.append((pending, exc))
                continue
            except Exception as exc:
                # Whatever this one answer does, the rest of the batch is stored.
                failed.append((pending, unusable(exc, completion.content, self.provider_name)))
                continue
            results.append(result)
            succeeded.append((pending, response))
        with self.store.in_transaction():
            self.store.record_calls(calls)
            self.store.put_results(self.provider_name, results)
            retry = self._journal_failures(failed)
        for pending, response in succeeded:
            self._pending.pop(pending.key, None)
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(response)
        self._after_failures(failed, retry)

    def finish_missing(self, shard: Shard, info: BatchInfo, seen: set[str]) -> None:
        """Requests of the shard with no result line: ended by the batch's own fate.

        The batch is reconciled first (see :mod:`plugins.batch.reconcile`):
        lines missing from a batch that ran are reported and their requests
        queued again; lines naming no request of ours are reported.
        """
        fresh = self._fresh.get(shard.shard_id)
        keys = fresh if fresh is not None else self.store.shard_keys(shard.shard_id, "submitted")
        missing = [k for k in keys if k not in seen]
        rejected = info.state is BatchState.FAILED and not seen and not info.succeeded
        if not rejected:
            reconcile(
                self.store, self.provider_name, shard, info, waiting=keys, sent=fresh, seen=seen
            )
        if rejected:
            # Rejected whole, nothing ran, nothing billed: its estimate leaves the budget.
            self._committed_usd -= self._shard_cost.pop(shard.shard_id, 0.0)
            if len(missing) > 1 and too_large(info=info):
                with self.store.in_transaction():
                    self.store.set_request_state(self.provider_name, missing, "queued")
                self.resend_smaller(shard, missing, "; ".join(info.errors))
                return
        if not missing:
            return
        error = _batch_fate(info, self.provider_name)
        if isinstance(error, BatchCancelledError) and self._user_cancelled(shard):
            # The user's cancel is final: these end as cancelled, not sent again.
            error = cancelled_error(info.id, self.provider_name)
        self._fail_keys(missing, error)

    def _user_cancelled(self, shard: Shard) -> bool:
        """Whether the user cancelled ``shard``'s batch (asked of the store: any process may)."""
        if shard.shard_id in self._cancel_told:
            return True
        if not user_cancelled(self.store, shard.shard_id):
            return False
        self._cancel_told.add(shard.shard_id)
        log.warning(
            "batch %s was cancelled by the user: the requests it had not answered end as "
            "cancelled (lexibatch resume --retry-cancelled sends them again)",
            shard.batch_id or shard.shard_id,
        )
        return True

    def split_refused(self, shard: Shard, error: LexibatchError) -> bool:
        """Send a shard the provider refused as too large again, in smaller batches.

        Its batch was never made (never billed): in one durable commit the
        shard is journaled failed and its requests queued again. Returns
        whether it was split; a single request refused is not.
        """
        if shard.requests < 2 or not too_large(error):
            return False
        self._split(shard, f"refused as too large ({error}); sent again split")
        self.resend_smaller(shard, self.store.shard_keys(shard.shard_id, "queued"), str(error))
        return True

    def split_for_queue(self, shard: Shard, share: float, why: str) -> None:
        """Send a shard too big for the provider's queue by itself again, in batches that fit.

        Its batch was never made, or was refused and never ran (never
        billed): as :meth:`split_refused`, with batches halved until
        ``share`` of the shard's requests (see :mod:`plugins.batch.queuecap`).
        """
        self._split(shard, f"too big for the provider's queue ({why}); sent again split")
        keys = self.store.shard_keys(shard.shard_id, "queued")
        limits = halved_to_fit(self.accumulator.limits, shard.requests, share)
        self.resend_smaller(shard, keys, why, limits=limits, what="too big for the queue")

    def _split(self, shard: Shard, reason: str) -> None:
        """Journal a shard given up for a split; its requests are queued again."""
        self._committed_usd -= self._shard_cost.pop(shard.shard_id, 0.0)
        self.store.forget_shard(shard.shard_id, reason)
        self._fresh.pop(shard.shard_id, None)
        _remove(shard.path)

    def resend_smaller(
        self,
        shard: Shard,
        keys: list[str],
        why: str,
        *,
        limits: BatchLimits | None = None,
        what: str = "refused as too large",
    ) -> None:
        """Queue ``keys`` again in shards half the refused one's size, or within ``limits``
        (not a retry round)."""
        self.accumulator.limits = limits or halved(self.accumulator.limits, shard.requests)
        log.warning(
            "batch shard %s (%d requests, %d bytes) %s: %s — sent again in "
            "batches of at most %d requests",
            shard.shard_id,
            shard.requests,
            shard.bytes or 0,
            what,
            why,
            self.accumulator.limits.max_requests,
        )
        rows = self.store.get_requests(self.provider_name, keys)
        decoded = self._schemas.decode_each(list(rows), [r.body for r in rows.values()])
        for row, request in zip(rows.values(), decoded, strict=True):
            if isinstance(request, InputError):
                self._fail_unbuilt(row.key, request)
                continue
            pending = self._pending.get(row.key) or BatchRequest.of(
                request, None, _retries(row.attempts)
            )
            self._enqueue(request, pending, journal=False)

    def _fail_unbuilt(self, key: str, error: InputError) -> None:
        """A journaled request that cannot be rebuilt, or would be refused today, fails alone."""
        # One warning a run; the others are in the journal (and the results file).
        self._unbuilt += 1
        log.log(logging.WARNING if self._unbuilt == 1 else logging.INFO, "%s", error)
        self.store.set_request_state(self.provider_name, [key], "failed", error=_error_dict(error))
        self._reject(key, error)

    def line_problem(self, request: Request) -> str | None:
        """Why no batch of this provider can hold ``request``, or ``None``."""
        return line_problem(self.endpoint, self.limits, request)

    def fail_shard(self, shard: Shard, error: LexibatchError) -> None:
        """The shard could not be run (e.g. the provider rejected its file).

        Requests whose results were stored before the failure stay answered.
        Its batch was never made, so never billed: its estimate leaves the budget.
        """
        self._committed_usd -= self._shard_cost.pop(shard.shard_id, 0.0)
        with self.store.in_transaction():
            self.store.mark_shard_succeeded(self.provider_name, shard.shard_id)
        keys = self.store.shard_keys(shard.shard_id, "submitted")
        self._fail_keys(keys, error, whole_batch=True)
        self._fresh.pop(shard.shard_id, None)
        _remove(shard.path)

    def shard_answered(self, shard: Shard) -> None:
        """Every result line of the shard is stored: its answered requests have succeeded.

        Runs inside the executor's transaction that journals the shard collected.
        In a shard sealed by this run, every request still submitted by then
        was answered (the others were failed or queued again as their lines,
        or their absence, were read); one of an earlier run is checked
        against the cache.
        """
        fresh = shard.shard_id in self._fresh
        self.store.mark_shard_succeeded(self.provider_name, shard.shard_id, check_results=not fresh)

    def shard_collected(self, shard: Shard) -> None:
        """Every result of the shard is stored: its spool file is no longer needed."""
        self._fresh.pop(shard.shard_id, None)
        self._shard_cost.pop(shard.shard_id, None)
        _remove(shard.path)

    def _fail_keys(
        self, keys: list[str], error: LexibatchError, *, whole_batch: bool = False
    ) -> None:
        stubs = self._stubs_for([k for k in keys if k not in self._pending])
        failed = [
            (self._pending.get(k) or stubs[k], error)
            for k in keys
            if k in self._pending or k in stubs
        ]
        with self.store.in_transaction():
            retry = self._journal_failures(failed, whole_batch=whole_batch)
        self._after_failures(failed, retry)

    def _stubs_for(self, keys: list[str]) -> dict[str, BatchRequest]:
        """Pending records for requests of earlier runs, rebuilt from the journal."""
        if not keys:
            return {}
        rows = list(self.store.get_requests(self.provider_name, keys).values())
        requests = self._schemas.decode_each([r.key for r in rows], [r.body for r in rows])
        stubs: dict[str, BatchRequest] = {}
        for row, request in zip(rows, requests, strict=True):
            if isinstance(request, InputError):
                self._fail_unbuilt(row.key, request)
            else:
                stubs[row.key] = BatchRequest.of(request, None, attempts=_retries(row.attempts))
        return stubs

    def _journal_failures(
        self, failed: list[tuple[BatchRequest, LexibatchError]], *, whole_batch: bool = False
    ) -> list[BatchRequest]:
        """Record failures in the journal (inside the caller's transaction); return the retries.

        ``whole_batch``: the errors are the shard's own (its file or its batch
        was refused, as Anthropic refuses a batch at create), not its items'.
        """
        max_rounds = self.settings.batch.max_retry_rounds
        retry: list[BatchRequest] = []
        # A rejected batch would be rejected again; only a re-route to
        # immediate calls can still answer its requests. Not a refused key:
        # immediate calls would be refused as well.
        reroute = self.settings.batch.retry_via == "immediate"
        for pending, error in failed:
            rejected = isinstance(error, BatchFailedError) or (
                whole_batch and not isinstance(error, AuthenticationError)
            )
            retryable = error.retryable or (reroute and rejected)
            if retryable and pending.attempts < max_rounds:
                retry.append(pending)
            else:
                self.store.set_request_state(
                    self.provider_name, [pending.key], "failed", error=_error_dict(error)
                )
        if retry:
            self.store.set_request_state(self.provider_name, [p.key for p in retry], "queued")
        return retry

    def _after_failures(
        self, failed: list[tuple[BatchRequest, LexibatchError]], retry: list[BatchRequest]
    ) -> None:
        retry_keys = {p.key for p in retry}
        for pending, error in failed:
            if pending.key not in retry_keys:
                self._reject(pending.key, error, pending)
        if not retry:
            return
        rows = self.store.get_requests(self.provider_name, retry_keys)
        decoded = self._schemas.decode_each(
            list(rows), [row.body for row in rows.values()], check=True
        )
        requests = dict(zip(rows, decoded, strict=True))
        via_immediate = self.settings.batch.retry_via == "immediate" and self.context.immediate
        errors = {pending.key: error for pending, error in failed}
        for pending in retry:
            pending.attempts += 1
            request = requests.get(pending.key)
            if request is None:
                continue
            if isinstance(request, InputError):
                self._fail_unbuilt(pending.key, request)
                continue
            request = more_tokens(request, errors.get(pending.key))
            self._pending[pending.key] = pending
            if via_immediate:
                self._retry_immediately(request, pending)
            else:
                self._enqueue(request, pending, journal=False)

    def _retry_immediately(self, request: Request, pending: BatchRequest) -> None:
        immediate = self.context.immediate
        assert immediate is not None
        budget = self.settings.batch.budget_usd
        if budget is not None:
            # An immediate call costs the full price: the budget counts it too.
            cost = self._estimate_cost(request, "immediate")
            if self._committed_usd + cost > budget:
                error = BudgetExceededError(self._committed_usd + cost, budget)
                # Left queued if the store refuses: the next run judges it again.
                with contextlib.suppress(StoreWriteError):
                    self.store.set_request_state(
                        self.provider_name, [pending.key], "failed", error=_error_dict(error)
                    )
                self._reject(pending.key, error, pending)
                return
            self._committed_usd += cost

        async def retry() -> None:
            try:
                response = await immediate.run(request)
            except LexibatchError as exc:
                try:
                    self.store.set_request_state(
                        self.provider_name, [pending.key], "failed", error=_error_dict(exc)
                    )
                finally:
                    self._reject(pending.key, exc, pending)
                return
            try:
                self.store.set_request_state(self.provider_name, [pending.key], "succeeded")
            except StoreWriteError as exc:
                self._reject(pending.key, exc, pending)
                return
            self._pending.pop(pending.key, None)
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(response)

        task = asyncio.get_running_loop().create_task(retry())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _reject(self, key: str, error: LexibatchError, pending: BatchRequest | None = None) -> None:
        pending = self._pending.pop(key, None) or pending
        if pending is not None and pending.future is not None and not pending.future.done():
            _fail(pending.future, error)

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
                self._fail_unbuilt(row.key, request)
                continue
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            pending = BatchRequest.of(request, future, _retries(row.attempts))
            self._enqueue(request, pending, journal=False)
            requeued += 1
        await self.flush()
        return requeued

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


def _waiting_for_room(
    hooks: Any,
    provider: str,
    shard_id: str,
    model: str,
    enqueued: int,
    cap: int | None,
    waiting: bool,
) -> None:
    hooks.batch_waiting_for_room(
        shard_id=shard_id,
        provider=provider,
        model=model,
        enqueued=enqueued,
        cap=cap,
        waiting=waiting,
    )


def _remove(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)


def _retries(submissions: int) -> int:
    """Retry rounds used, from the journal's count of submissions."""
    return max(submissions - 1, 0)


def _batch_fate(info: BatchInfo, provider: str) -> LexibatchError:
    if info.state is BatchState.FAILED:
        reasons = "; ".join(info.errors) or "no reason given"
        return BatchFailedError(f"batch {info.id} failed: {reasons}", provider=provider)
    if info.state is BatchState.EXPIRED:
        return BatchExpiredError(
            f"batch {info.id} expired before this request ran", provider=provider
        )
    if info.state is BatchState.CANCELLED:
        return BatchCancelledError(
            f"batch {info.id} was cancelled before this request ran", provider=provider
        )
    return BatchItemError(f"batch {info.id} returned no result for this request", provider=provider)


def _error_dict(error: LexibatchError) -> dict[str, Any]:
    if isinstance(error, ProviderError):
        return error.to_dict()
    return {"type": type(error).__name__, "message": error.message, "retryable": error.retryable}
