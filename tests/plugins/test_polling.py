"""Batch polls start after a few seconds, grow to the poll interval, and honour retry-after."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from pydantic import BaseModel

from plugins.batch.polling import PollSchedule
from plugins.factory import open_connector
from plugins.pacing import Pacer
from providers.emulator import Emulator, EmulatorConfig
from providers.ratelimits import RateLimitState


def test_the_schedule_starts_short_and_grows_to_the_interval_then_the_ceiling() -> None:
    schedule = PollSchedule(first=2.0, interval=30.0, ceiling=300.0)
    waits = [schedule.next_wait() for _ in range(24)]
    assert waits[:4] == [2.0, 2.5, 3.125, 3.90625]
    # A batch that ends within its first minute is collected less than 15 s after it
    # ends, one that ends within 20 s less than 7 s after.
    elapsed = list(itertools.accumulate(waits))
    for wait, at in zip(waits, elapsed, strict=True):
        if at - wait < 60:
            assert wait < 15
        if at - wait < 20:
            assert wait < 7
    assert 30.0 in waits and waits.index(30.0) == 13
    assert waits[14] == 45.0 and waits[-1] == 300.0
    assert all(a <= b for a, b in itertools.pairwise(waits))


def test_a_first_wait_longer_than_the_interval_is_the_interval() -> None:
    schedule = PollSchedule(first=2.0, interval=0.5, ceiling=0.5)
    assert [schedule.next_wait() for _ in range(3)] == [0.5, 0.5, 0.5]


def test_retry_after_is_never_undercut() -> None:
    schedule = PollSchedule(first=2.0, interval=30.0, ceiling=300.0)
    assert schedule.next_wait(retry_after=10.0) == 10.0
    assert schedule.next_wait(retry_after=1.0) == 2.5  # the schedule's own wait is longer


async def test_the_pacer_holds_new_calls_until_the_window_refills() -> None:
    now = [1000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(clock=lambda: now[0], sleep=sleep)
    pacer.observe(RateLimitState(remaining_requests=5, requests_reset_at=1001.0))
    assert await pacer.wait() == 0 and slept == []
    pacer.observe(RateLimitState(remaining_requests=0, requests_reset_at=1002.5))
    assert await pacer.wait() == pytest.approx(2.5)
    pacer.observe(RateLimitState(remaining_tokens=0, tokens_reset_at=now[0] + 1e6))
    assert pacer.pause() == 60.0  # a far reset is capped; a 429 would say otherwise


class Word(BaseModel):
    word: str


def _poll_times(connector: Any) -> list[float]:
    """Wrap the batch endpoint's poll so that each call's time is recorded."""
    endpoint = connector.provider.batch
    times: list[float] = []
    original = endpoint.poll

    async def poll(batch_id: str) -> Any:
        times.append(time.monotonic())
        return await original(batch_id)

    endpoint.poll = poll
    return times


async def test_polls_against_the_emulator_follow_the_schedule(make_settings: Any) -> None:
    config = EmulatorConfig(batch_seconds=1.0, finalizing=0.0)
    with Emulator(config) as emu:
        settings = make_settings(
            emu,
            batch={"first_poll": 0.1, "poll_interval": 0.4, "max_poll_interval": 0.4},
        )
        connector = open_connector(settings)
        try:
            times = _poll_times(connector)
            connector.enable_batch_mode()
            started = time.monotonic()
            pending = asyncio.ensure_future(connector.structured("swift", Word))
            await connector.execute_batch()
            done = time.monotonic()
            assert (await pending).word
        finally:
            await connector.aclose()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 3
    # First poll 0.1 s after the create (plus the 0.05 s linger), then 0.125, 0.156,
    # ... s: growing, never past the interval (plus scheduling slack).
    assert times[0] - started < 0.05 + 0.1 + 0.3
    assert gaps[0] == pytest.approx(0.125, abs=0.06)
    assert gaps[1] == pytest.approx(0.156, abs=0.06)
    assert all(g < 0.55 for g in gaps)
    assert all(b >= a - 0.08 for a, b in itertools.pairwise(gaps))
    # The batch ends about 1 s after creation; it is collected within one interval of that.
    assert done - started < 1.0 + 0.4 + 0.5


async def test_anthropic_polls_wait_what_retry_after_asks(make_settings: Any) -> None:
    config = EmulatorConfig(batch_seconds=0.9, poll_retry_after=0.5)
    with Emulator(config) as emu:
        settings = make_settings(
            emu,
            provider="anthropic",
            batch={"first_poll": 0.05, "poll_interval": 0.05, "max_poll_interval": 0.05},
        )
        connector = open_connector(settings)
        try:
            times = _poll_times(connector)
            connector.enable_batch_mode()
            pending = asyncio.ensure_future(connector.structured("swift", Word))
            await connector.execute_batch()
            assert (await pending).word
        finally:
            await connector.aclose()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Every poll after one answered "in progress, retry-after 0.5" came 0.5 s later, not 0.05.
    assert gaps and all(g >= 0.45 for g in gaps)
