"""Settling what a batch answered: each request succeeded, retried, re-routed or failed.

The one home of a batched request's outcome. An executor hands every chunk
of a batch's result lines here (:meth:`Settlement.finish_items`), then the
lines the batch never wrote (:meth:`Settlement.finish_missing`), or the
shard's own failure (:meth:`Settlement.fail_shard`,
:meth:`Settlement.split_refused`). Each request then ends in exactly one of:

- **succeeded** — its answer validated, stored and billed in one transaction,
  its caller's future resolved;
- **retried** — a retryable failure (expired, cancelled, 5xx, rate limit,
  timeout, schema-invalid or cut-short content) with rounds left
  (``batch.max_retry_rounds``): queued into the next batch round, or
  re-routed to an immediate call (``batch.retry_via = "immediate"``, which
  the budget counts at full price), re-asked with more output tokens when
  it was cut at ``max_tokens``;
- **failed** — a permanent error, or no rounds left: journaled failed with
  its error, its caller told.

A shard refused as too large is queued again in smaller shards (not a retry
round); a batch the user cancelled ends its unanswered requests as
cancelled. Everything is idempotent: a line read again after a crash is
neither stored nor billed twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.batch.answers import judge_items
from plugins.batch.fates import (
    batch_fate,
    error_dict,
    fail_future,
    misnamed_error,
    retries_used,
)
from plugins.batch.ledgercheck import check_ledger
from plugins.batch.oversize import halved, halved_to_fit, too_large
from plugins.batch.promise import BatchRequest, settle_answers
from plugins.batch.reconcile import reconcile
from plugins.batch.usercancel import cancelled_error, user_cancelled
from plugins.ledger import Pricer
from plugins.results import more_tokens
from providers.errors import (
    AuthenticationError,
    BatchCancelledError,
    BatchFailedError,
    InputError,
    LexibatchError,
    StoreWriteError,
)
from providers.types import BatchInfo, BatchLimits, BatchState, ItemResult, Mode, Request, Response

if TYPE_CHECKING:
    from plugins.batch.accumulator import BatchAccumulator
    from plugins.batch.budget import BatchBudget
    from plugins.batch.cleanup import FileCleanup
    from plugins.batch.journal import SchemaBook
    from plugins.batch.promise import BatchPromise
    from plugins.batch.unasked import UnaskedRequests
    from plugins.registry import StrategyContext
    from plugins.store import Shard

__all__ = ["Settlement"]

log = logging.getLogger("lexibatch.batch")


class Settlement:
    """Ends each request of a strategy's batches (a :class:`~.interfaces.ShardSettlement`).

    Args:
        context: the strategy's context (store, settings, provider, prices,
            the immediate strategy for re-routes).
        schemas: the journal's schema book, to rebuild journaled requests.
        accumulator: the open shards, whose limits a refused shard halves.
        budget: the run's spend against ``batch.budget_usd``.
        pending: the requests of this run waiting for an answer, by key
            (shared with the strategy, which adds them).
        fresh: the keys of each shard sealed by this run, by shard id
            (shared with the strategy, which seals them).
        requeue: queues a journaled request into an open shard again.
        side_task: runs a coroutine alongside the executors (the strategy's
            ``flush`` waits for it).
        estimate: a request's estimated cost in a mode (the one estimator).
        cleanup: deletes the uploaded input of a shard given up for a split.
    """

    def __init__(
        self,
        context: StrategyContext,
        *,
        schemas: SchemaBook,
        accumulator: BatchAccumulator,
        budget: BatchBudget,
        pending: dict[str, BatchRequest],
        fresh: dict[str, list[str]],
        requeue: Callable[[Request, BatchRequest], None],
        side_task: Callable[[Coroutine[Any, Any, None]], None],
        estimate: Callable[[Request, Mode], float],
        cleanup: FileCleanup | None = None,
    ) -> None:
        self.context = context
        self.store = context.store
        self.settings = context.settings
        self.provider_name = context.provider_name
        self.schemas = schemas
        self.accumulator = accumulator
        self.budget = budget
        self.pending = pending
        self.fresh = fresh
        self.requeue = requeue
        self.side_task = side_task
        self.estimate = estimate
        self.cleanup = cleanup
        # Journaled requests failed because they cannot be rebuilt or sent (see fail_unbuilt).
        self._unbuilt = 0
        # Shards found cancelled by the user (said once each).
        self._cancel_told: set[str] = set()
        #: When set (``lexibatch resume``), each request of an earlier run
        #: this one finishes gets a promise it follows, and its outcome is
        #: told to the observers as a caller's would be.
        self.unasked: UnaskedRequests | None = None

    def answered_elsewhere(self, key: str, response: Response) -> None:
        """Another process answered ``key`` (its answer is stored): its caller has it."""
        self.store.set_request_state(self.provider_name, [key], "succeeded")
        pending = self.pending.pop(key, None)
        if pending is not None and pending.future is not None and not pending.future.done():
            pending.future.set_result(response)

    def send_again(self, key: str) -> None:
        """Queue journaled ``key`` into an open shard again (not a retry round)."""
        pending = self.pending.get(key) or self.stubs_for([key]).get(key)
        if pending is None:
            return
        rows = self.store.get_requests(self.provider_name, [key])
        decoded = self.schemas.decode_each(list(rows), [r.body for r in rows.values()])
        for request in decoded:
            if isinstance(request, InputError):
                self.fail_unbuilt(key, request)
            else:
                self.requeue(request, pending)

    def pending_of(self, key: str) -> BatchRequest | None:
        """What finishing ``key`` needs (its caller's future, if one waits)."""
        return self.pending.get(key) or self.stubs_for([key]).get(key)

    def finish_items(self, shard: Shard, info: BatchInfo, items: list[ItemResult]) -> None:
        """Store, bill and resolve one chunk of a batch's result lines.

        Idempotent: a line whose request is no longer waiting in this shard
        (answered already, its result stored before a crash, or not ours) is
        skipped, so reading a batch's results again never bills twice.
        """
        pending_of = self.pending
        done: set[str] = set()
        stubs: dict[str, BatchRequest] = {}
        keys = [item.custom_id for item in items]
        here = ("submitted", shard.shard_id)
        fresh = shard.shard_id in self.fresh
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
        stubs = self.stubs_for(unwaited)
        # Asked once a chunk, at its first cancelled line.
        user_cancel: bool | None = None

        def cancelled(error: BatchCancelledError) -> LexibatchError:
            nonlocal user_cancel
            if user_cancel is None:
                user_cancel = self._user_cancelled(shard)
            return cancelled_error(info.id, self.provider_name) if user_cancel else error

        judged = judge_items(
            items,
            waiting=pending_of,
            stubs=stubs,
            done=done,
            billed=billed,
            costs=Pricer(self.context).costs,
            provider=self.provider_name,
            batch_id=info.id,
            now=time.time(),
            cancelled=cancelled,
        )
        failed = judged.failed
        with self.store.in_transaction():
            self.store.record_calls(judged.calls)
            self.store.put_results(self.provider_name, judged.results, journaled=True)
            retry = self._journal_failures(failed)
        # Only once stored: a caller is never told of an answer a crash could lose.
        settle_answers(judged.succeeded, self.pending)
        self._after_failures(failed, retry)

    def finish_missing(self, shard: Shard, info: BatchInfo, seen: set[str]) -> None:
        """Requests of the shard with no result line: ended by the batch's own fate.

        The batch is reconciled first (see :mod:`plugins.batch.reconcile`):
        lines missing from a batch that ran are reported and their requests
        queued again — or failed, when lines naming no request of ours came
        with them (reported too): those may be their answers, paid for.
        """
        fresh = self.fresh.get(shard.shard_id)
        keys = fresh if fresh is not None else self.store.shard_keys(shard.shard_id, "submitted")
        rejected = info.state is BatchState.FAILED and not seen and not info.succeeded
        if rejected:
            # Rejected whole, nothing ran, nothing billed: its estimate leaves the budget.
            # Nothing was read: every request waiting is missing.
            missing = list(keys)
            self.budget.give_back(shard.shard_id)
            if len(missing) > 1 and too_large(info=info):
                with self.store.in_transaction():
                    self.store.set_request_state(self.provider_name, missing, "queued")
                self.resend_smaller(shard, missing, "; ".join(info.errors))
                return
        else:
            found = reconcile(
                self.store, self.provider_name, shard, info, waiting=keys, sent=fresh, seen=seen
            )
            missing = found.missing
            if missing and found.foreign:
                # Lines under ids not ours where ours are missing: answers paid
                # for but misnamed (a provider, or its plugin, that does not keep
                # custom_id). Queued again, they would be paid again, round after round.
                self._fail_keys(
                    missing, misnamed_error(info, len(found.foreign), self.provider_name)
                )
                return
        if not missing:
            return
        error = batch_fate(info, self.provider_name)
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
        """Journal a shard given up for a split (one durable commit); its requests are queued
        again."""
        self.budget.give_back(shard.shard_id)
        cleanup = self.cleanup
        drop_input = False
        with self.store.in_transaction(durable=True):
            self.store.forget_shard(shard.shard_id, reason)
            if cleanup is not None:
                # Its uploaded input is never used again: deleted at the provider.
                drop_input = cleanup.plan_unused_input(shard)
        self.fresh.pop(shard.shard_id, None)
        _remove(shard.path)
        if drop_input and cleanup is not None:
            self.side_task(_delete_files(cleanup, shard.shard_id))

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
        decoded = self.schemas.decode_each(list(rows), [r.body for r in rows.values()])
        for row, request in zip(rows.values(), decoded, strict=True):
            if isinstance(request, InputError):
                self.fail_unbuilt(row.key, request)
                continue
            pending = self.pending.get(row.key) or BatchRequest.of(
                request, self._promise_for(request), retries_used(row.attempts)
            )
            self.requeue(request, pending)

    def fail_unbuilt(self, key: str, error: InputError) -> None:
        """A journaled request that cannot be rebuilt, or would be refused today, fails alone."""
        # One warning a run; the others are in the journal (and the results file).
        self._unbuilt += 1
        log.log(logging.WARNING if self._unbuilt == 1 else logging.INFO, "%s", error)
        self.store.set_request_state(self.provider_name, [key], "failed", error=error_dict(error))
        self.reject(key, error)

    def fail_shard(self, shard: Shard, error: LexibatchError) -> None:
        """The shard could not be run (e.g. the provider rejected its file).

        Requests whose results were stored before the failure stay answered.
        Its batch was never made, so never billed: its estimate leaves the budget.
        """
        self.budget.give_back(shard.shard_id)
        with self.store.in_transaction():
            self.store.mark_shard_succeeded(self.provider_name, shard.shard_id)
        keys = self.store.shard_keys(shard.shard_id, "submitted")
        self._fail_keys(keys, error, whole_batch=True)
        self.fresh.pop(shard.shard_id, None)
        _remove(shard.path)

    def shard_answered(self, shard: Shard) -> None:
        """Every result line of the shard is stored: its answered requests have succeeded.

        Runs inside the executor's transaction that journals the shard collected.
        In a shard sealed by this run, every request still submitted by then
        was answered (the others were failed or queued again as their lines,
        or their absence, were read); one of an earlier run is checked
        against the cache.
        """
        fresh = shard.shard_id in self.fresh
        self.store.mark_shard_succeeded(self.provider_name, shard.shard_id, check_results=not fresh)

    def shard_collected(self, shard: Shard, info: BatchInfo) -> None:
        """Every result of the shard is stored: its spool file is no longer needed.

        The ledger's rows of the batch are checked against the provider's own
        token totals (:mod:`plugins.batch.ledgercheck`).
        """
        self.fresh.pop(shard.shard_id, None)
        self.budget.spent(shard.shard_id)
        _remove(shard.path)
        check_ledger(self.store, info)

    def _fail_keys(
        self, keys: list[str], error: LexibatchError, *, whole_batch: bool = False
    ) -> None:
        stubs = self.stubs_for([k for k in keys if k not in self.pending])
        failed = [
            (self.pending.get(k) or stubs[k], error)
            for k in keys
            if k in self.pending or k in stubs
        ]
        with self.store.in_transaction():
            retry = self._journal_failures(failed, whole_batch=whole_batch)
        self._after_failures(failed, retry)

    def stubs_for(self, keys: list[str]) -> dict[str, BatchRequest]:
        """Pending records for requests of earlier runs, rebuilt from the journal."""
        if not keys:
            return {}
        rows = list(self.store.get_requests(self.provider_name, keys).values())
        requests = self.schemas.decode_each([r.key for r in rows], [r.body for r in rows])
        stubs: dict[str, BatchRequest] = {}
        for row, request in zip(rows, requests, strict=True):
            if isinstance(request, InputError):
                self.fail_unbuilt(row.key, request)
            else:
                stubs[row.key] = BatchRequest.of(
                    request, self._promise_for(request), attempts=retries_used(row.attempts)
                )
        return stubs

    def _promise_for(self, request: Request) -> BatchPromise | None:
        """What a request of an earlier run settles: nothing, unless its outcome is told."""
        return None if self.unasked is None else self.unasked.promise_for(request)

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
                    self.provider_name, [pending.key], "failed", error=error_dict(error)
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
                self.reject(pending.key, error, pending)
        if not retry:
            return
        rows = self.store.get_requests(self.provider_name, retry_keys)
        decoded = self.schemas.decode_each(
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
                self.fail_unbuilt(pending.key, request)
                continue
            request = more_tokens(request, errors.get(pending.key))
            self.pending[pending.key] = pending
            if via_immediate:
                self._retry_immediately(request, pending)
            else:
                self.requeue(request, pending)

    def _retry_immediately(self, request: Request, pending: BatchRequest) -> None:
        immediate = self.context.immediate
        assert immediate is not None
        if self.budget.limit is not None:
            # An immediate call costs the full price: the budget counts it too.
            cost = self.estimate(request, "immediate")
            error = self.budget.refusal(cost)
            if error is not None:
                # Left queued if the store refuses: the next run judges it again.
                with contextlib.suppress(StoreWriteError):
                    self.store.set_request_state(
                        self.provider_name, [pending.key], "failed", error=error_dict(error)
                    )
                self.reject(pending.key, error, pending)
                return
            self.budget.commit(cost)

        async def retry() -> None:
            try:
                response = await immediate.run(request)
            except LexibatchError as exc:
                try:
                    self.store.set_request_state(
                        self.provider_name, [pending.key], "failed", error=error_dict(exc)
                    )
                finally:
                    self.reject(pending.key, exc, pending)
                return
            try:
                self.store.set_request_state(self.provider_name, [pending.key], "succeeded")
            except StoreWriteError as exc:
                self.reject(pending.key, exc, pending)
                return
            self.pending.pop(pending.key, None)
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(response)

        self.side_task(retry())

    def reject(self, key: str, error: LexibatchError, pending: BatchRequest | None = None) -> None:
        pending = self.pending.pop(key, None) or pending
        if pending is not None and pending.future is not None and not pending.future.done():
            fail_future(pending.future, error)


async def _delete_files(cleanup: FileCleanup, shard_id: str) -> None:
    await cleanup.run(shard_id)


def _remove(path: str | None) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
