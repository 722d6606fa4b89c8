"""Batch polls start after a few seconds, grow to the poll interval, and honour retry-after."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from pydantic import BaseModel

from plugins import hookimpl
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


class _SleepLog:
    """``asyncio`` as the executor sees it, with every non-zero sleep written down."""

    def __init__(self, log: list[tuple[str, float]]) -> None:
        self._log = log

    async def sleep(self, seconds: float) -> None:
        if seconds:
            self._log.append(("sleep", seconds))
        await asyncio.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


async def test_polls_against_the_emulator_follow_the_schedule(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugins.batch.executor as executor

    config = EmulatorConfig(batch_seconds=1.0, finalizing=0.0)
    # In order: the batch created, each wait asked for, each poll and what it saw.
    events: list[tuple[str, float]] = []
    monkeypatch.setattr(executor, "asyncio", _SleepLog(events))
    with Emulator(config) as emu:
        settings = make_settings(
            emu,
            batch={"first_poll": 0.1, "poll_interval": 0.4, "max_poll_interval": 0.4},
        )
        connector = open_connector(settings)
        try:
            endpoint = connector.provider.batch
            create, poll = endpoint.create, endpoint.poll

            async def created(*args: Any, **kwargs: Any) -> Any:
                info = await create(*args, **kwargs)
                events.append(("created", time.monotonic()))
                return info

            async def polled(batch_id: str) -> Any:
                at = time.monotonic()
                info = await poll(batch_id)
                events.append(("ended" if info.state.terminal else "running", at))
                return info

            endpoint.create, endpoint.poll = created, polled
            connector.enable_batch_mode()
            pending = asyncio.ensure_future(connector.structured("swift", Word))
            await connector.execute_batch()
            assert (await pending).word
        finally:
            await connector.aclose()
    kinds = [kind for kind, _ in events]
    # Created, then wait and poll in turn until a poll sees the batch ended:
    # polling stops at once then.
    polls = len(kinds) // 2 - 1
    assert polls >= 2
    assert kinds == ["created"] + ["sleep", "running"] * polls + ["sleep", "ended"], kinds
    # The waits are the schedule's: 0.1 s, then 0.125, 0.156, ... s, growing,
    # never past the interval. The batch ends about 1 s after creation; the
    # last wait, and so the delay in collecting it, is at most one interval.
    waits = [seconds for kind, seconds in events if kind == "sleep"]
    schedule = PollSchedule(first=0.1, interval=0.4, ceiling=0.4)
    assert waits == [schedule.next_wait() for _ in waits]
    assert waits[:3] == [0.1, 0.125, 0.15625] and max(waits) <= 0.4
    # Each poll came no sooner than its wait after the one before (or the create).
    moments = [at for kind, at in events if kind != "sleep"]
    for wait, (before, after) in zip(waits, itertools.pairwise(moments), strict=True):
        assert after - before >= wait - 0.005


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


@pytest.mark.parametrize("counts", ["none succeeded", "some succeeded", "not counted"])
async def test_an_ended_batch_never_said_ready_is_read_after_the_grace_unless_it_holds_answers(
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    counts: str,
) -> None:
    # A provider plugin that leaves BatchInfo.results_ready unset once its batch ended.
    import dataclasses

    import plugins.batch.executor as executor

    monkeypatch.setattr(executor, "ENDED_UNREADY_GRACE", 0.5)
    with Emulator(EmulatorConfig(batch_seconds=0.2, finalizing=0.0)) as emu:
        settings = make_settings(
            emu, batch={"first_poll": 0.05, "poll_interval": 0.1, "max_poll_interval": 0.1}
        )
        connector = open_connector(settings)
        try:
            endpoint = connector.provider.batch
            poll = endpoint.poll
            polls: list[bool] = []

            async def never_ready(batch_id: str) -> Any:
                info = await poll(batch_id)
                polls.append(info.state.terminal)
                counted = info.succeeded if counts == "some succeeded" else 0
                total = 0 if counts == "not counted" else info.total
                return dataclasses.replace(
                    info, results_ready=False, succeeded=counted, total=total
                )

            endpoint.poll = never_ready
            told: list[bool] = []

            class Told:
                @hookimpl
                def batch_status_changed(self, batch: Any, previous: Any, provider: str) -> None:
                    if batch.state.terminal:
                        told.append(batch.results_ready)

            connector.manager.pm.register(Told(), name="told")
            connector.enable_batch_mode()
            pending = asyncio.ensure_future(connector.structured("swift", Word))
            if counts != "none succeeded":
                # Paid answers, or counts that do not say there are none, are waited
                # for however long: still waiting, said once.
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pending), 2.0)
                assert polls.count(True) >= 10
                assert caplog.text.count("its provider does not say its results can be") == 1
                assert ("with 1 answers" in caplog.text) is (counts == "some succeeded")
                assert "lexibatch batches forget batch_" in caplog.text
                endpoint.poll = poll
            # Bounded: without the grace, a batch never said ready is polled forever.
            await asyncio.wait_for(connector.execute_batch(), 30)
            assert (await pending).word
        finally:
            if connector.manager.pm.has_plugin("told"):
                connector.manager.pm.unregister(name="told")
            await connector.aclose()
    ended = [t for t in polls if t]
    assert len(ended) >= 4  # polled through the grace, then read
    assert ("reading what it has" in caplog.text) is (counts == "none succeeded")
    # The observers (the progress display) heard it ended unreadable, then readable.
    assert told[0] is False and told[-1] is True, told
