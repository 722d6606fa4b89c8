"""The batch strategy against the emulator: the same typed await, sharding, outcomes, resume."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from plugins.batch.settlement import Settlement
from plugins.batch.strategy import BatchStrategy
from plugins.factory import open_connector
from providers.errors import (
    BatchFailedError,
    BudgetExceededError,
    InputError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    SchemaValidationError,
    ServerError,
    StoreWriteError,
)
from tests.plugins.batch_helpers import Entry, crash_once, fill_up, free_up, gather


async def test_gather_in_batch_mode_returns_typed_results_at_the_batch_price(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        results = await gather(connector, [f"word {i}" for i in range(30)])
        assert all(isinstance(r, Entry) for r in results)
        response = await connector.generate(connector.build_request("word 3", Entry, task="t"))
        assert response.cached and response.mode == "batch" and response.batch_id
        (row,) = connector.store.cost_report()
        assert row.mode == "batch" and row.requests == 30
        # The discount comes from the price table: about half of immediate.
        assert row.cost_usd == pytest.approx(row.immediate_cost_usd / 2, rel=0.01)
        assert [s.state for s in connector.store.shards()] == ["collected"]
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 30 and billing["duplicates"] == 0
    assert billing["immediate"]["requests"] == 0


async def test_shards_respect_count_and_byte_limits(
    fresh_emulator: Any, make_settings: Any, tmp_path: Any
) -> None:
    settings = make_settings(fresh_emulator, batch={"max_requests": 7})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, [f"w{i}" for i in range(20)])
        assert all(isinstance(r, Entry) for r in results)
        assert sorted(s.requests for s in connector.store.shards()) == [6, 7, 7]
    finally:
        await connector.aclose()
    limit = 2500  # bytes: two or three encoded requests
    settings = make_settings(
        fresh_emulator,
        batch={"max_bytes": limit},
        connector={"db": str(tmp_path / "bytes.db")},
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, [f"v{i}" for i in range(10)])
        assert all(isinstance(r, Entry) for r in results)
        shards = connector.store.shards()
        assert len(shards) >= 3 and all(s.bytes <= limit for s in shards)
        assert sum(s.requests for s in shards) == 10
    finally:
        await connector.aclose()


async def test_one_model_per_openai_batch(fresh_emulator: Any, make_settings: Any) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        await asyncio.gather(
            gather(connector, ["a", "b"], model="gpt-4o-mini"),
            gather(connector, ["c", "d"], model="gpt-4o"),
        )
        assert sorted(s.model for s in connector.store.shards()) == ["gpt-4o", "gpt-4o-mini"]
    finally:
        await connector.aclose()


@pytest.mark.parametrize(
    "marker", ["item-error-once", "expire-once", "cancel-once", "schema-invalid-once"]
)
async def test_retryable_item_failures_are_rebatched(
    fresh_emulator: Any, make_settings: Any, marker: str
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        results = await gather(connector, ["x", "y", "z"], model=f"gpt-4o-mini@{marker}")
        assert all(isinstance(r, Entry) for r in results), results
        rounds = len(connector.store.shards())
        # Finished items of an expired or cancelled batch are kept; the rest go again.
        assert 1 <= rounds <= 1 + connector.settings.batch.max_retry_rounds
        paid = sum(r.requests for r in connector.store.cost_report())
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    if marker.startswith("schema-invalid"):
        # A schema-invalid answer was paid for; asking again is a second, recorded call.
        assert rounds == 2 and billing["batch"]["requests"] == paid == 6
    else:
        assert billing["duplicates"] == 0 and billing["batch"]["requests"] == paid == 3


@pytest.mark.parametrize("max_retry_rounds", [1, 2])
async def test_persistent_item_failures_end_in_typed_errors(
    fresh_emulator: Any, make_settings: Any, max_retry_rounds: int
) -> None:
    settings = make_settings(fresh_emulator, batch={"max_retry_rounds": max_retry_rounds})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        bad, good = await asyncio.gather(
            gather(connector, ["p", "q"], model="gpt-4o-mini@schema-invalid"),
            gather(connector, ["r"]),
        )
        assert all(isinstance(e, SchemaValidationError) for e in bad)
        assert isinstance(good[0], Entry)
        states = connector.store.count_requests("openai")
        assert states == {"failed": 2, "succeeded": 1}
        # The first round and exactly max_retry_rounds more, each one paid.
        failing = [s for s in connector.store.shards() if s.model.endswith("@schema-invalid")]
        assert sorted(s.round for s in failing) == list(range(1 + max_retry_rounds))
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 2 * (1 + max_retry_rounds) + 1


async def test_a_failed_batch_fails_its_requests_only(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        bad, good = await asyncio.gather(
            gather(connector, ["f1", "f2"], model="gpt-4o-mini@fail-batch"),
            gather(connector, ["g1", "g2"]),
        )
        assert all(isinstance(e, BatchFailedError) for e in bad)
        assert all(isinstance(r, Entry) for r in good)
    finally:
        await connector.aclose()


async def test_an_error_nobody_awaits_is_kept_for_the_promise_and_not_logged(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        bad = strategy.submit(connector.build_request("x", Entry, model="gpt-4o-mini@fail-batch"))
        forgotten = strategy.submit(
            connector.build_request("y", Entry, model="gpt-4o-mini@fail-batch")
        )
        await connector.execute_batch()
        assert bad.done() and forgotten.done()
        with pytest.raises(BatchFailedError):
            bad.result()
        with pytest.raises(BatchFailedError):
            await bad
    finally:
        await connector.aclose()
    del forgotten
    gc.collect()
    await asyncio.sleep(0)
    # Only this test's errors count: the collection may also finalize other
    # tests' leftovers (an SDK client closing on a loop that is gone).
    unread = [
        r.getMessage()
        for r in caplog.records
        if "never retrieved" in r.getMessage() and "BatchFailedError" in r.getMessage()
    ]
    assert unread == []


async def test_retry_via_immediate(fresh_emulator: Any, make_settings: Any) -> None:
    settings = make_settings(fresh_emulator, batch={"retry_via": "immediate"})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, ["i1", "i2"], model="gpt-4o-mini@item-error-once")
        assert all(isinstance(r, Entry) for r in results)
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["immediate"]["requests"] == 2 and billing["batch"]["requests"] == 0


async def _estimates(settings: Any, prompts: list[str]) -> tuple[float, float]:
    """What the strategy estimates ``prompts`` cost: as one batch, and sent immediately."""
    from plugins.batch.strategy import BatchStrategy

    probe = open_connector(settings)
    try:
        strategy = probe.batch_strategy()
        requests = [probe.build_request(p, Entry, task="t") for p in prompts]
        estimate = BatchStrategy._estimate_cost
        batch = sum(estimate(strategy, r) for r in requests)  # type: ignore[arg-type]
        now = sum(estimate(strategy, r, "immediate") for r in requests)  # type: ignore[arg-type]
    finally:
        await probe.aclose()
    return batch, now


async def test_a_re_route_to_immediate_calls_stays_within_the_budget(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from providers.errors import BudgetExceededError

    prompts = ["b1", "b2", "b3", "b4"]
    batch, now = await _estimates(make_settings(fresh_emulator), prompts)
    # The batch fits, and so do two of its requests sent immediately; not four.
    budget = batch + 2.5 * now / len(prompts)
    settings = make_settings(fresh_emulator, batch={"retry_via": "immediate", "budget_usd": budget})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, prompts, model="gpt-4o-mini@item-error-once")
    finally:
        await connector.aclose()
    assert sum(isinstance(r, Entry) for r in results) == 2, results
    assert sum(isinstance(r, BudgetExceededError) for r in results) == 2, results
    assert fresh_emulator.billing()["immediate"]["requests"] == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batch_refused_whole_gives_its_estimate_back_to_the_budget(
    fresh_emulator: Any, make_settings: Any, provider: str
) -> None:
    prompts = ["w1", "w2"]
    # OpenAI fails the batch when it checks the file; Anthropic refuses to create it.
    model = {"connector": {"model": "claude-haiku-4-5"}} if provider == "anthropic" else {}
    _, now = await _estimates(make_settings(fresh_emulator, provider=provider, **model), prompts)
    # Enough for the two requests sent immediately, not for those and the batch.
    # Every batch is refused whole, even one of a single request (too many bytes).
    fresh_emulator.configure(**{f"{provider}_max_bytes": 64})
    settings = make_settings(
        fresh_emulator,
        provider=provider,
        batch={"retry_via": "immediate", "budget_usd": now * 1.01, "max_requests": 2},
        **model,
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, prompts)
    finally:
        await connector.aclose()
    assert all(isinstance(r, Entry) for r in results), results
    assert fresh_emulator.billing()["immediate"]["requests"] == 2


async def test_a_budget_refusal_the_store_cannot_record_still_answers_the_caller(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.batch.strategy import BatchStrategy
    from providers.errors import BudgetExceededError

    prompts = ["u1", "u2", "u3", "u4"]
    original = BatchStrategy._estimate_cost

    def unwritable_at_the_re_route(self: Any, request: Any, mode: str = "batch") -> float:
        if mode == "immediate":
            self.store._conn.execute("PRAGMA query_only = 1")  # the store turns read-only
        return original(self, request, mode)  # type: ignore[arg-type]

    batch, _ = await _estimates(make_settings(fresh_emulator), prompts)
    monkeypatch.setattr(BatchStrategy, "_estimate_cost", unwritable_at_the_re_route)
    # The batch fits the budget; its items fail, and no immediate call would fit.
    settings = make_settings(
        fresh_emulator, batch={"retry_via": "immediate", "budget_usd": batch * 1.01}
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        refused = await asyncio.wait_for(
            gather(connector, prompts, model="gpt-4o-mini@item-error-once"), 10
        )
        assert all(isinstance(r, BudgetExceededError) for r in refused), refused
    finally:
        connector.store._conn.execute("PRAGMA query_only = 0")
        await connector.aclose()


async def test_immediate_override_in_batch_mode(fresh_emulator: Any, make_settings: Any) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        urgent = await connector.structured("urgent", Entry, mode="immediate")
        assert isinstance(urgent, Entry)
        assert connector.store.shards() == []
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["immediate"]["requests"] == 1


async def test_execute_batch_dispatches_without_waiting_for_linger(
    fresh_emulator: Any, make_settings: Any
) -> None:
    settings = make_settings(fresh_emulator, batch={"linger": 3600})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        tasks = [asyncio.ensure_future(connector.structured(f"e{i}", Entry)) for i in range(5)]
        await asyncio.wait_for(connector.execute_batch(), timeout=20)
        assert all(isinstance(t.result(), Entry) for t in tasks)
    finally:
        await connector.aclose()


async def test_a_shard_leaves_a_linger_after_the_last_burst_of_requests_not_the_first(
    fresh_emulator: Any, make_settings: Any
) -> None:
    # Requests queued in bursts (one event-loop turn each): the linger counts
    # from the last burst, so a second burst before it ends holds the shard.
    linger = 2.0
    settings = make_settings(fresh_emulator, batch={"linger": linger})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        sealed = asyncio.Event()
        sealed_at: list[float] = []
        on_sealed = strategy.accumulator.on_sealed

        def seal(shard: Any) -> None:
            sealed_at.append(time.monotonic())
            sealed.set()
            on_sealed(shard)

        strategy.accumulator.on_sealed = seal
        build = connector.build_request
        first = [strategy.submit(build(f"burst one {i}", Entry)) for i in range(20)]
        await asyncio.sleep(linger / 2)
        second = [strategy.submit(build(f"burst two {i}", Entry)) for i in range(20)]
        second_at = time.monotonic()
        await asyncio.wait_for(sealed.wait(), timeout=30)
        # Not at the first burst's linger: at the second's.
        assert sealed_at[0] - second_at >= linger * 0.99
        await asyncio.wait_for(connector.execute_batch(), timeout=30)
        assert all(isinstance(p.result().output, Entry) for p in first + second)
        assert [s.requests for s in connector.store.shards()] == [40]
    finally:
        await connector.aclose()


async def test_a_full_shard_leaves_at_once_whatever_the_linger(
    fresh_emulator: Any, make_settings: Any
) -> None:
    # 100 awaits, shards of 50, an hour's linger: both shards are full, so
    # both leave as their last request is journaled (the second one included,
    # with no 101st request to push it out).
    settings = make_settings(fresh_emulator, batch={"linger": 3600, "max_requests": 50})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        prompts = [f"full {i}" for i in range(100)]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(connector.structured(p, Entry) for p in prompts)), timeout=30
            )
        except TimeoutError:
            pytest.fail("a full shard waited for the linger")
        assert all(isinstance(r, Entry) for r in results)
        assert sorted(s.requests for s in connector.store.shards()) == [50, 50]
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 100


async def test_a_multi_stage_pipeline_takes_one_round_per_stage(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))

    async def pipeline(word: str) -> Entry:
        first = await connector.structured(f"stage 1 {word}", Entry)
        return await connector.structured(f"stage 2 {word} {first.level}", Entry)

    try:
        connector.enable_batch_mode()
        results = await asyncio.gather(*(pipeline(f"w{i}") for i in range(25)))
        assert len(results) == 25
        assert [s.requests for s in connector.store.shards()] == [25, 25]
    finally:
        await connector.aclose()


async def test_budget_refuses_to_submit(fresh_emulator: Any, make_settings: Any) -> None:
    settings = make_settings(fresh_emulator, batch={"budget_usd": 0.0000001})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, ["b1", "b2"])
        assert all(isinstance(e, BudgetExceededError) for e in results)
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 0


async def test_a_budget_refuses_a_model_it_cannot_price_and_sends_the_priced_ones(
    fresh_emulator: Any, make_settings: Any
) -> None:
    # Priced at $0, an unpriced model's requests would pass any budget.
    settings = make_settings(fresh_emulator, batch={"budget_usd": 5.0})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        unpriced = await gather(connector, ["u1", "u2"], model="no-such-model-zz")
        priced = await gather(connector, ["p1", "p2"])
    finally:
        await connector.aclose()
    for error in unpriced:
        assert isinstance(error, InputError)
        assert "no price for no-such-model-zz: a budget (--budget, batch.budget_usd)" in str(error)
    assert all(isinstance(e, Entry) for e in priced)
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 2 and billing["immediate"]["requests"] == 0


async def test_resume_after_a_crash_reattaches_and_pays_once(
    make_settings: Any,
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=1.5)) as emu:
        settings = make_settings(emu)
        await crash_once(settings, [f"r{i}" for i in range(12)])

        second = open_connector(settings)
        try:
            second.enable_batch_mode()
            results = await gather(second, [f"r{i}" for i in range(12)])
            assert all(isinstance(r, Entry) for r in results)
            assert len(second.store.shards()) == 1  # re-attached, not resubmitted
        finally:
            await second.aclose()
        billing = emu.billing()
    assert billing["batch"]["requests"] == 12 and billing["duplicates"] == 0


async def test_an_immediate_rerun_waits_for_the_earlier_batch_instead_of_paying_again(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=1.5)) as emu:
        settings = make_settings(emu)
        await crash_once(settings, [f"p{i}" for i in range(8)])

        second = open_connector(settings)  # immediate mode, as configured
        try:
            results = await gather(second, [f"p{i}" for i in range(8)] + ["fresh"])
            assert all(isinstance(r, Entry) for r in results)
            assert [s.state for s in second.store.shards()] == ["collected"]
            assert second.store.count_requests("openai") == {"succeeded": 8}
        finally:
            await second.aclose()
        billing = emu.billing()
    # The eight were paid once, in the batch; only the new request went immediately.
    assert billing["batch"]["requests"] == 8 and billing["immediate"]["requests"] == 1
    assert billing["duplicates"] == 0
    assert caplog.text.count("submitted by an earlier run") == 1


async def test_resume_does_not_send_queued_requests_answered_meanwhile(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from plugins.batch.strategy import BatchStrategy

    settings = make_settings(fresh_emulator, batch={"linger": 3600})
    first = open_connector(settings)
    try:
        first.enable_batch_mode()
        strategy = first.batch_strategy()
        for i in range(4):
            strategy.submit(first.build_request(f"q{i}", Entry))
        assert isinstance(strategy, BatchStrategy)
        strategy._flush_journal()  # queued in the journal, never sent
    finally:
        await first.aclose()
    second = open_connector(settings)  # immediate: answers two of them
    try:
        done = await gather(second, ["q0", "q1"])
        assert all(isinstance(r, Entry) for r in done)
        second.enable_batch_mode()
        assert await second.batch_strategy().resume() == 2  # q2 and q3 only
        assert second.store.count_requests("openai") == {"succeeded": 4}
    finally:
        await second.aclose()
    billing = fresh_emulator.billing()
    assert billing["immediate"]["requests"] == 2 and billing["batch"]["requests"] == 2
    assert billing["duplicates"] == 0


class Gloss(BaseModel):
    """A second response model, for a second schema."""

    gloss: str


async def test_the_journal_keeps_each_response_schema_once(
    fresh_emulator: Any, make_settings: Any
) -> None:
    settings = make_settings(fresh_emulator, batch={"linger": 3600})
    first = open_connector(settings)
    try:
        first.enable_batch_mode()
        strategy = first.batch_strategy()
        for i in range(6):
            strategy.submit(first.build_request(f"j{i}", Entry))
        for i in range(3):
            strategy.submit(first.build_request(f"g{i}", Gloss))
        assert isinstance(strategy, BatchStrategy)
        strategy._flush_journal()  # queued in the journal, never sent
        rows = list(first.store.requests_in_state("openai", "queued"))
        assert len(rows) == 9 and not any(b"properties" in row.body for row in rows)
        refs = {orjson.loads(row.body)["s"] for row in rows}
        assert len(refs) == 2 and set(first.store.get_schemas(refs)) == refs
    finally:
        await first.aclose()
    second = open_connector(settings)  # another run rebuilds them with their schemas
    try:
        second.enable_batch_mode()
        assert await second.batch_strategy().resume() == 9
        assert second.store.count_requests("openai") == {"succeeded": 9}
        again = await second.generate(second.build_request("g1", Gloss))
        assert again.cached and isinstance(again.output, Gloss)
    finally:
        await second.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 9 and billing["duplicates"] == 0


async def test_journal_rows_never_name_a_schema_a_rolled_back_group_held(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from plugins.batch.journal import SchemaBook

    connector = open_connector(make_settings(fresh_emulator, batch={"linger": 3600}))
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        assert isinstance(strategy, BatchStrategy)
        # A caller's own transaction journals a group, then rolls it back.
        with pytest.raises(RuntimeError), connector.store.in_transaction():
            strategy.submit(connector.build_request("lost", Gloss))
            strategy._flush_journal()
            raise RuntimeError("the caller's transaction failed")
        assert list(connector.store.requests_in_state("openai", "queued")) == []
        strategy.submit(connector.build_request("kept", Gloss))
        strategy._flush_journal()
        (row,) = connector.store.requests_in_state("openai", "queued")
        rebuilt = SchemaBook(connector.store).decode(row.body)
        assert rebuilt.key == row.key and rebuilt.response_model is Gloss
    finally:
        await connector.aclose()


LONG = " and then some more words to make the prompt long" * 100


async def test_a_full_store_fails_the_unsent_batch_in_one_error_and_the_rerun_pays_once(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "lexibatch.batch")
    settings = make_settings(fresh_emulator, batch={"linger": 3600})
    prompts = [f"full {i}{LONG}" for i in range(5)]
    first = open_connector(settings)
    try:
        first.enable_batch_mode()
        strategy = first.batch_strategy()
        promises = [strategy.submit(first.build_request(p, Entry)) for p in prompts]
        fill_up(first.store)
        await asyncio.wait_for(first.execute_batch(), 30)  # ends: nothing left hanging
        for promise in promises:
            with pytest.raises(StoreWriteError, match="disk is full"):
                promise.result()
        assert first.store.shards() == [] and first.store.count_requests("openai") == {}
        assert "not sent: the store" in caplog.text and "Traceback" not in caplog.text
        free_up(first.store)
    finally:
        await first.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 0  # nothing was sent
    second = open_connector(make_settings(fresh_emulator))  # the same store, a short linger
    try:
        second.enable_batch_mode()
        results = await gather(second, prompts)
        assert all(isinstance(r, Entry) for r in results)
    finally:
        await second.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 5 and billing["duplicates"] == 0


async def test_journal_rows_a_full_store_refused_are_written_when_it_has_room_again(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugins.batch.strategy as strategy_module

    monkeypatch.setattr(strategy_module, "JOURNAL_CHUNK", 2)
    connector = open_connector(make_settings(fresh_emulator, batch={"linger": 3600}))
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        fill_up(connector.store)
        promises = [
            strategy.submit(connector.build_request(f"room {i}{LONG}", Entry)) for i in range(3)
        ]
        assert connector.store.count_requests("openai") == {}  # the group of two was refused
        free_up(connector.store)
        await connector.execute_batch()
        assert all(isinstance(p.result().output, Entry) for p in promises)
        assert connector.store.count_requests("openai") == {"succeeded": 3}
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 3


async def test_a_store_that_fills_up_while_results_are_stored_loses_none_of_them(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Settlement.finish_items

    def fill_up_then_finish(self: Settlement, *args: Any) -> None:
        fill_up(self.store)
        original(self, *args)

    settings = make_settings(fresh_emulator)
    prompts = [f"paid {i}" for i in range(60)]
    first = open_connector(settings)
    first.enable_batch_mode()
    monkeypatch.setattr(Settlement, "finish_items", fill_up_then_finish)
    try:
        results = await gather(first, prompts)
        assert all(isinstance(r, StoreWriteError) for r in results), results[:3]
        # The batch ran and was paid for: its shard stays resumable, not failed.
        assert [s.state for s in first.store.shards()] == ["ended"]
        assert first.store.count_results("openai") == 0
        free_up(first.store)
    finally:
        await first.aclose()
    monkeypatch.setattr(Settlement, "finish_items", original)
    second = open_connector(settings)
    try:
        second.enable_batch_mode()
        await second.batch_strategy().resume()
        assert [s.state for s in second.store.shards()] == ["collected"]
        assert second.store.count_results("openai") == 60
        (row,) = second.store.cost_report()
        assert row.requests == 60
        again = await gather(second, prompts)
        assert all(isinstance(r, Entry) for r in again)
    finally:
        await second.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 60 and billing["duplicates"] == 0


async def test_a_network_failure_while_reading_results_leaves_the_paid_batch_to_the_next_run(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.openai import OpenAIBatchEndpoint

    original = OpenAIBatchEndpoint.results

    async def dropped(self: Any, batch: Any) -> Any:
        raise ProviderConnectionError("connection reset while reading the output file")
        yield  # pragma: no cover

    settings = make_settings(fresh_emulator)
    prompts = [f"net {i}" for i in range(8)]
    first = open_connector(settings)
    first.enable_batch_mode()
    monkeypatch.setattr(OpenAIBatchEndpoint, "results", dropped)
    try:
        results = await gather(first, prompts)
        assert all(isinstance(r, ProviderConnectionError) for r in results), results[:3]
        # The batch ran and is paid for: journaled as ended, not failed, nothing re-sent.
        assert [s.state for s in first.store.shards()] == ["ended"]
        assert first.store.count_requests("openai") == {"submitted": 8}
    finally:
        await first.aclose()
    monkeypatch.setattr(OpenAIBatchEndpoint, "results", original)
    second = open_connector(settings)
    try:
        second.enable_batch_mode()
        again = await gather(second, prompts)
        assert all(isinstance(r, Entry) for r in again)
        assert [s.state for s in second.store.shards()] == ["collected"]
    finally:
        await second.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0


async def test_requests_queued_in_the_earlier_journal_format_are_resumed(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from plugins.store import JournalRequest

    connector = open_connector(make_settings(fresh_emulator))
    try:
        requests = [connector.build_request(f"o{i}", Entry, task="t") for i in range(3)]
        # Journaled by an earlier lexibatch: the schema inline in every body.
        tail = b',"t":"t","m":"tests.plugins.batch_helpers:Entry"}'
        rows = [
            JournalRequest(r.key, r.model, "t", b'{"c":' + r.canonical_json + tail)
            for r in requests
        ]
        connector.store.queue_requests("openai", rows)
        connector.enable_batch_mode()
        assert await connector.batch_strategy().resume() == 3
        for request in requests:
            response = await connector.generate(request)
            assert response.cached and isinstance(response.output, Entry)
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 3


async def test_results_read_again_after_a_crash_mid_collection_are_billed_once(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugins.batch.executor as executor

    monkeypatch.setattr(executor, "RESULT_CHUNK", 4)
    original = Settlement.finish_items
    calls = 0

    def crash_after_first_chunk(self: Settlement, *args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("process killed while storing results")
        original(self, *args)

    settings = make_settings(fresh_emulator)
    first = open_connector(settings)
    first.enable_batch_mode()
    monkeypatch.setattr(Settlement, "finish_items", crash_after_first_chunk)
    try:
        results = await gather(first, [f"c{i}" for i in range(10)])
        # The first chunk was stored and answered; the shard stays ended, its
        # requests submitted, as a killed process leaves them.
        assert sum(isinstance(r, Entry) for r in results) == 4
        assert [s.state for s in first.store.shards()] == ["ended"]
        assert first.store.count_requests("openai") == {"submitted": 10}
        assert first.store.count_results("openai") == 4
    finally:
        await first.aclose()
    monkeypatch.setattr(Settlement, "finish_items", original)

    second = open_connector(settings)
    try:
        second.enable_batch_mode()
        await second.batch_strategy().resume()
        assert [s.state for s in second.store.shards()] == ["collected"]
        assert second.store.count_requests("openai") == {"succeeded": 10}
        assert second.store.count_results("openai") == 10
        (row,) = second.store.cost_report()
        assert row.requests == 10  # the 4 stored before the crash are not billed again
        again = await gather(second, [f"c{i}" for i in range(10)])
        assert all(isinstance(r, Entry) for r in again)
    finally:
        await second.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 10 and billing["duplicates"] == 0


async def test_errors_never_escape_as_vendor_exceptions(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator, batch={"max_retry_rounds": 0}))
    try:
        connector.enable_batch_mode()
        results = await gather(connector, ["e1"], model="gpt-4o-mini@item-error")
        (error,) = results
        # The emulator's item errors are 500 / 429 / request_timeout lines.
        assert isinstance(error, (ServerError, RateLimitError, ProviderTimeoutError))
        assert type(error).__module__ == "providers.errors" and error.retryable
    finally:
        await connector.aclose()


async def test_responses_api_lines_through_the_batch_strategy(
    fresh_emulator: Any, make_settings: Any
) -> None:
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"base_url": fresh_emulator.base_url + "/v1", "api": "responses"}},
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, ["resp1", "resp2", "resp3"])
        assert all(isinstance(r, Entry) for r in results)
        (shard,) = connector.store.shards()
        assert shard.raw is not None and shard.raw["endpoint"] == "/v1/responses"
    finally:
        await connector.aclose()


async def test_progress_observer_counts_through_the_hooks(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from plugins.dashboard import RunState
    from plugins.progress import ProgressObserver

    connector = open_connector(make_settings(fresh_emulator))
    state = RunState("test", total=6, batch_mode=True)
    observer = ProgressObserver(state, quiet=True)
    connector.manager.pm.register(state, name="test-progress")
    try:
        connector.enable_batch_mode()
        await gather(connector, [f"p{i}" for i in range(5)])
        await connector.structured("p0", Entry, task="t")  # a cache hit
        # Observers hear of finished requests once per loop turn (plugins.requestevents).
        await asyncio.sleep(0)
        assert (observer.succeeded, observer.failed, observer.cached) == (6, 0, 1)
        assert state.stages["t"].started == 6
        assert [b.state for b in state.batches.values()] == ["completed"]
    finally:
        connector.manager.pm.unregister(state)
        await connector.aclose()


async def test_output_file_missing_for_a_while_after_completed(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(output_file_missing_polls=3)
    connector = open_connector(make_settings(fresh_emulator))
    seen: list[tuple[str, bool]] = []

    class Watch:
        from plugins import hookimpl

        @hookimpl
        def batch_status_changed(self, batch: Any) -> None:
            seen.append((batch.state.value, batch.results_ready))

    watch = Watch()
    connector.manager.pm.register(watch, name="watch-output-file")
    try:
        connector.enable_batch_mode()
        results = await gather(connector, ["o1", "o2"])
        assert all(isinstance(r, Entry) for r in results)
        # Completed without its output file first; results read only once it appeared.
        assert ("completed", False) in seen and seen[-1] == ("completed", True)
    finally:
        connector.manager.pm.unregister(watch)
        await connector.aclose()


def test_progress_is_silent_when_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    from plugins.dashboard import RunState
    from plugins.progress import ProgressObserver

    state = RunState("test", total=3)
    with ProgressObserver(state, quiet=True, interval=0.01):
        state.set_units("words", 3, 3)
        time.sleep(0.05)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("opened", ["before the stop", "after the stop"])
async def test_an_interrupted_run_creates_no_new_batch_and_the_next_run_does(
    fresh_emulator: Any, make_settings: Any, opened: str
) -> None:
    # Ctrl-C while immediate calls land (a batch run re-routing to immediate):
    # a shard sealed meanwhile is not made a batch, so not paid for, until the next run.
    settings = make_settings(fresh_emulator, batch={"linger": 0.2})
    first = open_connector(settings)
    try:
        first.enable_batch_mode()
        if opened == "after the stop":
            # As a server between two jobs: its strategy let go, the next job opens one.
            assert await first.release_batches()
        first.stop_sending()
        waiting = [asyncio.ensure_future(first.structured(f"held {i}", Entry)) for i in range(4)]
        await asyncio.sleep(1.5)  # past the linger: the shard is sealed, uploaded
        assert not any(task.done() for task in waiting)
        states = [s.state for s in first.store.shards()]
        assert states and all(state in ("written", "uploaded") for state in states), states
    finally:
        await first.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 0
    second = open_connector(settings)
    try:
        second.enable_batch_mode()
        results = await gather(second, [f"held {i}" for i in range(4)])
    finally:
        await second.aclose()
    assert all(isinstance(r, Entry) for r in results)
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 4 and billing["duplicates"] == 0
