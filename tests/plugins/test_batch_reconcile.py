"""Every ended batch is reconciled: missing lines are sent again, foreign lines reported."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from plugins.factory import open_connector
from tests.plugins.batch_helpers import Entry, gather


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_lines_missing_from_a_batch_are_sent_again_and_billed_once(
    make_settings: Any, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    model = {"openai": {}, "anthropic": {"connector": {"model": "claude-3-5-haiku-latest"}}}
    prompts = [f"reconcile {i}" for i in range(10)]
    with Emulator(EmulatorConfig(batch_seconds=0.0, drop_result_lines=3)) as emu:
        connector = open_connector(make_settings(emu, provider=provider, **model[provider]))
        try:
            connector.enable_batch_mode()
            with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
                results = await gather(connector, prompts)
            shards = connector.store.shards()
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in results), results
    # The second round held exactly the three lost requests.
    assert sorted(s.requests for s in shards) == [3, 10]
    assert billing["batch"]["requests"] == 10 and billing["duplicates"] == 0
    first = next(s for s in shards if s.requests == 10)
    warnings = [r.getMessage() for r in caplog.records if "no line in its result" in r.getMessage()]
    assert len(warnings) == 1
    assert f"batch {first.batch_id}: 3 of its requests have no line" in warnings[0]
    assert "queued again" in warnings[0]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_result_line_naming_no_request_of_ours_is_reported(
    make_settings: Any, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    model = {"openai": {}, "anthropic": {"connector": {"model": "claude-3-5-haiku-latest"}}}
    with Emulator(EmulatorConfig(batch_seconds=0.0, foreign_result_lines=2)) as emu:
        connector = open_connector(make_settings(emu, provider=provider, **model[provider]))
        try:
            connector.enable_batch_mode()
            with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
                results = await gather(connector, [f"foreign {i}" for i in range(4)])
            shard = connector.store.shards()[0]
            stored = connector.store.count_results(provider)
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in results), results
    assert stored == 4 and billing["batch"]["requests"] == 4
    warnings = [
        r.getMessage() for r in caplog.records if "name no request of ours" in r.getMessage()
    ]
    assert warnings == [
        f"batch {shard.batch_id}: 2 result lines name no request of ours "
        f"(e.g. 'foreign-{shard.batch_id}-0'): they are ignored"
    ]


async def test_missing_lines_beside_lines_under_foreign_ids_fail_and_are_not_paid_again(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Answers returned under ids that are not ours (a provider or plugin that does
    # not keep custom_id): queued again, they would be paid again every round.
    from providers.emulator import Emulator, EmulatorConfig
    from providers.errors import UnusableAnswerError

    config = EmulatorConfig(batch_seconds=0.0, drop_result_lines=3, foreign_result_lines=3)
    with Emulator(config) as emu:
        connector = open_connector(make_settings(emu))
        try:
            connector.enable_batch_mode()
            results = await gather(connector, [f"misnamed {i}" for i in range(10)])
            shards = connector.store.shards()
        finally:
            await connector.aclose()
        billing = emu.billing()
    failed = [r for r in results if not isinstance(r, Entry)]
    assert len(failed) == 3 and len(shards) == 1
    for error in failed:
        assert isinstance(error, UnusableAnswerError) and not error.retryable
        assert f"batch {shards[0].batch_id} has no line for this request but 3 under ids" in str(
            error
        )
    said = [r.getMessage() for r in caplog.records if "no line in its result" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(
        "they fail, not sent again: lines under ids not ours may be their answers"
    )
    # One batch, no second round: the emulator bills the 7 lines it returned, once.
    assert billing["batch"]["requests"] == 7 and billing["duplicates"] == 0


async def test_a_resumed_batch_whose_failed_lines_were_sent_again_reports_no_foreign_ids(
    make_settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run 1 stores the first chunk of the batch's error lines (their requests
    # go on to a retry round, and succeed there), then dies. Run 2 reads the
    # batch again: those lines name requests of ours that moved on to a later
    # shard, not foreign ids, so the two lines the batch lost are queued
    # again, not failed as answers under other names.
    import plugins.batch.executor as executor
    from plugins.batch.settlement import Settlement
    from providers.emulator import Emulator, EmulatorConfig
    from providers.openai import OpenAIBatchEndpoint

    monkeypatch.setattr(executor, "RESULT_CHUNK", 4)
    finish_items = Settlement.finish_items
    calls = 0

    def crash_at_second_chunk(self: Settlement, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("process killed while storing results")
        finish_items(self, *args)

    # The emulator loses only answered lines; these are error lines.
    results = OpenAIBatchEndpoint.results
    lossy: list[str] = []

    async def first_batch_loses_two_lines(self: Any, info: Any) -> Any:
        lossy[:] = lossy or [info.id]
        items = [item async for item in results(self, info)]
        for item in items[:-2] if info.id in lossy else items:
            yield item

    monkeypatch.setattr(OpenAIBatchEndpoint, "results", first_batch_loses_two_lines)
    prompts = [f"moved on {i}" for i in range(10)]
    model = "gpt-4o-mini@item-error-once"
    with Emulator(EmulatorConfig(batch_seconds=0.0)) as emu:
        settings = make_settings(emu)
        first = open_connector(settings)
        monkeypatch.setattr(Settlement, "finish_items", crash_at_second_chunk)
        try:
            first.enable_batch_mode()
            with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
                got = await asyncio.wait_for(gather(first, prompts, model=model), 60)
            assert sum(isinstance(r, Entry) for r in got) == 4, got
            shards = {s.round: s for s in first.store.shards()}
            assert (shards[0].state, shards[1].state) == ("ended", "collected")
        finally:
            await first.aclose()
        monkeypatch.setattr(Settlement, "finish_items", finish_items)

        second = open_connector(settings)
        try:
            second.enable_batch_mode()
            with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
                await asyncio.wait_for(second.batch_strategy().resume(), 60)
            assert second.store.count_requests("openai") == {"succeeded": 10}
            again = await gather(second, prompts, model=model)
            assert all(isinstance(r, Entry) for r in again), again
        finally:
            await second.aclose()
        billing = emu.billing()
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "name no request of ours" in m], said
    lost = [m for m in said if "no line in its result" in m]
    assert len(lost) == 1, said
    assert lost[0].startswith(f"batch {lossy[0]}: 2 of its requests have no line"), said
    assert lost[0].endswith("they are queued again"), said
    assert billing["batch"]["requests"] == 10 and billing["duplicates"] == 0
