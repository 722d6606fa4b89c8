"""Pausing immediate calls before a provider's rate limit is hit, not after a 429.

The account's own budgets (``rpm``, ``tpm``) are kept by a limiter each
(:func:`per_minute_limiter`); a call takes :func:`tpm_tokens` of the tokens one.

Every answer of OpenAI and Anthropic says how many requests and tokens are
left in the current window and when it refills. When an answer says nothing
(or too little) is left, new calls wait until the reset that answer named;
calls already in flight are not held back. A 429 is still possible (other
clients share the limit) and is retried as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from providers.ratelimits import RateLimitState
from providers.tokens import estimate_tokens

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

    from providers.types import Request

__all__ = ["Pacer", "per_minute_limiter", "tpm_tokens"]

#: Longest single pause: a reset far in the future is more likely a clock
#: difference than a real wait; a 429 will tell otherwise.
MAX_PAUSE = 60.0


class Pacer:
    """Holds new calls while the provider says its limit is used up."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._until = 0.0

    def observe(self, state: RateLimitState | None, tokens_next: int = 0) -> None:
        """Note what an answer's headers said; an exhausted limit pauses new calls."""
        if state is None:
            return
        until = 0.0
        if state.remaining_requests is not None and state.remaining_requests <= 0:
            until = max(until, state.requests_reset_at or 0.0)
        if state.remaining_tokens is not None and state.remaining_tokens <= tokens_next:
            until = max(until, state.tokens_reset_at or 0.0)
        if until:
            self._until = max(self._until, min(until, self._clock() + MAX_PAUSE))

    def pause(self) -> float:
        """Seconds new calls must still wait (0 when none)."""
        return max(0.0, self._until - self._clock())

    async def wait(self) -> float:
        """Wait until the provider's window has refilled; returns the seconds waited."""
        waited = 0.0
        while (pause := self.pause()) > 0:
            await self._sleep(pause)
            waited += pause
        return waited


def per_minute_limiter(per_minute: int | None) -> AsyncLimiter | None:
    """A budget of ``per_minute`` a minute (``None`` when it is not set)."""
    if not per_minute:
        return None
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(per_minute, 60.0)


def tpm_tokens(request: Request) -> int:
    """The tokens ``request`` takes from a tokens-per-minute budget: its input, by the
    one estimator, and its output limit (which providers count in full), else the
    estimator's guess of its output."""
    given, answer = estimate_tokens(request)
    return given + (request.max_tokens or answer)
