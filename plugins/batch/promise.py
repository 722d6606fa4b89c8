"""The pending side of a batched request: what is kept while it waits, and what is awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from typing import Any

from pydantic import BaseModel

from providers.types import Request, Response

__all__ = ["BatchPromise", "BatchRequest", "settle_answers"]


class BatchRequest:
    """A request waiting for its batch result.

    It keeps only what finishing the request needs (key, model, task, the
    response model or schema): never the prompt, so memory does not grow with
    prompt size while hundreds of thousands of requests wait. The prompt is
    in the spool file and the journal.
    """

    __slots__ = (
        "attempts",
        "est_cost",
        "future",
        "json_schema",
        "key",
        "model",
        "response_model",
        "task",
    )

    def __init__(
        self,
        key: str,
        model: str,
        task: str | None,
        response_model: type[BaseModel] | None,
        json_schema: Mapping[str, Any] | None,
        future: BatchPromise | None,
        attempts: int = 0,
        est_cost: float = 0.0,
    ) -> None:
        # No copy of the key's bytes here: a million waiting requests would
        # hold 65 MB more. The journal row takes them from the request; an
        # answer converts its key once for its cache and ledger rows.
        self.key = key
        self.model = model
        self.task = task
        self.response_model = response_model
        self.json_schema = json_schema
        self.future = future
        self.attempts = attempts
        self.est_cost = est_cost

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


# A promise's states.
_PENDING, _RESULT, _ERROR, _CANCELLED = 0, 1, 2, 3


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

    __slots__ = ("_callbacks", "_state", "_value", "_waiter", "key")

    def __init__(self, key: str) -> None:
        self.key = key
        self._state = _PENDING
        self._value: Any = None
        self._waiter: asyncio.Future[Response] | None = None
        self._callbacks: list[Callable[[BatchPromise], object]] | None = None

    def __await__(self) -> Generator[Any, None, Response]:
        if self._state != _PENDING:
            return self.result()
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        # Shielded: a caller that stops waiting does not cancel the request.
        return (yield from asyncio.shield(self._waiter).__await__())

    def done(self) -> bool:
        """Whether the result (or error) has arrived."""
        return self._state != _PENDING

    def cancelled(self) -> bool:
        """Whether the request was cancelled (the strategy closed before it ended)."""
        return self._state == _CANCELLED

    def result(self) -> Response:
        """The response, once :meth:`done` (raises the typed error on failure).

        Raises:
            asyncio.InvalidStateError: it has not settled yet.
            asyncio.CancelledError: it was cancelled.
        """
        if self._state == _RESULT:
            value: Response = self._value
            return value
        if self._state == _ERROR:
            raise self._value
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        raise asyncio.InvalidStateError("the batch result has not arrived yet")

    def exception(self) -> BaseException | None:
        """The typed error, once :meth:`done` (``None`` after a result).

        Raises:
            asyncio.InvalidStateError: it has not settled yet.
            asyncio.CancelledError: it was cancelled.
        """
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the batch result has not arrived yet")
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        return self._value if self._state == _ERROR else None

    def add_done_callback(self, fn: Callable[[BatchPromise], object]) -> None:
        """Call ``fn(promise)`` soon after it settles (at once if it has), as futures do."""
        if self._state != _PENDING:
            asyncio.get_running_loop().call_soon(fn, self)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)

    def set_result(self, response: Response) -> None:
        """Settle with ``response`` (the strategy's call)."""
        self._settle(_RESULT, response)

    def set_exception(self, error: BaseException) -> None:
        """Settle with the typed ``error`` (the strategy's call)."""
        self._settle(_ERROR, error)

    def cancel(self) -> bool:
        """Settle as cancelled; ``False`` when it had settled already."""
        if self._state != _PENDING:
            return False
        self._settle(_CANCELLED, None)
        return True

    def _settle(self, state: int, value: Any) -> None:
        if self._state != _PENDING:
            raise asyncio.InvalidStateError(f"batch result of {self.key} settled twice")
        self._state, self._value = state, value
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if state == _RESULT:
                waiter.set_result(value)
            elif state == _ERROR:
                waiter.set_exception(value)
                # A caller that stopped waiting never reads it: not "never retrieved".
                waiter.exception()
            else:
                waiter.cancel()
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            loop = asyncio.get_running_loop()
            for fn in callbacks:
                loop.call_soon(fn, self)


def settle_answers(
    answered: list[tuple[BatchRequest, Response]], pending: dict[str, BatchRequest]
) -> None:
    """Hand each stored answer to its caller's promise; none of them is pending any more.

    The same as ``set_result`` on each promise not settled yet, done in one
    loop: a batch's answers are handed over by the tens of thousands, and
    most promises have nobody awaiting them yet (no waiter, no callback).
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
        elif promise._state == _PENDING:
            if promise._waiter is None and promise._callbacks is None:
                promise._state = _RESULT
                promise._value = response
            else:
                promise.set_result(response)
