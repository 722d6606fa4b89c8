"""The concrete connector: one provider, its strategies, and the store.

:class:`LexiConnector` is what :func:`plugins.factory.open_connector` builds
and what callers see through the :class:`providers.protocol.Connector`
protocol. It looks every request up in the cache first, sends identical
concurrent requests once, and hands the rest to the immediate or the batch
strategy depending on the mode.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from plugins.batch.promise import BatchPromise
from plugins.batch.usercancel import UserCancels
from plugins.callopts import request_with_options
from plugins.lease import runner_elsewhere
from plugins.notices import notice
from plugins.queuedcalls import QueuedCalls, pass_on
from plugins.registry import Strategy, StrategyContext, Workload
from plugins.requestevents import RequestEvents
from plugins.sharedcalls import SharedCalls
from plugins.store import UNFINISHED_SHARD_STATES
from plugins.storedanswers import StoredAnswers
from providers.errors import ConnectorClosedError, InputError, LexibatchError, UnsupportedError
from providers.protocol import Prompt, as_messages
from providers.types import Message, Request, Response
from providers.validation import check_request

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.manager import PluginManager
    from plugins.registry import Registry
    from plugins.store import Store, StoredResult
    from providers.pricing import PriceTable
    from providers.protocol import Provider

__all__ = ["LexiConnector"]

T = TypeVar("T", bound=BaseModel)

#: Requests :meth:`LexiConnector.submit_all` queues between two turns of the event loop.
SUBMIT_CHUNK = 1000

log = logging.getLogger("lexibatch.connector")


#: The modes a call may name (``None``: the connector's own).
_MODES = (None, "immediate", "batch")


# How long release_batches lets batches whose callers are answered finish.
_WIND_DOWN_SECONDS = 10.0


class LexiConnector:
    """Provider + strategies + store behind the ``Connector`` protocol."""

    def __init__(
        self,
        *,
        provider: Provider,
        provider_name: str,
        settings: Settings,
        store: Store,
        prices: PriceTable,
        manager: PluginManager,
        registry: Registry,
    ) -> None:
        self.provider = provider
        self.provider_name = provider_name
        self.settings = settings
        self.store = store
        self.prices = prices
        self.manager = manager
        self.registry = registry
        self._hooks = manager.hook
        # Started and finished requests, told to the observers once per loop turn.
        self._events = RequestEvents(self._hooks)
        self._context = StrategyContext(
            provider=provider,
            provider_name=provider_name,
            settings=settings,
            store=store,
            prices=prices,
            hooks=self._hooks,
            spec=registry.provider(provider_name).spec,
        )
        self._immediate = registry.strategy("immediate").factory(self._context)
        self._context.immediate = self._immediate
        self._context.batch = self.batch_strategy
        self._batch: Strategy | None = None
        self._stopping = False
        self._giving_up = False
        self._batch_mode = False
        self._inflight: dict[str, asyncio.Future[Response]] = {}
        # A request's callers share a task: the immediate strategy says whether
        # one that every caller left may end (nothing of it out) or must land.
        self._shared = SharedCalls(self._inflight, self._immediate)
        self._closed = False
        # The futures of requests submit_all queued, settled as their batches answer.
        self._queued = QueuedCalls(self._inflight, self._events)
        self._warned_earlier_batch = False
        self._answers = StoredAnswers(store, provider_name)
        # Requests whose batch the user cancelled: read once, when first needed.
        self._user_cancels = UserCancels(store, provider_name, retry=settings.batch.retry_cancelled)
        self._model_checked: type[BaseModel] | None = None

    # -- modes -------------------------------------------------------------

    @property
    def batch_mode(self) -> bool:
        """Whether calls are currently routed through the batch endpoint."""
        return self._batch_mode

    def enable_batch_mode(self) -> None:
        """Route the following calls through the provider's batch endpoint.

        Raises:
            UnsupportedError: the provider has no batch endpoint.
        """
        self.batch_strategy()
        self._batch_mode = True

    def disable_batch_mode(self) -> None:
        """Route the following calls immediately again; batches already pending still run."""
        self._batch_mode = False

    def choose_mode(self, expected_requests: int, *, announce: bool = True) -> str:
        """Resolve the configured mode for a workload and switch to it.

        ``auto`` asks the ``choose_strategy`` hook (batch from
        ``batch.auto_threshold`` requests when the provider has a batch
        endpoint); a mode the user named is used as it is. Returns the
        chosen strategy name.
        """
        requested = self.settings.connector.mode
        workload = Workload(
            requested=requested,
            size=expected_requests,
            provider=self.provider_name,
            has_batch=self.provider.batch is not None,
            auto_threshold=self.settings.batch.auto_threshold,
        )
        chosen = workload.strategy(self._hooks.choose_strategy)
        if chosen == "batch":
            self.enable_batch_mode()
        else:
            self.disable_batch_mode()
        if announce and requested == "auto":
            why = (
                "the provider has no batch endpoint"
                if workload.has_batch is False
                else f"{expected_requests} requests, batch from {workload.auto_threshold}"
            )
            notice(f"mode auto: {chosen} ({why})")
        return str(chosen)

    def batch_strategy(self) -> Strategy:
        if self._batch is None:
            if self.provider.batch is None:
                raise UnsupportedError(
                    f"provider {self.provider_name!r} has no batch endpoint — use "
                    f"--mode immediate (or --mode auto to fall back automatically)"
                )
            batch = self.registry.strategy("batch").factory(self._context)
            if self._stopping:
                # Opened after the stop (a server's job between two): it creates nothing either.
                self._stop_creating(batch)
            self._batch = batch
        return self._batch

    async def execute_batch(self) -> None:
        """Dispatch everything pending now and wait until it has resolved."""
        if self._batch is not None:
            await self._batch.flush()

    # -- calls -------------------------------------------------------------

    async def structured(
        self,
        prompt: Prompt,
        response_model: type[T],
        *,
        task: str | None = None,
        model: str | None = None,
        **opts: Any,
    ) -> T:
        """Ask for an answer that validates against ``response_model``; see ``Connector``."""
        request = self.build_request(prompt, response_model, task=task, model=model, **opts)
        response = await self.generate(request, mode=opts.get("mode"))
        output: T = response.output
        return output

    def build_request(
        self,
        prompt: Prompt,
        response_model: type[BaseModel] | None,
        *,
        task: str | None = None,
        model: str | None = None,
        **opts: Any,
    ) -> Request:
        """The :class:`Request` that ``structured`` would send.

        Raises:
            InputError: ``response_model`` is not a pydantic model class, or an
                extra is named one slip away from an option (``temprature``).
        """
        if (
            response_model is not None
            and response_model is not self._model_checked
            and not (isinstance(response_model, type) and issubclass(response_model, BaseModel))
        ):
            raise InputError(
                f"request: response_model must be a pydantic model class, got {response_model!r}"
            )
        # The model class checked last: a run asks for one or a few, request after request.
        self._model_checked = response_model
        if not opts:
            # A prompt and a model, nothing else: the usual call, made the short way.
            return Request(
                model or self.settings.model_for(task),
                (Message("user", prompt),) if type(prompt) is str else as_messages(prompt),
                response_model,
                None,
                None,
                None,
                None,
                task,
                None,
            )
        return request_with_options(
            model or self.settings.model_for(task), prompt, response_model, task, opts
        )

    async def generate(self, request: Request, *, mode: str | None = None) -> Response:
        """Run one request (cache first) and return its full response.

        Raises:
            InputError: a field or the schema of ``request`` is invalid; raised
                before anything is looked up, journaled or sent.
            LexibatchError: the typed error the request ended in.
        """
        self._usable()
        if mode not in _MODES:
            raise InputError(f"mode must be 'immediate' or 'batch', not {mode!r}")
        check_request(request)
        key = request.key
        pending = self._inflight.get(key)
        if pending is not None:
            return await self._shared.wait(key, pending)
        self._events.started(request)
        cached = self._answers.lookup(request)
        if cached is not None:
            self._finished(request, cached, None)
            # One awaited call: its observers have heard of it when the await returns.
            self._events.flush()
            return cached
        try:
            self._user_cancels.refuse(request.key)
            strategy = self._strategy_for(request, mode)
            submit = None if strategy is self._immediate else getattr(strategy, "submit", None)
            # A queued request settles a future of its own, whoever waits for it;
            # one sent now runs as a task its callers share. Either way a caller
            # that gives up ends its own wait only (see plugins.sharedcalls).
            queued = None if submit is None else self._queue(request, submit)
        except LexibatchError as exc:
            self._finished(request, None, exc)
            self._events.flush()
            raise
        if queued is not None:
            return await self._shared.wait(key, queued)
        task = self._shared.start(key, self._run(request, strategy))
        return await self._shared.wait(key, task)

    def _queue(self, request: Request, submit: Any) -> asyncio.Future[Response]:
        """Queue ``request`` with a strategy that queues (``submit``); the future it settles."""
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._follow(request, future, submit(request))
        self._shared.queued(future, functools.partial(self._detach, request.key, future))
        return future

    def _detach(self, key: str, future: asyncio.Future[Response]) -> None:
        """Every caller of queued request ``key`` left: it stays queued, waited for by none."""
        self._queued.forget(key)
        if self._inflight.get(key) is future:
            del self._inflight[key]
        future.cancel()

    def _follow(self, request: Request, future: asyncio.Future[Response], promise: Any) -> None:
        """Settle ``future`` as ``promise`` (a queued request's) settles."""
        if type(promise) is BatchPromise:
            self._queued.add(request, future, promise)
        else:
            # Another strategy's future: told of its outcome by a callback.
            self._inflight[request.key] = future
            promise.add_done_callback(functools.partial(self._settle, request, future))

    async def _run(self, request: Request, strategy: Strategy) -> Response:
        """Run ``request`` through ``strategy``, telling the observers how it ended."""
        try:
            response = await strategy.run(request)
        except BaseException as exc:
            if isinstance(exc, LexibatchError):
                self._finished(request, None, exc)
            raise
        else:
            self._finished(request, response, None)
            return response
        finally:
            self._events.flush()

    def _usable(self) -> None:
        """Refuse a call the connector cannot make: closed, or on another event loop.

        Raises:
            ConnectorClosedError: :meth:`aclose` was called.
            UnsupportedError: the running event loop is not the one the connector
                was first used on (another ``asyncio.run``, another thread).
        """
        if self._closed:
            raise ConnectorClosedError(
                "the connector is closed: open a new one (its store keeps every answer)"
            )
        self._shared.bind()

    async def submit_all(
        self, requests: Sequence[Request], *, checked: bool = False
    ) -> list[asyncio.Future[Response]]:
        """Start every request as :meth:`generate` would; one future each, in order.

        In batch mode, with a strategy that queues without waiting (the
        built-in one), no coroutine is made per request: the cache is read
        for all of them at once, the others are queued, yielding to the
        event loop every :data:`SUBMIT_CHUNK` requests so that a full shard
        is sent while the next fills. Each future settles as ``generate``
        would: the response, or the typed error (hooks included), the moment
        the batch's answer is stored. Otherwise each request runs as a
        ``generate`` task. Await the futures after ``execute_batch()``.

        ``checked``: every request has passed
        :func:`~providers.validation.check_request` already (a request file
        is checked whole before anything is sent), so queued requests are
        not checked again.
        """
        self._usable()
        strategy = self.batch_strategy() if self._batch_mode else None
        if strategy is None or not hasattr(strategy, "submit"):
            return [asyncio.ensure_future(self.generate(r)) for r in requests]
        from plugins.batch.strategy import BatchStrategy

        # The built-in strategy journals a request from the bytes its key is
        # hashed from: serialized here, for the cache lookup, they are handed on.
        serialized = isinstance(strategy, BatchStrategy)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Response]] = []
        add = futures.append
        submit_one = self._submit_one
        for start in range(0, len(requests), SUBMIT_CHUNK):
            part = requests[start : start + SUBMIT_CHUNK]
            bares = [r.canonical_json_without_schema() for r in part] if serialized else None
            stored = self.store.get_results_of(self.provider_name, part)
            # Asked once a chunk: whether any request may be one the user cancelled.
            refuse = self._user_cancels.any()
            for i, request in enumerate(part):
                bare = bares[i] if bares is not None else None
                add(submit_one(strategy, request, stored, loop, checked, bare, refuse))
            await asyncio.sleep(0)
        return futures

    def _submit_one(
        self,
        strategy: Any,
        request: Request,
        stored: Mapping[str, StoredResult],
        loop: asyncio.AbstractEventLoop,
        checked: bool,
        bare: bytes | None,
        refuse: bool,
    ) -> asyncio.Future[Response]:
        """One request of :meth:`submit_all`: what ``generate`` does, settled on a future.

        ``bare``: the request's :meth:`~providers.types.Request.canonical_json_without_schema`
        for the built-in strategy (``None``: another strategy, which takes the request alone).
        ``refuse``: whether to look the request up among those the user
        cancelled (there are some, and they are not to be sent again).
        """
        if not checked:
            try:
                check_request(request)
            except InputError as exc:
                future: asyncio.Future[Response] = loop.create_future()
                future.set_exception(exc)
                return future
        key = request.key
        pending = self._inflight.get(key)
        if pending is not None:
            return pending
        future = loop.create_future()
        self._events.started(request)
        try:
            row = stored.get(key)
            cached = None if row is None else self._answers.of(request, row)
            if cached is not None:
                self._finished(request, cached, None)
                future.set_result(cached)
                return future
            if refuse:
                self._user_cancels.refuse(request.key)
            promise = strategy.submit(request) if bare is None else strategy.submit(request, bare)
        except Exception as exc:
            if isinstance(exc, LexibatchError):
                self._finished(request, None, exc)
            future.set_exception(exc)
            return future
        self._follow(request, future, promise)
        return future

    def _settle(
        self, request: Request, future: asyncio.Future[Response], done: asyncio.Future[Response]
    ) -> None:
        """Pass a queued request's outcome on to its :meth:`submit_all` future."""
        if self._inflight.get(request.key) is future:
            del self._inflight[request.key]
        if future.done():
            return
        told = pass_on(done, future)
        if told is not None:
            self._finished(request, *told)

    def _strategy_for(self, request: Request, mode: str | None) -> Strategy:
        if mode == "batch" or (mode is None and self._batch_mode):
            return self.batch_strategy()
        if self._in_earlier_batch(request):
            return self.batch_strategy()
        return self._immediate

    def _in_earlier_batch(self, request: Request) -> bool:
        """Whether ``request`` is in a batch an earlier run submitted and that may still run.

        Sending it immediately would pay for it a second time: it waits for
        that batch instead (the batch strategy re-attaches to it).
        """
        # Asked at every call (one index probe): a batch of this process or of
        # another may have been journaled since the last one.
        if self.provider.batch is None or not self.store.has_open_requests(self.provider_name):
            return False
        row = self.store.get_requests(self.provider_name, [request.key]).get(request.key)
        if row is None or row.state != "submitted" or row.shard_id is None:
            return False
        shard = self.store.get_shard(row.shard_id)
        if shard is None or shard.state not in UNFINISHED_SHARD_STATES:
            return False
        if self._batch is None and runner_elsewhere(self.store.path):
            # Another process runs this store's batches, this one among them:
            # the immediate strategy waits for its answer (plugins.crossmode).
            return False
        if not self._warned_earlier_batch:
            self._warned_earlier_batch = True
            log.warning(
                "some requests are in batch %s, submitted by an earlier run and not yet "
                "collected: they wait for that batch instead of being paid for again "
                "(a batch may take up to 24 h; `lexibatch batches list` shows it)",
                shard.batch_id or shard.shard_id,
            )
        return True

    def _finished(
        self, request: Request, response: Response | None, error: LexibatchError | None
    ) -> None:
        self._events.finished(request, response, error)

    # -- lifecycle ---------------------------------------------------------

    def stop_sending(self, *, refuse: bool = False) -> int:
        """Send no new call to the provider; how many requests sent are still to land.

        For an interrupted command (Ctrl-C): a call already sent may be paid
        for whatever happens to it, so it is left to finish and its answer is
        stored (await :meth:`sent_calls_landed`); nothing else goes out — a
        call not sent waits to be cancelled, or with ``refuse`` fails with
        :class:`~providers.errors.NotSentError`, and no new batch is created
        (its shard stays journaled). A batch already created needs no such
        wait: its journal re-attaches to it on the next run. Called again (a
        second Ctrl-C), the calls sent are given up: :meth:`aclose` no longer
        waits for them.
        """
        self._giving_up = self._stopping
        self._stopping = True
        self._stop_creating(self._batch)
        stop = getattr(self._immediate, "stop_sending", None)
        if stop is None:
            return 0
        return int(stop(refuse=refuse) if refuse else stop())

    @staticmethod
    def _stop_creating(batch: Strategy | None) -> None:
        """Tell ``batch`` (``None``: none is open) to create no new provider batch, if it can."""
        hold = getattr(batch, "stop_creating", None)
        if hold is not None:
            hold()

    @property
    def timed_out_calls(self) -> int:
        """Immediate calls sent whose answer did not come in time (the provider may bill them)."""
        return int(getattr(self._immediate, "timed_out", 0))

    async def sent_calls_landed(self) -> None:
        """Wait until every request sent before :meth:`stop_sending` has landed."""
        landed = getattr(self._immediate, "sent_calls_landed", None)
        if landed is not None:
            await landed()

    async def release_batches(self) -> bool:
        """Close the batch strategy if nothing waits on it; whether it is closed now.

        The store's batch lease goes with it (see :mod:`plugins.lease`), so
        another process may run the store's batches meanwhile — a long-lived
        server between jobs, say. The next batch call opens a strategy again,
        from the journal, taking the lease anew (``StoreBusyError`` while the
        other process holds it).
        """
        batch = self._batch
        if batch is None:
            return True
        wind_down = getattr(batch, "wind_down", None)
        if wind_down is None or not await wind_down(_WIND_DOWN_SECONDS):
            return False
        if self._batch is not batch:
            return True  # closed meanwhile
        self._batch = None
        await batch.aclose()
        return True

    async def aclose(self) -> None:
        """Close: calls already sent land and are stored; nothing more is sent.

        A request not sent yet ends with :class:`~providers.errors.NotSentError`;
        one waiting on a batch with :class:`~providers.errors.ConnectorClosedError`
        (it stays journaled: the next run on the store collects it). Then the
        provider and the store are released. A second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._shared.on_running_loop() and not self._giving_up:
                stop = getattr(self._immediate, "stop_sending", None)
                if stop is not None:
                    stop(refuse=True)
                    await self.sent_calls_landed()
            if self._batch is not None:
                await self._batch.aclose()
            await self._immediate.aclose()
            # What still runs waits on something no longer coming (another process's
            # answer, a closed batch): its callers are told the connector closed.
            running = self._shared.running()
            for task in running:
                task.cancel()
            if running and self._shared.on_running_loop():
                await asyncio.wait(running)
        finally:
            # Observers hear of every request before the connector is gone.
            self._events.flush()
            try:
                await self.provider.aclose()
            except RuntimeError:
                # Closed from another event loop than the one it ran on: its clients'
                # connections went with that loop.
                if self._shared.loop is None or self._shared.on_running_loop():
                    raise
            finally:
                self.store.close()

    async def __aenter__(self) -> LexiConnector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
