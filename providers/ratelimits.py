"""What a provider's rate-limit headers say is left, read provider-neutrally.

OpenAI sends ``x-ratelimit-remaining-requests`` / ``-tokens`` with
``x-ratelimit-reset-requests`` / ``-tokens`` as durations (``6ms``, ``1m2s``);
Anthropic sends ``anthropic-ratelimit-requests-remaining`` /
``-tokens-remaining`` with ``-reset`` as RFC 3339 times. Either becomes one
:class:`RateLimitState`, which the immediate strategy uses to pause before
a limit is hit rather than after a 429.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["RateLimitState", "parse_duration", "rate_limit_state", "retry_after_seconds"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """Requests and tokens left in the provider's current window, and when it refills.

    Attributes:
        remaining_requests: calls left before the requests limit (``None``: not said).
        remaining_tokens: tokens left before the tokens limit (``None``: not said).
        requests_reset_at: epoch seconds when the requests limit has refilled.
        tokens_reset_at: epoch seconds when the tokens limit has refilled.
    """

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    requests_reset_at: float | None = None
    tokens_reset_at: float | None = None


def parse_duration(text: str) -> float | None:
    """Seconds of an OpenAI reset duration (``6ms``, ``1.5s``, ``1m2s``, ``2h``)."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _at(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rate_limit_state(headers: Mapping[str, str], now: float | None = None) -> RateLimitState | None:
    """The state the headers report; ``None`` when they carry no rate-limit header."""
    now = time.time() if now is None else now
    get = headers.get
    if get("x-ratelimit-remaining-requests") is not None or get("x-ratelimit-remaining-tokens"):
        reset_r = parse_duration(get("x-ratelimit-reset-requests") or "")
        reset_t = parse_duration(get("x-ratelimit-reset-tokens") or "")
        return RateLimitState(
            _int(get("x-ratelimit-remaining-requests")),
            _int(get("x-ratelimit-remaining-tokens")),
            None if reset_r is None else now + reset_r,
            None if reset_t is None else now + reset_t,
        )
    if get("anthropic-ratelimit-requests-remaining") is not None:
        return RateLimitState(
            _int(get("anthropic-ratelimit-requests-remaining")),
            _int(get("anthropic-ratelimit-tokens-remaining")),
            _at(get("anthropic-ratelimit-requests-reset")),
            _at(get("anthropic-ratelimit-tokens-reset")),
        )
    return None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """How long the answer with ``headers`` asks to wait: ``retry-after-ms``, else ``retry-after``.

    Seconds (milliseconds for the first); ``None`` when neither is said, or
    said as a number this cannot read or below zero (the HTTP-date form of
    ``retry-after`` is not sent by the providers).
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        return seconds if seconds >= 0 else None
    return None
