"""The emulator's own rate limits, and the headers that report them.

Requests and tokens are counted over a sliding minute (``rate_window``
seconds; shorter in tests). A call that would pass
``rpm_limit`` or ``tpm_limit`` is answered 429 with ``retry-after`` (the
seconds until enough of the window has passed), and every answer of an
inference route reports the state of both limits in each API's headers:

OpenAI
    ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
    ``x-ratelimit-reset-requests`` (a duration such as ``6ms`` or ``1m2s``)
    and the same three for ``-tokens``.
Anthropic
    ``anthropic-ratelimit-requests-limit`` / ``-remaining`` / ``-reset`` (an
    RFC 3339 time), the same for ``tokens``, ``input-tokens`` and
    ``output-tokens``.
Mistral
    ``x-ratelimit-limit-req-minute`` / ``x-ratelimit-remaining-req-minute``,
    the same for ``tokens-minute`` and ``tokens-month`` (a month of
    :data:`MISTRAL_TOKENS_MONTH`), and ``x-ratelimit-tokens-query-cost`` (the
    tokens the call used).

The headers always agree with the limits enforced: ``remaining`` reaches 0
exactly when the next call would be refused. A 429 forced by a fault
(``rate_limit``, ``@rate-limit``) reports, as a real 429 does, the request
limit its message names as used up: ``remaining`` 0 and a reset when its
``retry-after`` ends (:meth:`RateLimiter.exhausted_headers`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from math import ceil

__all__ = ["MISTRAL_TOKENS_MONTH", "RateLimiter", "openai_duration"]

WINDOW = 60.0
#: The monthly token limit Mistral's headers report (as a real organisation's).
MISTRAL_TOKENS_MONTH = 10_000_000_000


def openai_duration(seconds: float) -> str:
    """A reset duration as OpenAI writes it: ``0s``, ``120ms``, ``6.5s``, ``1m2s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_after(at: float) -> str:
    """``at`` rounded up to the second: a reset written no earlier than it happens."""
    return _rfc3339(float(ceil(at)))


class RateLimiter:
    """Requests and tokens over a sliding minute, against configured limits."""

    def __init__(self, clock: Callable[[], float] = time.time, window: float = WINDOW) -> None:
        self._clock = clock
        self.window = window
        #: Calls refused for a limit so far.
        self.refused = 0
        #: Calls admitted so far (counted as they arrive, before any answer).
        self.admitted = 0
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_sum = 0
        #: Tokens counted since the emulator started (what a month has used).
        self.spent_total = 0

    def _now(self) -> float:
        return self._clock()

    def _trim(self, now: float) -> None:
        edge = now - self.window
        while self._requests and self._requests[0] <= edge:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= edge:
            self._token_sum -= self._tokens.popleft()[1]

    def admit(self, rpm: int, tpm: int, tokens: int) -> float | None:
        """Count one call of about ``tokens`` prompt tokens; the retry-after when refused."""
        now = self._now()
        self._trim(now)
        waits: list[float] = []
        if len(self._requests) >= rpm:
            waits.append(self._requests[len(self._requests) - rpm] + self.window - now)
        if self._token_sum + tokens > tpm and self._tokens:
            # Until enough of the oldest tokens have left the window.
            excess = self._token_sum + tokens - tpm
            freed = 0
            for at, n in self._tokens:
                freed += n
                if freed >= excess:
                    waits.append(at + self.window - now)
                    break
            else:
                waits.append(self._tokens[-1][0] + self.window - now)
        if waits:
            self.refused += 1
            return max(0.001, max(waits))
        self._requests.append(now)
        self.admitted += 1
        return None

    def spend(self, tokens: int) -> None:
        """Count the tokens a call used (prompt and answer)."""
        if tokens > 0:
            now = self._now()
            self._tokens.append((now, tokens))
            self._token_sum += tokens
            self.spent_total += tokens

    def _resets(self, now: float) -> tuple[float, float]:
        requests = self._requests[0] + self.window - now if self._requests else 0.0
        tokens = self._tokens[0][0] + self.window - now if self._tokens else 0.0
        return max(0.0, requests), max(0.0, tokens)

    def headers(self, openai: bool, rpm: int, tpm: int) -> dict[str, str]:
        """The rate-limit headers of an answer, as the API of ``openai`` writes them."""
        now = self._now()
        self._trim(now)
        left_requests = max(0, rpm - len(self._requests))
        left_tokens = max(0, tpm - self._token_sum)
        reset_requests, reset_tokens = self._resets(now)
        if openai:
            return {
                "x-ratelimit-limit-requests": str(rpm),
                "x-ratelimit-limit-tokens": str(tpm),
                "x-ratelimit-remaining-requests": str(left_requests),
                "x-ratelimit-remaining-tokens": str(left_tokens),
                "x-ratelimit-reset-requests": openai_duration(reset_requests),
                "x-ratelimit-reset-tokens": openai_duration(reset_tokens),
            }
        headers: dict[str, str] = {
            "anthropic-ratelimit-requests-limit": str(rpm),
            "anthropic-ratelimit-requests-remaining": str(left_requests),
            "anthropic-ratelimit-requests-reset": _rfc3339(now + reset_requests),
        }
        for name in ("tokens", "input-tokens", "output-tokens"):
            headers[f"anthropic-ratelimit-{name}-limit"] = str(tpm)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(left_tokens)
            headers[f"anthropic-ratelimit-{name}-reset"] = _rfc3339(now + reset_tokens)
        return headers

    def exhausted_headers(
        self, openai: bool, rpm_shown: int, tpm: int, wait: float
    ) -> dict[str, str]:
        """The rate-limit headers of a 429 saying ``rpm_shown`` requests per minute are used up.

        ``remaining-requests`` is 0 and the request limit resets when the
        ``retry-after`` of ``wait`` seconds ends; the tokens report the real state.
        """
        headers = self.headers(openai, rpm_shown, tpm)
        now = self._now()
        if openai:
            headers["x-ratelimit-remaining-requests"] = "0"
            headers["x-ratelimit-reset-requests"] = openai_duration(wait)
        else:
            headers["anthropic-ratelimit-requests-remaining"] = "0"
            headers["anthropic-ratelimit-requests-reset"] = _rfc3339_after(now + wait)
        return headers

    def mistral_headers(
        self, rpm: int, tpm: int, cost: int, *, exhausted: bool = False
    ) -> dict[str, str]:
        """The rate-limit headers of a Mistral answer that used ``cost`` tokens.

        ``exhausted``: a 429 forced by a fault, which reports no request left.
        """
        now = self._now()
        self._trim(now)
        left_requests = 0 if exhausted else max(0, rpm - len(self._requests))
        return {
            "x-ratelimit-limit-req-minute": str(rpm),
            "x-ratelimit-remaining-req-minute": str(left_requests),
            "x-ratelimit-limit-tokens-minute": str(tpm),
            "x-ratelimit-remaining-tokens-minute": str(max(0, tpm - self._token_sum)),
            "x-ratelimit-limit-tokens-month": str(MISTRAL_TOKENS_MONTH),
            "x-ratelimit-remaining-tokens-month": str(
                max(0, MISTRAL_TOKENS_MONTH - self.spent_total)
            ),
            "x-ratelimit-tokens-query-cost": str(cost),
        }
