"""The immediate strategy: concurrent calls, rate-limited, retried, validated.

Per request: wait for a concurrency slot, for the requests-per-minute and
tokens-per-minute budgets and, when the provider's rate-limit headers said
its limit is used up, for its reset; call the provider, validate the answer.
Retryable provider errors (429, 5xx, timeouts, connection failures) are
retried by the one retry policy (:mod:`plugins.retry`, ``[retry]``), which
waits at least what ``retry-after`` asked for, bounds how long an unreachable
provider is tried and how often a timed-out, maybe billed, call is sent
again. An answer that fails schema validation is re-asked a bounded number of
times, telling the model what was wrong; one cut at ``max_tokens`` is asked
again with twice the limit, as many times. Every paid call is recorded in the
ledger, and the final answer lands in the cache.

A store that refuses a write stops the sending; the answers already paid
for are kept safe until it can take them (:mod:`plugins.safekeep`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, NoReturn

from plugins.batch.usercancel import cancelled_error, is_cancelled
from plugins.claims import ClaimBook
from plugins.crossmode import batch_holds, wait_for_answer
from plugins.ledger import call_record, paid_rows
from plugins.pacing import Pacer, per_minute_limiter, tpm_tokens
from plugins.reasks import misfit_reask, reask_rows, resumed
from plugins.results import build_response, cached_response, more_tokens
from plugins.safekeep import SafeKeep, StoreRefusedError, take_back
from plugins.store import StoredResult
from providers.errors import (
    LexibatchError,
    NotSentError,
    ProviderTimeoutError,
    SchemaValidationError,
    StoreBusyError,
    StoreWriteError,
    TruncatedError,
    UnsupportedError,
    UnusableAnswerError,
    defect_error,
)
from providers.types import Completion, Request, Response, Usage

if TYPE_CHECKING:
    from plugins.crossmode import BatchHold
    from plugins.registry import Strategy, StrategyContext
    from plugins.store import CallRecord

__all__ = ["ImmediateStrategy"]

log = logging.getLogger("lexibatch.immediate")

# Waiting for another process's answer: the first and the longest pause between looks.
_CLAIM_POLL_FIRST = 0.05
_CLAIM_POLL_MAX = 1.0

#: Seconds past the provider's ``timeout`` a call may run before it is ended.
_DEADLINE_GRACE = 30.0


class ImmediateStrategy:
    """Sends each request at once; the strategy behind ``mode = "immediate"``."""

    name = "immediate"

    def __init__(self, context: StrategyContext) -> None:
        self.context = context
        self.provider = context.provider
        self.provider_name = context.provider_name
        psettings = context.settings.provider_settings(context.provider_name)
        self._semaphore = asyncio.Semaphore(psettings.max_concurrency)
        self._rpm = per_minute_limiter(psettings.rpm)
        self._tpm = per_minute_limiter(psettings.tpm)
        # A call its adapter leaves unbounded (a plugin's) ends this much after
        # the provider's own timeout: a timed-out try, as if the client's.
        self._timeout = psettings.timeout
        self._deadline = psettings.timeout + _DEADLINE_GRACE
        self._reask = context.settings.immediate.reask
        self._retry = context.retry
        self._claims = ClaimBook(context.store, context.provider_name)
        # Answers an earlier run paid for and its store refused: stored
        # before anything is sent (in any mode), so none is paid for again.
        take_back(context.store)
        self._keep = SafeKeep(context.store, in_flight=psettings.max_concurrency)
        # Paces by the provider's rate-limit headers, before a 429.
        self._pacer = Pacer()
        # Said once each: waiting for another process's batches; collecting orphaned ones.
        self._told_waiting = False
        self._told_adopting = False
        # Requests whose call went out and whose answer is not stored yet
        # (see stop_sending); set when the last of them lands.
        self._in_flight = 0
        #: Calls sent whose answer did not come back in time: the provider may bill them,
        #: though the ledger cannot (their usage is unknown).
        self.timed_out = 0
        self._landed: asyncio.Event | None = None
        # Each request being sent, by key: whether a call of it is out, and
        # whether its callers all left (see withdraw).
        self._flights: dict[str, _Flight] = {}
        self._stopping = False
        self._refusing = False

    def stop_sending(self, *, refuse: bool = False) -> int:
        """Send no new call from now on; how many requests sent are still to land.

        A call already sent may be paid for whether or not its answer is read
        (the provider bills what it made), so it goes on, and its answer is
        stored. Every other call waits, unsent, to be cancelled with the run —
        or, with ``refuse``, fails at once with :class:`NotSentError` (a
        server, whose requests must end for it to stop). What an interrupted
        command calls first (see ``plugins.cli.session``).
        """
        self._stopping = True
        self._refusing = self._refusing or refuse
        return self._in_flight

    def stopped(self) -> bool:
        """Whether :meth:`stop_sending` was called: no new call goes out."""
        return self._stopping

    async def sent_calls_landed(self) -> None:
        """Wait until every request sent has its answer stored, or has failed."""
        while self._in_flight:
            if self._landed is None or self._landed.is_set():
                self._landed = asyncio.Event()
            await self._landed.wait()

    def withdraw(self, key: str) -> bool:
        """Every caller of request ``key`` left: whether it may end now, nothing of it out.

        ``False`` while one of its calls is out: that call may be billed, so it
        lands and its answer is stored, but no retry or re-ask follows it.
        """
        flight = self._flights.get(key)
        if flight is None or not flight.open:
            return True
        flight.left = True
        return False

    def keep(self, key: str) -> None:
        """A caller asks request ``key`` again: it is sent to its end once more."""
        flight = self._flights.get(key)
        if flight is not None:
            flight.left = False

    def _land(self, flight: _Flight) -> None:
        """``flight``'s request sends nothing more: it no longer counts as in flight."""
        if flight.open:
            flight.open = False
            self._in_flight -= 1
            if not self._in_flight and self._landed is not None:
                self._landed.set()

    async def run(self, request: Request) -> Response:
        """Send ``request`` now (retrying and re-asking as configured), billed once per store.

        It is claimed in the store when its first call gets a concurrency
        slot (see :mod:`plugins.claims`); while another process holds the
        claim, that process's answer is waited for instead of paid for again.
        """
        # The re-ask of it kept by an earlier run, found once it is claimed.
        reask: str | None = None
        try:
            while True:
                try:
                    return await self._send(request, reask)
                except _Answered as answered:
                    return answered.response
                except _ReaskKept as kept:
                    reask = kept.state  # held now: sent from there
                except _HeldElsewhere:
                    answer = await self._wait_for_holder(request)
                    if answer is not None:
                        return answer
                except _InBatch:
                    answer = await self._from_batch(request)
                    if answer is not None:
                        return answer
                    self._unless_cancelled(request)
        finally:
            self._claims.release(request.key)

    async def _from_batch(self, request: Request) -> Response | None:
        """The answer of the batch that holds ``request``; ``None`` once none will give it.

        A live batch run of another process is waited for. A batch whose run
        is gone (killed, stopped) is adopted: this process collects it, as
        ``lexibatch resume`` would, rather than pay for the request again
        (see :mod:`plugins.crossmode`).
        """
        while True:
            hold = self._batch_holds(request.key)
            if hold is None:
                # Let go without an answer, or answered: the caller looks again.
                return self._cached(request)
            if hold == "orphaned":
                batch = self._adopt()
                if batch is not None:
                    return await batch.run(request)
            elif not self._told_waiting:
                self._told_waiting = True
                log.warning(
                    "some requests are in the batches of another lexibatch process running on "
                    "this store: they wait for its answers instead of being paid for again"
                )
            answer = await wait_for_answer(
                self.context.store,
                self.provider_name,
                request,
                still_coming=lambda: self._batch_holds(request.key) == "running",
            )
            if answer is not None:
                return answer

    def _batch_holds(self, key: str) -> BatchHold | None:
        if self.provider.batch is None:
            # No batch of this provider can hold it.
            return None
        return batch_holds(self.context.store, self.provider_name, key)

    def _adopt(self) -> Strategy | None:
        """The batch strategy of this process, which collects the orphaned shards.

        ``None`` while another process holds the store's batch lease (it took
        the orphaned batches over first: their answers are waited for).
        """
        if self.context.batch is None:
            raise UnsupportedError(
                "a request is in a batch that an earlier run submitted and did not collect: "
                "run `lexibatch resume` to collect it"
            )
        try:
            batch = self.context.batch()
        except StoreBusyError:
            return None
        if not self._told_adopting:
            self._told_adopting = True
            log.warning(
                "some requests are in batches of a lexibatch run that stopped before collecting "
                "them: they are collected here instead of being paid for again"
            )
        return batch

    def _unless_cancelled(self, request: Request) -> None:
        """The batch it waited for ended without an answer: a user's cancel is final.

        Raises:
            CancelledByUserError: the user cancelled that batch (and
                ``batch.retry_cancelled`` is off); otherwise it is sent here.
        """
        settings = self.context.settings.batch
        store = self.context.store
        if not settings.retry_cancelled and is_cancelled(store, self.provider_name, request.key):
            raise cancelled_error(None, self.provider_name)

    async def _wait_for_holder(self, request: Request) -> Response | None:
        """The claim holder's answer; ``None`` once it let the claim go without one."""
        delay = _CLAIM_POLL_FIRST
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _CLAIM_POLL_MAX)
            answer = self._cached(request)
            if answer is not None:
                return answer
            if self._claims.holder(request.key) is None:
                return None

    def _cached(self, request: Request) -> Response | None:
        """The stored answer of ``request`` (free: it was paid for where it was made)."""
        stored = self.context.store.get_result(self.provider_name, request.key)
        if stored is None:
            return None
        try:
            return cached_response(request, stored, provider=self.provider_name)
        except SchemaValidationError:
            # An answer that no longer fits is the connector's to retire; send anew.
            return None

    async def _send(self, request: Request, reask: str | None) -> Response:
        flight = _Flight()
        flight.reask = reask
        key = request.key
        self._flights[key] = flight
        try:
            return await self._send_in(request, flight)
        finally:
            self._land(flight)
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def _send_in(self, request: Request, flight: _Flight) -> Response:
        usage = Usage()
        # A re-ask an earlier run sent and never saw answered goes on from the
        # answer it re-asked (kept: it was paid for), not from the first question:
        # looked for once the request is claimed (see _claim).
        current, first = resumed(request, flight.reask, self._reask)
        calls: list[Completion] = []
        # Paid calls ledgered already: each with the answer it re-asks, before the
        # re-ask is sent, so a run killed while it is out has lost no paid call.
        ledgered = 0
        # A re-ask of it is kept: the answer or the last failure ends it (one
        # not resumed, its attempts spent or its state unreadable, as well).
        reasked = flight.reask is not None
        for attempt in range(first, self._reask + 1):
            try:
                completion = await self._call_with_retries(
                    current, request if attempt == first else None, flight
                )
            except BaseException:
                # A re-ask that failed: the answers before it were paid for all the same.
                self._ledger_unanswered(request, calls[ledgered:])
                raise
            calls.append(completion)
            usage = usage + completion.usage
            try:
                response = build_response(
                    request,
                    completion,
                    provider=self.provider_name,
                    mode="immediate",
                    cost_usd=None,
                    usage=usage,
                    sent_max_tokens=current.max_tokens,
                )
            except SchemaValidationError as exc:
                if attempt >= self._reask:
                    self._ledger_unanswered(request, calls[ledgered:], spent=reasked)
                    raise
                current = misfit_reask(current, completion.content, exc.message)
                self._ledger_reasked(request, calls[ledgered:], current, attempt + 1)
                ledgered, reasked = len(calls), True
                continue
            except TruncatedError as exc:
                # Cut at max_tokens: the same request would be cut again.
                if exc.retry_max_tokens is None or attempt >= self._reask:
                    self._ledger_unanswered(request, calls[ledgered:], spent=reasked)
                    raise
                current = more_tokens(current, exc)
                self._ledger_reasked(request, calls[ledgered:], current, attempt + 1)
                ledgered, reasked = len(calls), True
                continue
            except UnusableAnswerError:
                # Paid for, and unusable however often it is asked: ledgered, not re-asked.
                self._ledger_unanswered(request, calls[ledgered:], spent=reasked)
                raise
            # Priced as every call it took; ledgered, the calls not ledgered yet.
            paid, records, result = paid_rows(
                self.context, request, calls, final=response, mode="immediate"
            )
            self._store_answer(request.key, records[ledgered:], result, reasked=reasked)
            return paid
        raise AssertionError("unreachable")  # pragma: no cover

    def _ledger_reasked(
        self, request: Request, calls: list[Completion], reask: Request, attempt: int
    ) -> None:
        """Ledger ``calls`` and keep the last one's answer with the re-ask it led to.

        In one commit, before ``reask`` is sent: a run stopped while it is out
        has every paid call ledgered, and the next run sends ``reask`` (see
        :mod:`plugins.reasks`) instead of paying for the first question again.
        """
        records, kept, state = reask_rows(self.context, request, calls, reask, attempt)
        store = self.context.store

        def write() -> None:
            with store.in_transaction():
                store.record_calls(records)
                store.keep_reasked(self.provider_name, kept, state=state)

        # The request's own course goes on; a refusal stops the run (see safekeep).
        with contextlib.suppress(StoreRefusedError):
            self._keep.store_paid(write, records, None, self.provider_name)

    def _store_answer(
        self, key: str, records: list[CallRecord], result: StoredResult, *, reasked: bool
    ) -> None:
        """Store a paid answer with its ledger rows (kept safe if the store refuses).

        ``reasked``: a re-ask of it was kept (:meth:`_ledger_reasked`), which
        this answer ends: it is not resumed again.

        Raises:
            StoreRefusedError: the store refused it; it waits in the spill.
        """
        store = self.context.store

        def write() -> None:
            # The answer is stored and the claim let go in one commit.
            with store.in_transaction():
                store.record_calls(records)
                store.put_results(self.provider_name, [result])
                if reasked:
                    store.spend_reasks(self.provider_name, key)
                self._claims.release(key)

        self._keep.store_paid(write, records, result, self.provider_name)

    def _ledger_unanswered(
        self, request: Request, calls: list[Completion], *, spent: bool = False
    ) -> None:
        """Ledger paid calls that produced no usable answer (kept safe if the store refuses).

        ``spent``: the request's re-asks are used up, so a kept re-ask of it
        (:meth:`_ledger_reasked`) is not resumed again: a later run asks it anew.
        """
        if not calls and not spent:
            return
        records = [call_record(self.context, request, c, mode="immediate") for c in calls]
        store = self.context.store

        def write() -> None:
            with store.in_transaction():
                store.record_calls(records)
                if spent:
                    store.spend_reasks(self.provider_name, request.key)

        # The request's own error is the one to raise; the refusal stops the run.
        with contextlib.suppress(StoreRefusedError):
            spends = request.key if spent else None
            self._keep.store_paid(write, records, None, self.provider_name, spends=spends)

    async def _call_with_retries(
        self, request: Request, claim: Request | None, flight: _Flight
    ) -> Completion:
        return await self._retry.call(
            lambda: self._call_once(request, claim, flight),
            what=f"request {request.key}",
            paid=True,
        )

    async def _call_once(
        self, request: Request, claim: Request | None, flight: _Flight
    ) -> Completion:
        if flight.left:
            # Its callers left while a call was out: that call landed; no other is sent.
            raise asyncio.CancelledError
        if self.stopped():
            # Before taking a slot: a call still to land may need one for its answer.
            await self._never_sent(flight)
        async with self._semaphore:
            self._unless_refused()
            # Room for the answers in flight, should the disk fill up.
            self._keep.make_reserve()
            if claim is not None:
                # Claimed once it is about to be sent, so another process may
                # take the requests this one has not reached yet.
                try:
                    self._claim(claim, flight)
                except StoreWriteError as exc:
                    raise self._keep.refuse(exc) from None
            await self._pacer.wait()
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                await self._tpm.acquire(min(tpm_tokens(request), self._tpm.max_rate))
            self._unless_refused()
            # Another call's answer, meanwhile, may have been that the key is refused.
            self._retry.unless_key_refused()
            if self.stopped():  # meanwhile (the waits above)
                await self._never_sent(flight)
            if flight.left:  # meanwhile: a re-ask whose callers left while it waited
                raise asyncio.CancelledError
            if not flight.open:
                flight.open = True
                self._in_flight += 1
            deadline = asyncio.timeout(self._deadline)
            try:
                async with deadline:
                    completion = await self.provider.complete(request)
            except TimeoutError as exc:
                self._land(flight)
                self.timed_out += 1
                if not deadline.expired():
                    # The adapter's own timeout, not this deadline: a defect of its
                    # translation (a provider's timeout is a ProviderTimeoutError).
                    raise defect_error(exc, provider=self.provider_name, doing="the call") from exc
                raise ProviderTimeoutError(
                    f"the call did not end within {self._deadline:g} s — its adapter did not "
                    f"hold it to the provider's timeout ({self._timeout:g} s)",
                    provider=self.provider_name,
                ) from None
            except BaseException as exc:
                # No answer to store: in flight no more (a retry, after its
                # pause, goes through the checks above again).
                self._land(flight)
                if isinstance(exc, ProviderTimeoutError):
                    self.timed_out += 1
                if isinstance(exc, Exception) and not isinstance(exc, LexibatchError):
                    raise defect_error(exc, provider=self.provider_name, doing="the call") from exc
                raise
            self._pacer.observe(completion.rate_limit)
            return completion

    async def _never_sent(self, flight: _Flight) -> NoReturn:
        """Interrupted (see :meth:`stop_sending`): nothing new is sent, a retry or a
        re-ask neither; this waits, unsent, to be cancelled with the run (or, when
        refusing, fails now)."""
        self._land(flight)
        if self._refusing:
            raise NotSentError("not sent: lexibatch is stopping (it was interrupted)")
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")  # pragma: no cover - only ever cancelled

    def _unless_refused(self) -> None:
        """Send nothing more while the store refuses writes: an answer could not be kept.

        Raises:
            StoreRefusedError: the store refused a write earlier in this run
                (and, if that was a while ago, still does).
        """
        if not self._keep.may_send():
            raise StoreRefusedError(self._keep)

    def _claim(self, request: Request, flight: _Flight) -> None:
        """Hold ``request``'s claim, or say why it is not to be sent.

        Raises:
            _HeldElsewhere: another live process holds it.
            _Answered: its answer was stored meanwhile (by the claim's last holder).
            _ReaskKept: a re-ask of it is kept (by an earlier run, or the
                claim's last holder) other than the one this call went on from.
        """
        key = request.key
        if self._claims.holds(key):
            return
        if self._claims.claim(key) is not None:
            raise _HeldElsewhere(key)
        answer = self._cached(request)
        if answer is None and self._keep.has_spill():
            # Another process's answer may wait in the spill, paid for already.
            take_back(self.context.store)
            answer = self._cached(request)
        if answer is not None:
            raise _Answered(answer)
        # Read after the claim is committed (see plugins.crossmode for why
        # this order never pays twice against a batch run of another process).
        if self._batch_holds(key) is not None:
            self._claims.release(key)
            raise _InBatch(key)
        # Looked for once it is held: an earlier run (or a process that held it
        # until a moment ago, then stopped) may have kept a re-ask, to be sent
        # instead of the first question paid for again.
        kept = self.context.store.pending_reask(self.provider_name, key)
        if kept != flight.reask:
            raise _ReaskKept(kept)

    async def flush(self) -> None:
        """Nothing is ever pending: every call is sent at once."""

    async def aclose(self) -> None:
        """Let go of the claims still held (the connector closes the provider)."""
        await self._claims.aclose()


class _Flight:
    """Whether one request's call went out and its answer is not stored yet,
    whether its callers all left meanwhile, and the kept re-ask it went on from."""

    __slots__ = ("left", "open", "reask")

    def __init__(self) -> None:
        self.open = False
        self.left = False
        self.reask: str | None = None


class _HeldElsewhere(Exception):
    """Another process holds the request's claim (control flow, never seen by callers)."""


class _ReaskKept(Exception):
    """A re-ask of the request is kept: it is sent from there (control flow, never seen)."""

    def __init__(self, state: str | None) -> None:
        super().__init__(state)
        self.state = state


class _InBatch(Exception):
    """A live batch run of another process sends the request (control flow, never seen)."""


class _Answered(Exception):
    """The request's answer is in the store already (control flow, never seen by callers)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.key)
        self.response = response
