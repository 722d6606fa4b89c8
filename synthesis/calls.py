"""How the pipeline asks: one structured call from a prompt template, calls awaited together.

Calls of a word are awaited together but never cancelled when one fails: in
batch mode their answers are already paid for (and the store keeps them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel

from providers.protocol import Connector
from synthesis.prompts import render

__all__ = ["ask", "batch_scope", "both", "gather_all"]

# No answer of the pipeline needs more output tokens than this.
_MAX_TOKENS_CAP = 4000

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
A = TypeVar("A")
B = TypeVar("B")


@contextmanager
def batch_scope(connector: Connector, enabled: bool) -> Iterator[None]:
    """Batch mode on the connector for the block, when ``enabled``; restored after."""
    if not enabled or connector.batch_mode:
        yield
        return
    connector.enable_batch_mode()
    try:
        yield
    finally:
        connector.disable_batch_mode()


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Await all; if any failed, raise the first failure once all have ended.

    Unlike a plain ``gather``, no call is left running unobserved when one
    fails, and unlike a task group, no sibling is cancelled: in batch mode
    their answers are already paid for.
    """
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both together; like :func:`gather_all` for two of different types."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b


async def ask(
    connector: Connector, template: str, model: type[M], task: str, max_tokens: int, **ctx: Any
) -> M:
    """The answer to ``template`` rendered with ``ctx``, as ``model``, tagged ``task``."""
    prompt = render(template, **ctx)
    return await connector.structured(
        prompt, model, task=task, max_tokens=min(max_tokens, _MAX_TOKENS_CAP)
    )
