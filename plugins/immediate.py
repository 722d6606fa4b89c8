"""The immediate strategy: concurrent calls, rate-limited, retried, validated.

Per request: wait for a concurrency slot, for the requests-per-minute and
tokens-per-minute budgets and, when the provider's rate-limit headers said
its limit is used up, for its reset; call the provider, validate the answer. Retryable
provider errors (429, 5xx, timeouts, connection failures) are retried with
exponential backoff and jitter, waiting at least what ``retry-after`` asked
for. An answer that fails schema validation is re-asked a bounded number of
times, telling the model what was wrong; one cut at ``max_tokens`` is asked
again with twice the limit, as many times. Every paid call is recorded in the
ledger, and the final answer lands in the cache.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from plugins.ledger import record_paid, record_unanswered
from plugins.pacing import Pacer
from plugins.results import build_response, more_tokens
from providers.errors import ProviderError, SchemaValidationError, TruncatedError
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
        imm = context.settings.immediate
        self._max_attempts = imm.max_attempts
        self._backoff_initial = imm.backoff_initial
        self._backoff_max = imm.backoff_max
        self._reask = imm.reask
        # Paces by the provider's rate-limit headers, before a 429.
        self._pacer = Pacer()
        self._jitter = wait_random_exponential(
            multiplier=self._backoff_initial, max=self._backoff_max
        )

    async def run(self, request: Request) -> Response:
        """Send ``request`` now (retrying and re-asking as configured)."""
        usage = Usage()
        current = request
        calls: list[Completion] = []
        for attempt in range(self._reask + 1):
            completion = await self._call_with_retries(current)
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
            except TruncatedError as exc:
                # Cut at max_tokens: the same request would be cut again.
                if exc.retry_max_tokens is None or attempt >= self._reask:
                    record_unanswered(self.context, request, calls, mode="immediate")
                    raise
                current = more_tokens(current, exc)
                continue
            return record_paid(self.context, request, calls, final=response, mode="immediate")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_with_retries(self, request: Request) -> Completion:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call_once(request)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        backoff = float(self._jitter(state))
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return max(backoff, min(exc.retry_after, self._backoff_max))
        return backoff

    async def _call_once(self, request: Request) -> Completion:
        async with self._semaphore:
            await self._pacer.wait()
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                await self._tpm.acquire(min(estimate_request_tokens(request), self._tpm.max_rate))
            completion = await self.provider.complete(request)
            self._pacer.observe(completion.rate_limit)
            return completion

    async def flush(self) -> None:
        """Nothing is ever pending: every call is sent at once."""

    async def aclose(self) -> None:
        """Nothing to release: the connector closes the provider."""


def _is_retryable(exc: BaseException) -> bool:
    return (
        isinstance(exc, ProviderError)
        and exc.retryable
        and not isinstance(exc, SchemaValidationError)
    )


def _limiter(per_minute: int | None) -> AsyncLimiter | None:
    if not per_minute:
        return None
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(per_minute, 60.0)
