"""A caller that gives up (cancelled, timed out) ends its own wait: nothing paid is lost.

Against the emulator, which bills a call whose client stopped waiting, as the
real APIs do.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from plugins.factory import open_connector
from plugins.store import Store
from providers.errors import (
    ConnectorClosedError,
    InputError,
    NotSentError,
    UnsupportedError,
)
from tests.plugins.batch_helpers import Entry


def _ledger(settings: Any) -> int:
    with Store(settings.connector.db) as store:
        return int(store.query("SELECT COUNT(*) FROM calls")[0][0])


def _billed(emu: Any) -> tuple[int, int]:
    billing = emu.billing()
    return billing["immediate"]["requests"], billing["duplicates"]


async def _until(predicate: Any) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("waited 10 s")


async def test_a_timed_out_immediate_call_lands_and_is_not_paid_again(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(latency=0.6)
    settings = make_settings(fresh_emulator)
    connector = open_connector(settings)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connector.structured("lantern", Entry), 0.15)
        assert time.monotonic() - started < 0.5  # the caller is let go at once
        # The call sent goes on: asked again meanwhile, the same call answers.
        again = await connector.structured("lantern", Entry)
        assert again.word
        # Once landed, it is the cache's.
        assert (await connector.generate(connector.build_request("lantern", Entry))).cached
        # Given up and asked again only after the call would have landed: the cache's too.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connector.structured("meadow", Entry), 0.15)
        await asyncio.sleep(0.8)
        assert (await connector.generate(connector.build_request("meadow", Entry))).cached
    finally:
        await connector.aclose()
    assert _billed(fresh_emulator) == (2, 0)
    assert _ledger(settings) == 2


async def test_an_abandoned_call_is_stored_for_the_next_run(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(latency=0.4)
    settings = make_settings(fresh_emulator)
    connector = open_connector(settings)
    try:
        task = asyncio.ensure_future(connector.structured("meadow", Entry))
        await asyncio.sleep(0.15)  # sent: the emulator answers (and bills) it at 0.4 s
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await connector.aclose()  # waits for the call sent to land
    later = open_connector(settings)
    try:
        response = await later.generate(later.build_request("meadow", Entry))
    finally:
        await later.aclose()
    assert response.cached
    assert _billed(fresh_emulator) == (1, 0)
    assert _ledger(settings) == 1


async def test_a_request_cancelled_before_it_is_sent_is_never_sent(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(latency=0.4)
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"base_url": fresh_emulator.base_url + "/v1", "max_concurrency": 1}},
    )
    connector = open_connector(settings)
    try:
        first = asyncio.ensure_future(connector.structured("first", Entry))
        waiting = asyncio.ensure_future(connector.structured("second", Entry))
        await asyncio.sleep(0.15)  # the first is out, answered at 0.4 s
        waiting.cancel()  # still waiting for the one slot: nothing of it is out
        assert (await first).word
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.5)
    finally:
        await connector.aclose()
    assert _billed(fresh_emulator) == (1, 0)


@pytest.mark.parametrize("mode", ["immediate", "batch"])
async def test_one_caller_giving_up_leaves_the_others_of_the_same_request_their_answer(
    fresh_emulator: Any, make_settings: Any, mode: str
) -> None:
    fresh_emulator.configure(latency=0.3, batch_seconds=0.3)
    settings = make_settings(fresh_emulator)
    connector = open_connector(settings)
    try:
        if mode == "batch":
            connector.enable_batch_mode()
        quitter = asyncio.ensure_future(connector.structured("harbour", Entry))
        stayer = asyncio.ensure_future(connector.structured("harbour", Entry))
        await asyncio.sleep(0.1)
        quitter.cancel()
        answer = await asyncio.wait_for(stayer, 30)
        assert answer.word and not stayer.cancelled()
        assert quitter.cancelled()
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing[mode]["requests"] == 1 and billing["duplicates"] == 0


async def test_a_task_group_whose_sibling_failed_loses_none_of_the_calls_it_cancelled(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(latency=0.4)
    settings = make_settings(fresh_emulator)
    prompts = [f"group word {i}" for i in range(5)]

    async def fails_soon() -> None:
        await asyncio.sleep(0.15)  # the five calls are out: answered (and billed) at 0.4 s
        raise LookupError("a sibling's own failure")

    async def ask_all(connector: Any, fail: bool) -> None:
        async with asyncio.TaskGroup() as group:
            for prompt in prompts:
                group.create_task(connector.structured(prompt, Entry))
            if fail:
                group.create_task(fails_soon())

    connector = open_connector(settings)
    try:
        with pytest.raises(ExceptionGroup) as failed:
            await ask_all(connector, fail=True)
        assert failed.group_contains(LookupError)
    finally:
        await connector.aclose()  # the five calls land and are stored
    assert _billed(fresh_emulator) == (5, 0)
    assert _ledger(settings) == 5
    again = open_connector(settings)
    try:
        await ask_all(again, fail=False)
    finally:
        await again.aclose()
    assert _billed(fresh_emulator) == (5, 0)


async def test_closing_lands_the_calls_sent_and_ends_the_rest_typed(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(latency=0.4)
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"base_url": fresh_emulator.base_url + "/v1", "max_concurrency": 2}},
    )  # answered (and billed) 0.4 s after it is sent
    connector = open_connector(settings)
    asks = [asyncio.ensure_future(connector.structured(f"closing {i}", Entry)) for i in range(4)]
    await asyncio.sleep(0.15)  # two are out (two slots), answered at 0.4 s
    assert fresh_emulator.billing()["immediate"]["requests"] == 0
    await connector.aclose()
    outcomes = await asyncio.gather(*asks, return_exceptions=True)
    answered = [o for o in outcomes if isinstance(o, Entry)]
    refused = [o for o in outcomes if isinstance(o, NotSentError)]
    assert len(answered) == 2 and len(refused) == 2, outcomes
    assert _ledger(settings) == 2
    with pytest.raises(ConnectorClosedError):
        await connector.structured("closing 0", Entry)
    later = open_connector(settings)
    try:
        for i in range(4):
            await later.structured(f"closing {i}", Entry)
    finally:
        await later.aclose()
    assert _billed(fresh_emulator) == (4, 0)


async def test_closing_in_batch_mode_tells_the_waiting_callers_and_the_next_run_collects(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(batch_seconds=1.5)
    settings = make_settings(fresh_emulator)
    connector = open_connector(settings)
    connector.enable_batch_mode()
    asks = [asyncio.ensure_future(connector.structured(f"shelf {i}", Entry)) for i in range(3)]
    with Store(settings.connector.db) as store:
        await _until(lambda: any(s.batch_id for s in store.shards()))
    await connector.aclose()  # the batch runs on (answered and billed at 1.5 s)
    outcomes = await asyncio.gather(*asks, return_exceptions=True)
    assert all(isinstance(o, ConnectorClosedError) for o in outcomes), outcomes
    later = open_connector(settings)
    try:
        later.enable_batch_mode()
        answers = await asyncio.gather(*(later.structured(f"shelf {i}", Entry) for i in range(3)))
    finally:
        await later.aclose()
    assert all(a.word for a in answers)
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 3 and billing["duplicates"] == 0


def test_a_connector_used_on_a_second_event_loop_refuses_before_sending(
    fresh_emulator: Any, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(fresh_emulator)
    connector = open_connector(settings)
    assert asyncio.run(connector.structured("first loop", Entry)).word
    with pytest.raises(UnsupportedError, match="open a connector for each event loop"):
        asyncio.run(connector.structured("second loop", Entry))
    assert _billed(fresh_emulator) == (1, 0)

    async def close() -> None:
        await connector.aclose()

    asyncio.run(close())


async def test_a_mode_that_is_none_is_refused(fresh_emulator: Any, make_settings: Any) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        with pytest.raises(InputError, match="mode must be 'immediate' or 'batch', not 'batchh'"):
            await connector.structured("word", Entry, mode="batchh")
    finally:
        await connector.aclose()
    assert _billed(fresh_emulator) == (0, 0)
