"""The pending side of a batched request: what is kept while it waits, and what is awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from typing import Any

from pydantic import BaseModel

from providers.types import Request, Response

__all__ = ["BatchPromise", "BatchRequest", "Follower", "settle_answers"]


class BatchRequest:
    """A request waiting for its batch result.

    It keeps only what finishing the request needs (key, model, task, the
    response model or schema): never the prompt, so memory does not grow with
    prompt size while hundreds of thousands of requests wait. The prompt is
    in the spool file and the journal.
    """

    # Six slots, 80 bytes a waiting request: the response model and the raw
    # schema share one (a request has a schema of its own only without a
    # model), and nothing is kept that only queuing needs.
    __slots__ = ("attempts", "future", "key", "model", "shape", "task")

    #: What its answer is judged against: the response model (a class), the
    #: raw JSON schema (a mapping), or ``None`` for a text answer.
    shape: type[BaseModel] | Mapping[str, Any] | None

    def __init__(
        self,
        key: str,
        model: str,
        task: str | None,
        response_model: type[BaseModel] | None,
        json_schema: Mapping[str, Any] | None,
        future: BatchPromise | None,
        attempts: int = 0,
    ) -> None:
        # No copy of the key's bytes here: a million waiting requests would
        # hold 65 MB more. The journal row takes them from the request; an
        # answer converts its key once for its cache and ledger rows.
        self.key = key
        self.model = model
        self.task = task
        self.shape = json_schema if response_model is None else response_model
        self.future = future
        self.attempts = attempts

    @property
    def response_model(self) -> type[BaseModel] | None:
        """The model its answer is validated into, if any."""
        shape = self.shape
        return shape if isinstance(shape, type) else None

    @property
    def json_schema(self) -> Mapping[str, Any] | None:
        """The raw JSON schema its answer is checked against, when it has no model."""
        shape = self.shape
        return None if shape is None or isinstance(shape, type) else shape

    @classmethod
    def of(cls, request: Request, future: BatchPromise | None, attempts: int = 0) -> BatchRequest:
        """The pending record of ``request`` (``future`` is ``None`` when nobody waits)."""
        return cls(
            request.key,
            request.model,
            request.task,
            request.response_model,
            request.json_schema,
            future,
            attempts,
        )


class _Mark:
    """What a promise holds instead of an outcome: nothing yet, or cancelled."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


# A promise holds its state in its one value slot (a million waiting
# promises are 16 MB smaller without a state slot): one of these marks, the
# response, or the typed error (an exception is never a response).
_PENDING = _Mark("pending")
_CANCELLED = _Mark("cancelled")


class Follower:
    """What many promises tell, each the moment it settles (see :meth:`BatchPromise.follow`).

    One follower follows any number of promises, so following one costs no
    object of its own (a callback per promise would be one more object, and
    one more turn of the event loop, for each of hundreds of thousands of
    requests). :meth:`settled` is called in the settling code's own turn,
    in the middle of a batch's answers being handed over: it must be quick
    and must not raise.
    """

    __slots__ = ()

    def settled(self, promise: BatchPromise) -> None:
        """``promise`` has just settled (:meth:`BatchPromise.done` is true)."""
        raise NotImplementedError


# What a promise tells when it settles: nothing, its follower, or callbacks
# (functions called soon, as a future's are, and at most one follower).
_Told = list["Callable[[BatchPromise], object] | Follower"] | Follower | None


class BatchPromise:
    """Awaitable result of one batched request, settled by the batch strategy.

    ``await promise`` returns the request's :class:`Response` once its batch
    result has been stored, or raises its typed error. Awaiting is optional:
    an error nobody reads is not logged.

    It keeps its outcome itself and makes an ``asyncio`` future only for a
    caller that waits before the outcome is there (hundreds of thousands of
    requests queued at once would otherwise keep a future each). The
    strategy settles it with the future's methods: :meth:`set_result`,
    :meth:`set_exception`, :meth:`cancel`.
    """

    __slots__ = ("_callbacks", "_value", "_waiter", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._value: Any = _PENDING
        self._waiter: asyncio.Future[Response] | None = None
        self._callbacks: _Told = None

    def __await__(self) -> Generator[Any, None, Response]:
        if self._value is not _PENDING:
            return self.result()
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        # Shielded: a caller that stops waiting does not cancel the request.
        return (yield from asyncio.shield(self._waiter).__await__())

    def done(self) -> bool:
        """Whether the result (or error) has arrived."""
        return self._value is not _PENDING

    def cancelled(self) -> bool:
        """Whether the request was cancelled (the strategy closed before it ended)."""
        return self._value is _CANCELLED

    def result(self) -> Response:
        """The response, once :meth:`done` (raises the typed error on failure).

        Raises:
            asyncio.InvalidStateError: it has not settled yet.
            asyncio.CancelledError: it was cancelled.
        """
        value = self._value
        if type(value) is Response:
            return value
        if value is _PENDING:
            raise asyncio.InvalidStateError("the batch result has not arrived yet")
        if value is _CANCELLED:
            raise asyncio.CancelledError
        if isinstance(value, BaseException):
            raise value
        response: Response = value  # a subclass of Response
        return response

    def exception(self) -> BaseException | None:
        """The typed error, once :meth:`done` (``None`` after a result).

        Raises:
            asyncio.InvalidStateError: it has not settled yet.
            asyncio.CancelledError: it was cancelled.
        """
        value = self._value
        if value is _PENDING:
            raise asyncio.InvalidStateError("the batch result has not arrived yet")
        if value is _CANCELLED:
            raise asyncio.CancelledError
        return value if isinstance(value, BaseException) else None

    def add_done_callback(self, fn: Callable[[BatchPromise], object]) -> None:
        """Call ``fn(promise)`` soon after it settles (at once if it has), as futures do."""
        if self._value is not _PENDING:
            asyncio.get_running_loop().call_soon(fn, self)
        else:
            self._tell(fn)

    def follow(self, follower: Follower) -> None:
        """Tell ``follower`` the moment this settles (at once if it has), in the same turn.

        Unlike :meth:`add_done_callback`, nothing waits for the event loop:
        whoever settles the promise calls ``follower.settled(promise)``.
        """
        if self._value is not _PENDING:
            follower.settled(self)
        else:
            self._tell(follower)

    def _tell(self, told: Callable[[BatchPromise], object] | Follower) -> None:
        callbacks = self._callbacks
        if callbacks is None:
            # A follower alone is kept as it is, without a list (the usual case).
            self._callbacks = told if isinstance(told, Follower) else [told]
        elif isinstance(callbacks, Follower):
            self._callbacks = [callbacks, told]
        else:
            callbacks.append(told)

    def set_result(self, response: Response) -> None:
        """Settle with ``response`` (the strategy's call)."""
        self._settle(response)

    def set_exception(self, error: BaseException) -> None:
        """Settle with the typed ``error`` (the strategy's call)."""
        self._settle(error)

    def cancel(self) -> bool:
        """Settle as cancelled; ``False`` when it had settled already."""
        if self._value is not _PENDING:
            return False
        self._settle(_CANCELLED)
        return True

    def _settle(self, value: Any) -> None:
        if self._value is not _PENDING:
            raise asyncio.InvalidStateError(f"batch result of {self.key} settled twice")
        self._value = value
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if value is _CANCELLED:
                waiter.cancel()
            elif isinstance(value, BaseException):
                waiter.set_exception(value)
                # A caller that stopped waiting never reads it: not "never retrieved".
                waiter.exception()
            else:
                waiter.set_result(value)
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is None:
            return
        if isinstance(callbacks, Follower):
            callbacks.settled(self)
            return
        loop = asyncio.get_running_loop()
        for fn in callbacks:
            if isinstance(fn, Follower):
                fn.settled(self)
            else:
                loop.call_soon(fn, self)


def settle_answers(
    answered: list[tuple[BatchRequest, Response]], pending: dict[str, BatchRequest]
) -> None:
    """Hand each stored answer to its caller's promise; none of them is pending any more.

    The same as ``set_result`` on each promise not settled yet, done in one
    loop: a batch's answers are handed over by the tens of thousands, and
    most promises have nobody awaiting them yet (no waiter, no callback) or
    only a follower, told at once.
    """
    pop = pending.pop
    for request, response in answered:
        pop(request.key, None)
        promise = request.future
        if promise is None:
            continue
        if type(promise) is not BatchPromise:
            # Another kind of future: settled through its own methods.
            if not promise.done():
                promise.set_result(response)
        elif promise._value is _PENDING:
            told = promise._callbacks
            if promise._waiter is not None or isinstance(told, list):
                promise.set_result(response)
            else:
                promise._value = response
                if told is not None:
                    promise._callbacks = None
                    told.settled(promise)
