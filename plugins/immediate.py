"""The immediate strategy: concurrent calls, rate-limited, retried, validated.

Per request: wait for a concurrency slot and for the requests-per-minute and
tokens-per-minute budgets, call the provider, validate the answer. Retryable
provider errors (429, 5xx, timeouts, connection failures) are retried by the
one retry policy (:mod:`plugins.retry`, ``[retry]``), which bounds how long an
unreachable provider is tried and how often a timed-out, maybe billed, call is
sent again. An answer that fails schema validation is re-asked a bounded number of
times, telling the model what was wrong. Every paid call is recorded in the
ledger, and the final answer lands in the cache.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from plugins.ledger import record_paid, record_unanswered
from plugins.results import build_response
from providers.errors import SchemaValidationError
from providers.types import Completion, Message, Request, Response, Usage

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

    from plugins.registry import StrategyContext

__all__ = ["ImmediateStrategy", "estimate_request_tokens"]

_REASK = (
    "Your previous answer did not match the required JSON schema ({error}). "
    "Answer again with only JSON that matches the schema exactly."
)


def estimate_request_tokens(request: Request) -> int:
    """A cheap upper-bound guess of the tokens a request consumes, for the TPM budget."""
    chars = sum(len(m.content) for m in request.messages)
    return chars // 4 + 8 * len(request.messages) + (request.max_tokens or 512)


class ImmediateStrategy:
    """Sends each request at once; the strategy behind ``mode = "immediate"``."""

    name = "immediate"

    def __init__(self, context: StrategyContext) -> None:
        self.context = context
        self.provider = context.provider
        self.provider_name = context.provider_name
        psettings = context.settings.provider_settings(context.provider_name)
        self._semaphore = asyncio.Semaphore(psettings.max_concurrency)
        self._rpm = _limiter(psettings.rpm)
        self._tpm = _limiter(psettings.tpm)
        self._reask = context.settings.immediate.reask
        self._retry = context.retry

    async def run(self, request: Request) -> Response:
        """Send ``request`` now (retrying and re-asking as configured)."""
        usage = Usage()
        current = request
        calls: list[Completion] = []
        for attempt in range(self._reask + 1):
            try:
                completion = await self._call_with_retries(current)
            except BaseException:
                # A re-ask that failed: the answers before it were paid for all the same.
                if calls:
                    record_unanswered(self.context, request, calls, mode="immediate")
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
                )
            except SchemaValidationError as exc:
                if attempt >= self._reask:
                    record_unanswered(self.context, request, calls, mode="immediate")
                    raise
                current = current.with_messages(
                    [
                        *current.messages,
                        Message("assistant", completion.content),
                        Message("user", _REASK.format(error=exc.message)),
                    ]
                )
                continue
            return record_paid(self.context, request, calls, final=response, mode="immediate")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_with_retries(self, request: Request) -> Completion:
        return await self._retry.call(
            lambda: self._call_once(request), what=f"request {request.key}", paid=True
        )

    async def _call_once(self, request: Request) -> Completion:
        async with self._semaphore:
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                await self._tpm.acquire(min(estimate_request_tokens(request), self._tpm.max_rate))
            return await self.provider.complete(request)

    async def flush(self) -> None:
        """Nothing is ever pending: every call is sent at once."""

    async def aclose(self) -> None:
        """Nothing to release: the connector closes the provider."""


def _limiter(per_minute: int | None) -> AsyncLimiter | None:
    if not per_minute:
        return None
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(per_minute, 60.0)
