"""The one retry policy: what it retries, how long, retry-after, timeouts of paid calls."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from plugins.config import RetrySettings
from plugins.retry import RetryPolicy
from providers.errors import (
    AuthenticationError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    SchemaValidationError,
    ServerError,
)


def _policy(**settings: Any) -> RetryPolicy:
    values = {"backoff_initial": 0.001, "backoff_max": 0.002, **settings}
    return RetryPolicy(RetrySettings(**values), provider="openai")


class Flaky:
    """Fails with ``errors`` in turn, then answers ``"ok"``; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retryable_failures_are_tried_again_until_an_answer() -> None:
    call = Flaky(ServerError("boom"), RateLimitError("slow down"), ProviderConnectionError("x"))
    assert await _policy().call(call, what="call") == "ok"
    assert call.calls == 4


async def test_permanent_failures_and_schema_misfits_are_not_retried() -> None:
    for error in (InvalidRequestError("bad"), SchemaValidationError("misfit")):
        call = Flaky(error)
        with pytest.raises(type(error)):
            await _policy().call(call, what="call")
        assert call.calls == 1


async def test_a_refused_key_is_not_sent_again_while_the_hold_lasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from plugins import retry

    policy = _policy()
    refused = Flaky(AuthenticationError("Incorrect API key provided", status_code=401))
    with pytest.raises(AuthenticationError):
        await policy.call(refused, what="call")
    # Every other call fails at once with the refusal: nothing is sent with the key.
    others = Flaky()
    for _ in range(3):
        with pytest.raises(AuthenticationError, match=r"not sent: the provider refused the same"):
            await policy.call(others, what="call")
    assert others.calls == 0
    # A 403 (one model refused to a good key) holds nothing back.
    forbidden = _policy()
    with pytest.raises(AuthenticationError):
        await forbidden.call(Flaky(AuthenticationError("no", status_code=403)), what="call")
    assert await forbidden.call(Flaky(), what="call") == "ok"
    # Once the hold is over, the key is tried again (it may have been put right).
    monkeypatch.setattr(retry, "KEY_REFUSED_HOLD", 0.0)
    assert await policy.call(others, what="call") == "ok" and others.calls == 1


async def test_it_gives_up_after_max_attempts_and_says_so() -> None:
    call = Flaky(*[ServerError("down")] * 10)
    with pytest.raises(ServerError, match=r"gave up after 3 tries in"):
        await _policy(max_attempts=3).call(call, what="call")
    assert call.calls == 3


async def test_retry_after_is_waited_for_even_past_backoff_max() -> None:
    call = Flaky(RateLimitError("slow down", retry_after=0.3))
    started = time.monotonic()
    assert await _policy().call(call, what="call") == "ok"
    assert time.monotonic() - started >= 0.3


async def test_no_try_starts_after_give_up_after() -> None:
    call = Flaky(*[ProviderConnectionError("refused")] * 1000)
    started = time.monotonic()
    with pytest.raises(ProviderConnectionError, match="gave up after"):
        await _policy(
            max_attempts=1000, backoff_initial=0.05, backoff_max=0.05, give_up_after=0.5
        ).call(call, what="call")
    assert time.monotonic() - started < 0.6
    assert 2 <= call.calls < 1000


async def test_the_time_bound_counts_from_the_first_try_however_long_it_took() -> None:
    class Slow(Flaky):
        async def __call__(self) -> str:
            if self.calls == 0:
                await asyncio.sleep(0.5)
            return await super().__call__()

    # The first try takes 0.5 s: past the bound already, whatever the pause.
    slow = Slow(*[ProviderConnectionError("refused")] * 5)
    with pytest.raises(ProviderConnectionError):
        await _policy(backoff_initial=0.2, backoff_max=0.2, give_up_after=0.45).call(
            slow, what="call"
        )
    assert slow.calls == 1
    # A bound the first try leaves room under: tried again, as often as it fits.
    quick = Flaky(*[ProviderConnectionError("refused")] * 2)
    assert await _policy(give_up_after=5).call(quick, what="call") == "ok"
    assert quick.calls == 3


async def test_a_paid_call_that_timed_out_is_sent_again_at_most_timeout_retries_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeouts = [ProviderTimeoutError("no answer in time")] * 5
    paid = Flaky(*timeouts)
    with caplog.at_level(logging.INFO, "lexibatch.retry"), pytest.raises(ProviderTimeoutError):
        await _policy(timeout_retries=1).call(paid, what="request k", paid=True)
    assert paid.calls == 2
    said = [r for r in caplog.records if "may bill the call" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    # Not paid (a poll, an upload): a timeout is one transient failure among others.
    unpaid = Flaky(*timeouts)
    assert await _policy().call(unpaid, what="poll") == "ok"
    assert unpaid.calls == 6
    never = Flaky(*timeouts)
    with pytest.raises(ProviderTimeoutError):
        await _policy(timeout_retries=0).call(never, what="request k", paid=True)
    assert never.calls == 1


async def test_once_unreachable_other_calls_get_one_try_until_one_gets_through() -> None:
    policy = _policy(max_attempts=4)
    first = Flaky(*[ProviderConnectionError("refused")] * 10)
    with pytest.raises(ProviderConnectionError):
        await policy.call(first, what="call")
    assert first.calls == 4 and policy.unreachable is not None
    second = Flaky(*[ProviderConnectionError("refused")] * 10)
    with pytest.raises(ProviderConnectionError):
        await policy.call(second, what="call")
    assert second.calls == 1
    back = Flaky()
    assert await policy.call(back, what="call") == "ok"
    assert policy.unreachable is None
    third = Flaky(ProviderConnectionError("blip"))
    assert await policy.call(third, what="call") == "ok"
    assert third.calls == 2


async def test_a_pause_the_provider_asked_for_is_waited_for_past_give_up_after() -> None:
    call = Flaky(*[RateLimitError("slow down", retry_after=0.2)] * 2)
    started = time.monotonic()
    assert await _policy(give_up_after=0.1).call(call, what="poll") == "ok"
    assert call.calls == 3 and time.monotonic() - started >= 0.4
