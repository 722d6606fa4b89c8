"""The garbage-collector hold taken while a chunk of batch results is stored."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

import plugins.batch.executor as executor
import plugins.batch.strategy as strategy_module
from plugins.batch.gcpause import GcHold
from plugins.batch.settlement import Settlement
from plugins.factory import open_connector


class Word(BaseModel):
    """A small response model."""

    word: str


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    assert not GcHold.held(), "a test left a hold taken"
    if not was:
        gc.disable()


def test_holds_nest_and_the_last_release_switches_the_collector_back_on() -> None:
    GcHold.hold()
    GcHold.hold()
    assert not gc.isenabled() and GcHold.held()
    GcHold.release()
    assert not gc.isenabled()
    GcHold.release()
    assert gc.isenabled() and not GcHold.held()


def test_a_collector_the_program_switched_off_stays_off() -> None:
    gc.disable()
    try:
        GcHold.hold()
        GcHold.release()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_release_without_a_hold_changes_nothing() -> None:
    GcHold.release()
    assert gc.isenabled() and not GcHold.held()


@pytest.fixture
async def batch_connector(fresh_emulator: Any, make_settings: Any) -> AsyncIterator[Any]:
    connector = open_connector(make_settings(fresh_emulator))
    connector.enable_batch_mode()
    try:
        yield connector
    finally:
        await connector.aclose()


def _succeeded(promise: Any) -> bool:
    try:
        promise.result()
    except Exception:
        return False
    return True


async def test_collecting_results_leaves_the_collector_on_even_when_storing_fails(
    batch_connector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "RESULT_CHUNK", 3)
    original = Settlement.finish_items
    states: list[bool] = []

    def observe(self: Settlement, *args: Any) -> None:
        states.append(gc.isenabled())
        if len(states) == 2:
            raise RuntimeError("storing failed")
        original(self, *args)

    monkeypatch.setattr(Settlement, "finish_items", observe)
    strategy = batch_connector.batch_strategy()
    promises = [strategy.submit(batch_connector.build_request(f"w{i}", Word)) for i in range(7)]
    await batch_connector.execute_batch()
    assert all(p.done() for p in promises)
    assert sum(_succeeded(p) for p in promises) == 3
    # Off while each chunk was stored, on again after, the failure included.
    assert states == [False, False]
    assert gc.isenabled()


async def test_queuing_holds_the_collector_until_the_loop_turns(
    batch_connector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(strategy_module, "BURST_HOLD_REQUESTS", 3)
    releases: list[bool] = []
    original_release = GcHold.release

    def counting_release() -> None:
        releases.append(True)
        original_release()

    monkeypatch.setattr(GcHold, "release", counting_release)
    strategy = batch_connector.batch_strategy()
    strategy.submit(batch_connector.build_request("w0", Word))
    assert not gc.isenabled()
    for i in range(1, 7):
        strategy.submit(batch_connector.build_request(f"w{i}", Word))
    # Seven requests in one turn: the hold was let go after the 3rd and the 6th.
    assert len(releases) == 2 and not gc.isenabled()
    await asyncio.sleep(0)
    assert gc.isenabled() and len(releases) == 3
    strategy.submit(batch_connector.build_request("last", Word))
    assert not gc.isenabled()
    # Closing ends a hold the loop has not yet ended.
    await batch_connector.aclose()
    assert gc.isenabled()
