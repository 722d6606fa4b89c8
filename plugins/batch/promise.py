"""The pending side of a batched request: what is kept while it waits, and what is awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from typing import Any

from pydantic import BaseModel

from providers.types import Request, Response

__all__ = ["BatchPromise", "BatchRequest"]


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
        future: asyncio.Future[Response] | None,
        attempts: int = 0,
        est_cost: float = 0.0,
    ) -> None:
        self.key = key
        self.model = model
        self.task = task
        self.response_model = response_model
        self.json_schema = json_schema
        self.future = future
        self.attempts = attempts
        self.est_cost = est_cost

    @classmethod
    def of(
        cls, request: Request, future: asyncio.Future[Response] | None, attempts: int = 0
    ) -> BatchRequest:
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


class BatchPromise:
    """Awaitable result of one batched request.

    ``await promise`` returns the request's :class:`Response` once its batch
    result has been stored, or raises its typed error.
    """

    __slots__ = ("_future", "key")

    def __init__(self, key: str, future: asyncio.Future[Response]) -> None:
        self.key = key
        self._future = future

    def __await__(self) -> Generator[Any, None, Response]:
        return asyncio.shield(self._future).__await__()

    def done(self) -> bool:
        """Whether the result (or error) has arrived."""
        return self._future.done()

    def result(self) -> Response:
        """The response, once :meth:`done` (raises the typed error on failure)."""
        return self._future.result()

    def add_done_callback(self, fn: Callable[[asyncio.Future[Response]], object]) -> None:
        """Call ``fn`` with the settled future once the result (or error) has arrived."""
        self._future.add_done_callback(fn)
