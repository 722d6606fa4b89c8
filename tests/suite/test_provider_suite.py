"""One connector-level suite for every built-in provider, in both modes, against the emulator.

Every test takes ``target`` (openai, anthropic, litellm, gemini, mistral, sandbox, and
``acme``, a provider from outside) and most take ``mode`` (immediate, batch): the same
calling code must give the same typed results, cache, outcomes, resume and costs
whichever provider serves it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from providers.errors import (
    BatchFailedError,
    InvalidRequestError,
    LexibatchError,
    ProviderConnectionError,
    SchemaValidationError,
    ServerError,
)


class Entry(BaseModel):
    """A small response model."""

    word: str
    level: str


async def _gather(connector: Any, prompts: list[str], model: str | None = None) -> list[Any]:
    return await asyncio.gather(
        *(connector.structured(p, Entry, task="suite", model=model) for p in prompts),
        return_exceptions=True,
    )


def _start(connector: Any, mode: str) -> None:
    if mode == "batch":
        connector.enable_batch_mode()


async def test_structured_calls_return_typed_results(target: Any, mode: str) -> None:
    connector = target.open()
    try:
        _start(connector, mode)
        results = await _gather(connector, [f"word {i}" for i in range(5)])
        assert all(isinstance(r, Entry) for r in results), results
        assert all(r.word and r.level for r in results)
        response = await connector.generate(connector.build_request("word 2", Entry, task="suite"))
        assert response.cached and response.mode == mode and response.provider == target.provider
        assert (response.batch_id is not None) == (mode == "batch")
    finally:
        await connector.aclose()
    billing = target.billing()
    other = "immediate" if mode == "batch" else "batch"
    assert billing[mode]["requests"] == 5 and billing[other]["requests"] == 0
    assert billing["duplicates"] == 0


async def test_a_repeated_request_is_a_cache_hit_at_no_cost(target: Any, mode: str) -> None:
    connector = target.open()
    try:
        _start(connector, mode)
        request = connector.build_request("swift", Entry, task="suite")
        first = await connector.generate(request)
        again = await connector.generate(request)
        assert not first.cached and first.cost_usd and first.cost_usd > 0
        assert again.cached and again.cost_usd == 0 and again.output == first.output
    finally:
        await connector.aclose()
    # A new process (a new connector on the same store) hits the cache too.
    reopened = target.open()
    try:
        _start(reopened, mode)
        assert await reopened.structured("swift", Entry, task="suite") == first.output
    finally:
        await reopened.aclose()
    billing = target.billing()
    assert billing[mode]["requests"] == 1 and billing["duplicates"] == 0


@pytest.mark.parametrize(
    "marker", ["item-error-once", "expire-once", "cancel-once", "schema-invalid-once"]
)
async def test_retryable_batch_outcomes_are_sent_again(target: Any, marker: str) -> None:
    # Each retry is a new set of requests, which ``-once`` may strike again
    # (half of a cancelled set is done): enough rounds for every provider's keys.
    connector = target.open(batch={"max_retry_rounds": 5})
    try:
        connector.enable_batch_mode()
        prompts = [f"o{i}" for i in range(6)]
        results = await _gather(connector, prompts, model=target.marked(marker))
        assert all(isinstance(r, Entry) for r in results), results
        first, *again = connector.store.shards()
        paid = sum(row.requests for row in connector.store.cost_report())
    finally:
        await connector.aclose()
    fate = {"expire-once": "expired", "cancel-once": "cancelled"}.get(marker, "completed")
    assert first.batch_status == fate
    failed = (first.counts or {}).get("failed", 0)
    if marker.startswith("schema-invalid"):
        # The batch succeeded, but no answer fitted the schema: all are asked again.
        assert [s.requests for s in again] == [6]
    elif failed:
        # What the batch did finish is kept; only the rest is sent again. (The
        # emulator's ``-once`` is per set of requests, so a retry may meet the
        # same fate and go round again.)
        assert again[0].requests == failed
        assert len(again) <= connector.settings.batch.max_retry_rounds
    else:
        assert marker != "item-error-once" and not again
    billing = target.billing()
    if marker.startswith("schema-invalid"):
        # The invalid answer was delivered and paid for; the valid one is a second call.
        assert billing["batch"]["requests"] == paid == 12
    else:
        assert billing["batch"]["requests"] == paid == 6 and billing["duplicates"] == 0


@pytest.mark.parametrize("marker", ["server-error-once", "rate-limit-once"])
async def test_transient_immediate_failures_are_retried(target: Any, marker: str) -> None:
    connector = target.open()
    try:
        results = await _gather(connector, ["p", "q"], model=target.marked(marker))
        assert all(isinstance(r, Entry) for r in results), results
    finally:
        await connector.aclose()
    # Error answers are not billed: each request is paid once.
    assert target.billing()["immediate"]["requests"] == 2


@pytest.mark.parametrize(
    ("marker", "error", "paid"),
    [("server-error", ServerError, 0), ("schema-invalid", SchemaValidationError, 2)],
)
async def test_persistent_immediate_failures_end_in_typed_errors(
    target: Any, marker: str, error: type[Exception], paid: int
) -> None:
    connector = target.open(retry={"max_attempts": 2}, immediate={"reask": 1})
    try:
        bad, good = await asyncio.gather(
            _gather(connector, ["p"], model=target.marked(marker)), _gather(connector, ["r"])
        )
        assert isinstance(bad[0], error), bad
        assert isinstance(good[0], Entry)
        # A schema-invalid answer and its re-ask were both delivered, so both are paid.
        assert sum(r.requests for r in connector.store.cost_report()) == paid + 1
    finally:
        await connector.aclose()
    assert target.billing()["immediate"]["requests"] == paid + 1


@pytest.mark.parametrize(
    ("marker", "error", "billed"),
    # An error line is not billed; a schema-invalid answer is, in every round.
    [("item-error", LexibatchError, 1), ("schema-invalid", SchemaValidationError, 2 * 2 + 1)],
)
async def test_persistent_batch_failures_end_in_typed_errors(
    target: Any, marker: str, error: type[Exception], billed: int
) -> None:
    connector = target.open(batch={"max_retry_rounds": 1})
    try:
        connector.enable_batch_mode()
        bad, good = await asyncio.gather(
            _gather(connector, ["p", "q"], model=target.marked(marker)),
            _gather(connector, ["r"]),
        )
        assert all(isinstance(e, error) for e in bad), bad
        assert isinstance(good[0], Entry)
        states = connector.store.count_requests(target.provider)
        assert states == {"failed": 2, "succeeded": 1}
        # The first round and exactly one retry round (max_retry_rounds), each one paid.
        assert sorted({s.round for s in connector.store.shards()}) == [0, 1]
    finally:
        await connector.aclose()
    assert target.billing()["batch"]["requests"] == billed


async def test_a_failed_batch_fails_its_requests_only(target: Any) -> None:
    # Two requests per batch, so that the failing batch is one of its own even
    # where a batch may mix models (Anthropic).
    connector = target.open(batch={"max_requests": 2})
    try:
        connector.enable_batch_mode()
        bad, good = await asyncio.gather(
            _gather(connector, ["f1", "f2"], model=target.marked("fail-batch")),
            _gather(connector, ["g1", "g2"]),
        )
        assert len(connector.store.shards()) == 2
        # Anthropic has no failed batch: it ends every item ``errored`` instead.
        expected = InvalidRequestError if target.provider == "anthropic" else BatchFailedError
        assert all(isinstance(e, expected) for e in bad), bad
        assert all(isinstance(r, Entry) for r in good), good
        assert connector.store.count_requests(target.provider) == {"failed": 2, "succeeded": 2}
    finally:
        await connector.aclose()
    assert target.billing()["batch"]["requests"] == 2


async def _crash_mid_poll(target: Any, prompts: list[str]) -> None:
    first = target.open()
    first.enable_batch_mode()
    target.emulator.configure(batch_seconds=1.0)
    tasks = [asyncio.ensure_future(first.structured(p, Entry, task="suite")) for p in prompts]
    for _ in range(250):
        await asyncio.sleep(0.02)
        if any(s.state == "created" for s in first.store.shards()):
            break
    assert [s.state for s in first.store.shards()] == ["created"]
    await first.aclose()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _crash_midway(target: Any, prompts: list[str]) -> None:
    first = target.open()
    done = await _gather(first, prompts[: len(prompts) // 2])
    assert all(isinstance(r, Entry) for r in done)
    await first.aclose()


async def test_a_crashed_run_resumes_with_the_same_results_paid_once(
    target: Any, mode: str
) -> None:
    prompts = [f"r{i}" for i in range(8)]
    if mode == "batch":
        await _crash_mid_poll(target, prompts)
    else:
        await _crash_midway(target, prompts)
    second = target.open()
    try:
        _start(second, mode)
        results = await _gather(second, prompts)
        assert all(isinstance(r, Entry) for r in results), results
        if mode == "batch":
            assert len(second.store.shards()) == 1  # re-attached, not submitted again
    finally:
        await second.aclose()
    billing = target.billing()
    assert billing[mode]["requests"] == len(prompts) and billing["duplicates"] == 0
    # The same answers as a clean run would give: the emulator is deterministic.
    third = target.open()
    try:
        replay = [
            await third.generate(third.build_request(p, Entry, task="suite")) for p in prompts
        ]
        assert all(r.cached and r.mode == mode for r in replay)
        assert [r.output for r in replay] == results
    finally:
        await third.aclose()


async def test_cost_is_recorded_in_the_ledger(target: Any, mode: str) -> None:
    connector = target.open()
    try:
        _start(connector, mode)
        results = await _gather(connector, [f"c{i}" for i in range(6)])
        assert all(isinstance(r, Entry) for r in results)
        (row,) = connector.store.cost_report()
    finally:
        await connector.aclose()
    assert row.mode == mode and row.requests == 6 and row.task == "suite"
    assert row.cost_usd > 0
    price = connector.prices.price(target.model, target.provider)
    assert price is not None
    if mode == "batch":
        # Half the immediate price: the table's batch price, or (Mistral's
        # models, which the map gives none) the share the provider declares.
        assert price.batch_discount_known
        assert row.cost_usd == pytest.approx(row.immediate_cost_usd / 2, rel=0.01)
    else:
        assert row.cost_usd == pytest.approx(row.immediate_cost_usd)


async def test_a_batch_refused_as_too_large_is_split_and_sent_again(target: Any) -> None:
    # The provider takes at most 3 requests a batch: OpenAI fails a larger one
    # when it checks the file, Anthropic refuses to create it. (Gemini and
    # Mistral batches run on the emulator's OpenAI engine, under its limits.)
    connector = target.open()
    wire = "anthropic" if target.provider == "anthropic" else "openai"
    target.emulator.configure(**{f"{wire}_max_requests": 3})
    try:
        connector.enable_batch_mode()
        results = await _gather(connector, [f"split {i}" for i in range(7)])
        assert all(isinstance(r, Entry) for r in results), results
        assert connector.store.count_requests(target.provider) == {"succeeded": 7}
    finally:
        await connector.aclose()
    billing = target.billing()
    assert billing["batch"]["requests"] == 7 and billing["immediate"]["requests"] == 0
    assert billing["duplicates"] == 0


async def test_a_batch_refused_whole_is_rerouted_to_immediate_calls_when_configured(
    target: Any,
) -> None:
    # The provider refuses every batch itself, even of one request (too many
    # bytes), when it is created.
    connector = target.open(batch={"max_requests": 2, "retry_via": "immediate"})
    wire = "anthropic" if target.provider == "anthropic" else "openai"
    target.emulator.configure(**{f"{wire}_max_bytes": 64})
    try:
        connector.enable_batch_mode()
        results = await _gather(connector, ["r1", "r2"])
        assert all(isinstance(r, Entry) for r in results), results
        assert connector.store.count_requests(target.provider) == {"succeeded": 2}
    finally:
        await connector.aclose()
    billing = target.billing()
    assert billing["immediate"]["requests"] == 2 and billing["batch"]["requests"] == 0


async def test_a_results_download_that_breaks_off_is_read_again_and_each_line_settled_once(
    target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The network drops while the results stream, after a first chunk of lines
    # was settled: the download is tried again per the retry policy, the lines
    # settled before the break are not settled twice, and the run ends answered.
    from plugins.batch import executor

    monkeypatch.setattr(executor, "RESULT_CHUNK", 1)
    prompts = [f"recut{i}" for i in range(7)]
    connector = target.open()
    target.emulator.configure(download_cuts=1)
    try:
        connector.enable_batch_mode()
        results = await _gather(connector, prompts)
        assert all(isinstance(r, Entry) for r in results), results
        assert target.emulator.configure().download_cuts == 0  # the cut did happen
        # The last answer resolves with its chunk, before the shard is marked collected.
        await connector.batch_strategy().flush()
        assert [s.state for s in connector.store.shards()] == ["collected"]
        (row,) = connector.store.cost_report()
    finally:
        await connector.aclose()
    # One ledger row a line: none was settled (and counted as paid) twice.
    assert row.requests == len(prompts)
    billing = target.billing()
    assert billing["batch"]["requests"] == len(prompts) and billing["duplicates"] == 0


async def test_a_results_download_that_keeps_breaking_stays_journaled_and_is_collected_once(
    target: Any,
) -> None:
    # The network drops on every try while the results stream: the error is the
    # project's own (retryable, typed), the shard stays journaled, and the next
    # run collects the same batch without paying for it again.
    prompts = [f"cut{i}" for i in range(6)]
    first = target.open(retry={"max_attempts": 2})
    target.emulator.configure(download_cuts=2)
    try:
        first.enable_batch_mode()
        broken = await _gather(first, prompts)
        assert all(type(e) is ProviderConnectionError for e in broken), broken
        assert all("broke off" in str(e) and e.retryable for e in broken), broken
        assert [s.state for s in first.store.shards()] == ["ended"]
    finally:
        await first.aclose()
    assert target.emulator.configure().download_cuts == 0  # the cut did happen
    second = target.open()
    try:
        second.enable_batch_mode()
        results = await _gather(second, prompts)
        assert all(isinstance(r, Entry) for r in results), results
        assert [s.state for s in second.store.shards()] == ["collected"]
    finally:
        await second.aclose()
    billing = target.billing()
    assert billing["batch"]["requests"] == len(prompts) and billing["duplicates"] == 0
