"""Faults in a batch's life: nothing paid twice, no paid result lost, nobody left waiting."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from plugins.factory import open_connector
from providers.errors import ProviderConnectionError, ProviderError, StoreBusyError
from tests.plugins.batch_helpers import (
    Entry,
    break_results_once,
    crash_after_create,
    crash_once,
    gather,
)

# ---------------------------------------------------------------------------
# A create whose answer is lost (a reset, a timeout) may have made the batch:
# before trying again the provider is asked for it (find), so it is paid once.


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_create_whose_answer_was_lost_is_found_not_made_again(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    from providers.anthropic import AnthropicBatchEndpoint
    from providers.emulator import Emulator, EmulatorConfig
    from providers.openai import OpenAIBatchEndpoint

    endpoint = OpenAIBatchEndpoint if provider == "openai" else AnthropicBatchEndpoint
    original = endpoint.create
    calls = 0

    async def create_then_lose_answer(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        info = await original(self, *args, **kwargs)
        if calls == 1:
            # The provider created the batch; the answer never arrived
            # (connection reset / read timeout after the server did the work).
            raise ProviderConnectionError("connection reset while reading the answer")
        return info

    monkeypatch.setattr(endpoint, "create", create_then_lose_answer)
    model = {"openai": {}, "anthropic": {"connector": {"model": "claude-3-5-haiku-latest"}}}
    with Emulator(EmulatorConfig(batch_seconds=0.2)) as emu:
        connector = open_connector(make_settings(emu, provider=provider, **model[provider]))
        try:
            connector.enable_batch_mode()
            results = await gather(connector, [f"lost {i}" for i in range(5)])
            assert all(isinstance(r, Entry) for r in results), results
        finally:
            await connector.aclose()
        await asyncio.sleep(1.0)  # an orphan batch would run to its end (as at the provider)
        billing = emu.billing()
    assert calls == 1  # found, not created again
    assert billing["batch"]["requests"] == 5 and billing["duplicates"] == 0


async def test_a_create_that_failed_before_reaching_the_provider_is_made_again_and_said(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    from providers.emulator import Emulator, EmulatorConfig
    from providers.openai import OpenAIBatchEndpoint

    original = OpenAIBatchEndpoint.create
    calls = 0

    async def create_never_sent_first(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ProviderConnectionError("connection reset before the request was sent")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(OpenAIBatchEndpoint, "create", create_never_sent_first)
    caplog.set_level("WARNING", logger="lexibatch.batch")
    with Emulator(EmulatorConfig(batch_seconds=0.1)) as emu:
        connector = open_connector(make_settings(emu))
        try:
            connector.enable_batch_mode()
            results = await gather(connector, [f"unsent {i}" for i in range(5)])
            assert all(isinstance(r, Entry) for r in results), results
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert calls == 2 and billing["batch"]["requests"] == 5 and billing["duplicates"] == 0
    # Made again only after the provider was asked, and said: a find that cannot find shows.
    assert (
        "its last create failed without an answer, and openai finds no batch made for it: "
        "it is created again" in caplog.text
    )


# A create whose answer was lost while another process sent a batch of the
# same size: Anthropic's batches carry no shard id, so neither can be told
# from the other until they end. The shard waits for that, and then finds its
# own by its results, instead of creating (and paying for) it again.


async def test_a_lost_create_beside_a_batch_of_the_same_size_waits_and_is_paid_once(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, caplog: Any
) -> None:
    from providers.anthropic import AnthropicBatchEndpoint
    from providers.emulator import Emulator, EmulatorConfig

    original = AnthropicBatchEndpoint.create
    calls = 0

    async def create_beside_another(self: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            # Another process's batch: the same size, other requests, sent at the same time.
            theirs = tmp_path / "theirs.jsonl"
            lines = [json.loads(line) for line in path.read_bytes().splitlines()]
            for i, line in enumerate(lines):
                line["custom_id"] = f"theirs-{i}"
                line["params"]["messages"][0]["content"] = f"someone else's request {i}"
            theirs.write_text("".join(json.dumps(line) + "\n" for line in lines))
            await original(self, theirs, *args, **kwargs)
        info = await original(self, path, *args, **kwargs)
        if calls == 1:
            raise ProviderConnectionError("connection reset while reading the answer")
        return info

    monkeypatch.setattr(AnthropicBatchEndpoint, "create", create_beside_another)
    caplog.set_level("WARNING", logger="lexibatch.batch")
    with Emulator(EmulatorConfig(batch_seconds=1.0)) as emu:
        settings = make_settings(
            emu, provider="anthropic", connector={"model": "claude-3-5-haiku-latest"}
        )
        connector = open_connector(settings)
        try:
            connector.enable_batch_mode()
            results = await gather(connector, [f"doubt {i}" for i in range(5)])
            assert all(isinstance(r, Entry) for r in results), results
        finally:
            await connector.aclose()
        await asyncio.sleep(1.5)  # an orphan batch would run to its end (as at the provider)
        billing = emu.billing()
    assert calls == 1  # found once both had ended, not created again
    assert billing["batch"]["requests"] == 10 and billing["duplicates"] == 0
    assert "2 unfinished batches of 5 requests" in caplog.text
    assert "waiting for them to end rather than create its batch again" in caplog.text


# The same, but the create never reached the provider, beside two batches of
# the same size another process sent: neither is taken, even once one has
# ended and the other is the only one left unfinished (it may be another's:
# only its results can tell); once both have ended, the shard is created.


async def test_a_create_that_never_arrived_beside_two_batches_of_its_size_takes_neither(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from providers.anthropic import AnthropicBatchEndpoint
    from providers.emulator import Emulator, EmulatorConfig

    original = AnthropicBatchEndpoint.create
    calls = 0
    theirs: list[str] = []

    async def create_never_sent(self: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            return await original(self, path, *args, **kwargs)
        for tag in ("a", "b"):
            other = tmp_path / f"theirs-{tag}.jsonl"
            lines = [json.loads(line) for line in path.read_bytes().splitlines()]
            for i, line in enumerate(lines):
                line["custom_id"] = f"theirs-{tag}-{i}"
                line["params"]["messages"][0]["content"] = f"someone else's {tag} {i}"
            other.write_text("".join(json.dumps(line) + "\n" for line in lines))
            theirs.append((await original(self, other, *args, **kwargs)).id)

        async def cancel_one_of_theirs() -> None:
            await asyncio.sleep(0.5)
            await self.cancel(theirs[0])  # the other process cancels one of its own

        asyncio.get_running_loop().create_task(cancel_one_of_theirs())
        raise ProviderConnectionError("connection refused before the request was sent")

    monkeypatch.setattr(AnthropicBatchEndpoint, "create", create_never_sent)
    with Emulator(EmulatorConfig(batch_seconds=3.0)) as emu:
        settings = make_settings(
            emu, provider="anthropic", connector={"model": "claude-3-5-haiku-latest"}
        )
        connector = open_connector(settings)
        try:
            connector.enable_batch_mode()
            prompts = [f"never arrived {i}" for i in range(5)]
            results = await asyncio.wait_for(gather(connector, prompts), 60)
            shards = connector.store.shards()
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in results), results
    assert calls == 2 and shards[0].batch_id not in theirs
    assert billing["duplicates"] == 0


# An ended batch whose results read empty though the provider counts answers
# (an output file not readable yet, or a plugin reading the wrong one): the
# answers were paid for, so the results are read again, never the requests
# sent again; when they stay empty, the batch stays journaled for the next run.


@pytest.mark.parametrize("empty_reads", [2, 100])
async def test_results_that_read_empty_while_the_provider_counts_answers_are_read_again(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, empty_reads: int
) -> None:
    from providers.emulator import Emulator, EmulatorConfig
    from providers.openai import OpenAIBatchEndpoint

    original = OpenAIBatchEndpoint.results
    reads = 0

    async def results(self: Any, batch: Any) -> Any:
        nonlocal reads
        reads += 1
        if reads <= empty_reads:
            return
        async for item in original(self, batch):
            yield item

    monkeypatch.setattr(OpenAIBatchEndpoint, "results", results)
    prompts = [f"unread {i}" for i in range(5)]
    with Emulator(EmulatorConfig(batch_seconds=0.1)) as emu:
        settings = make_settings(emu)
        connector = open_connector(settings)
        try:
            connector.enable_batch_mode()
            first = await gather(connector, prompts)
            shards = connector.store.shards()
        finally:
            await connector.aclose()
        if empty_reads == 2:
            # Read again within the retry policy's tries: answered, once.
            assert all(isinstance(r, Entry) for r in first), first
            assert [s.state for s in shards] == ["collected"]
        else:
            assert all(isinstance(r, ProviderError) for r in first), first
            assert "counts 5 answers, but its results gave no line" in str(first[0])
            assert [s.state for s in shards] == ["ended"]  # journaled, not failed
            monkeypatch.setattr(OpenAIBatchEndpoint, "results", original)
            second = open_connector(settings)
            try:
                second.enable_batch_mode()
                await second.batch_strategy().resume()
                again = await gather(second, prompts)
                assert all(isinstance(r, Entry) for r in again), again
                assert [s.state for s in second.store.shards()] == ["collected"]
            finally:
                await second.aclose()
        billing = emu.billing()
    assert billing["batch"]["requests"] == 5 and billing["duplicates"] == 0


# ---------------------------------------------------------------------------
# A collection stopped once its batch existed (the results download broke
# off) leaves the shard journaled; asking for its requests again in the same
# process collects that batch anew: no second batch, no waiting forever.


async def test_asking_again_after_a_stopped_collection_collects_the_same_batch(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_results_once(monkeypatch)
    prompts = [f"h2a {i}" for i in range(8)]
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        first = await gather(connector, prompts)
        assert all(isinstance(r, ProviderConnectionError) for r in first), first
        # The caller retries the failed requests (e.g. a retry decorator).
        again = await asyncio.wait_for(gather(connector, prompts), 20)
        assert all(isinstance(r, Entry) for r in again), again
        assert [(s.state, s.requests) for s in connector.store.shards()] == [("collected", 8)]
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0


async def test_a_batch_whose_poll_fails_with_a_provider_error_is_collected_not_paid_again(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither a connection error nor a rate limit: an answer to the poll that
    # cannot be used. The batch exists all the same (it may be paid), so the
    # shard stays journaled; it is not failed into a retry round.
    from providers.openai import OpenAIBatchEndpoint

    original = OpenAIBatchEndpoint.poll
    polls = 0

    async def poll_fails_once(self: Any, batch_id: str) -> Any:
        nonlocal polls
        polls += 1
        if polls == 1:
            raise ProviderError("an answer to the poll nobody can read", provider="openai")
        return await original(self, batch_id)

    monkeypatch.setattr(OpenAIBatchEndpoint, "poll", poll_fails_once)
    prompts = [f"poll error {i}" for i in range(4)]
    settings = make_settings(fresh_emulator, batch={"max_retry_rounds": 2})
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        first = await asyncio.wait_for(gather(connector, prompts), 20)
        assert all(isinstance(r, ProviderError) for r in first), first
        again = await asyncio.wait_for(gather(connector, prompts), 20)
        assert all(isinstance(r, Entry) for r in again), again
        assert [(s.state, s.requests) for s in connector.store.shards()] == [("collected", 4)]
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 4 and billing["duplicates"] == 0


async def test_requests_asked_again_all_wait_for_their_stopped_batch_not_a_new_one(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Collecting the batch anew takes longer than the linger (0.05 s): the
    # requests asked again after the first must not go into a shard of
    # their own meanwhile (their batch is paid for already).
    break_results_once(monkeypatch, then_slow=0.5)
    prompts = [f"h2d {i}" for i in range(8)]
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        first = await gather(connector, prompts)
        assert all(isinstance(r, ProviderConnectionError) for r in first), first
        again = await asyncio.wait_for(gather(connector, prompts), 20)
        assert all(isinstance(r, Entry) for r in again), again
        await connector.execute_batch()  # anything still queued would be sent now
        assert [(s.state, s.requests) for s in connector.store.shards()] == [("collected", 8)]
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0


async def test_asking_again_after_a_resumed_batch_stopped_does_not_hang(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    prompts = [f"h2b {i}" for i in range(6)]
    with Emulator(EmulatorConfig(batch_seconds=1.0)) as emu:
        settings = make_settings(emu)
        await crash_once(settings, prompts)  # run 1: crash once the batch exists

        # Run 2: the download of the resumed batch breaks off once.
        break_results_once(monkeypatch)
        second = open_connector(settings)
        try:
            second.enable_batch_mode()
            got = await gather(second, prompts)
            assert all(isinstance(r, ProviderConnectionError) for r in got), got
            # The caller asks again: the requests attach to the dead executor.
            try:
                again = await asyncio.wait_for(gather(second, prompts), 10)
            except TimeoutError:
                pytest.fail("asking again hung: attached to an executor that has stopped")
            assert all(isinstance(r, Entry) for r in again), again
        finally:
            await second.aclose()


async def test_an_immediate_call_after_a_stopped_batch_waits_for_that_batch(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_results_once(monkeypatch)
    prompts = [f"h2c {i}" for i in range(4)]
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        first = await gather(connector, prompts)
        assert all(isinstance(r, ProviderConnectionError) for r in first), first
        connector.disable_batch_mode()  # "fall back to immediate calls"
        again = await asyncio.wait_for(gather(connector, prompts), 20)
        assert all(isinstance(r, Entry) for r in again), again
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] + billing["immediate"]["requests"] == 4


# ---------------------------------------------------------------------------
# A request of an earlier run's batch that failed retryably waits in its
# retry round; a caller asking for it meanwhile joins that retry.


@pytest.mark.parametrize("max_requests", [None, 6])
async def test_a_request_asked_for_while_its_retry_is_queued_joins_the_retry(
    make_settings: Any, max_requests: int | None
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    model = "gpt-4o-mini"
    prompts = [f"h3 {i}" for i in range(6)]
    # The first batch expires with nothing done; later ones complete.
    with Emulator(EmulatorConfig(batch_seconds=1.0, partial_done=0.0, batch_expire=1.0)) as emu:
        settings = make_settings(emu)
        await crash_once(settings, prompts, model=model)
        emu.configure(batch_expire=0.0)

        second = open_connector(
            make_settings(emu, batch={"linger": 0.5, "max_requests": max_requests})
        )
        try:
            second.enable_batch_mode()
            # Some other work starts the run (and so the resume of the old shard).
            other = asyncio.ensure_future(second.structured("other", Entry, task="t"))
            for _ in range(200):
                await asyncio.sleep(0.02)
                if second.store.shards()[0].state == "collected":
                    break
            # The expired requests are queued again (as stubs); now the caller asks.
            got = await asyncio.wait_for(gather(second, prompts, model=model), 20)
            await other
            states = {s.state for s in second.store.shards()}
            assert states == {"collected"}, states
        finally:
            await second.aclose()
        await asyncio.sleep(1.5)  # batches already created run to their end
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in got), got
    assert billing["batch"]["requests"] == 7 and billing["duplicates"] == 0


# ---------------------------------------------------------------------------
# A completed batch whose output file is late is waited for: its answers
# were paid for, and re-sending them would pay again.


async def test_a_late_output_file_is_waited_for_not_paid_again(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from plugins import hookimpl

    fresh_emulator.configure(output_file_missing_polls=8)
    connector = open_connector(make_settings(fresh_emulator))
    # Stands for the 300 s default elapsing during a long provider lag.
    connector.provider.batch._grace.seconds = 0.1

    class OnlyTheFirstBatchLags:
        @hookimpl
        def batch_submitted(self) -> None:
            fresh_emulator.configure(output_file_missing_polls=0)

    lag_once = OnlyTheFirstBatchLags()
    connector.manager.pm.register(lag_once, name="lag-once")
    try:
        connector.enable_batch_mode()
        results = await gather(connector, [f"h4 {i}" for i in range(4)])
        assert all(isinstance(r, Entry) for r in results), results
        assert [(s.state, s.requests) for s in connector.store.shards()] == [("collected", 4)]
    finally:
        connector.manager.pm.unregister(lag_once)
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 4 and billing["duplicates"] == 0


# ---------------------------------------------------------------------------
# An immediate call looks at the journal every time: a request in a batch
# journaled since (by this connector or another) is not paid again.


async def test_an_immediate_call_after_a_stopped_batch_is_not_paid_again(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_results_once(monkeypatch)
    prompts = [f"h5a {i}" for i in range(4)]
    connector = open_connector(make_settings(fresh_emulator))
    try:
        await connector.structured("warm-up", Entry, task="t")  # an immediate call first
        connector.enable_batch_mode()
        first = await gather(connector, prompts)
        assert all(isinstance(r, ProviderConnectionError) for r in first), first
        connector.disable_batch_mode()
        again = await gather(connector, prompts)
        assert all(isinstance(r, Entry) for r in again), again
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    # warm-up (1 immediate) + 4 requests paid once
    assert billing["batch"]["requests"] + billing["immediate"]["requests"] == 5


async def test_an_immediate_run_beside_a_batch_run_does_not_pay_again(
    make_settings: Any,
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    prompts = [f"h5b {i}" for i in range(4)]
    with Emulator(EmulatorConfig(batch_seconds=1.0)) as emu:
        settings = make_settings(emu)
        immediate = open_connector(settings)  # e.g. an interactive tool on the store
        batch = open_connector(settings)
        try:
            await immediate.structured("warm-up", Entry, task="t")
            batch.enable_batch_mode()
            pending = asyncio.ensure_future(gather(batch, prompts))
            for _ in range(200):
                await asyncio.sleep(0.02)
                if any(s.state == "created" for s in batch.store.shards()):
                    break
            # The journal says these are in a created batch that another
            # connector runs: they are not paid for again (the batch lease is
            # held, so they stop in one line rather than wait).
            now = await gather(immediate, prompts)
            later = await pending
            assert all(isinstance(r, StoreBusyError) for r in now), now
            assert all(isinstance(r, Entry) for r in later), later
        finally:
            await batch.aclose()
            await immediate.aclose()
        billing = emu.billing()
    assert billing["batch"]["requests"] + billing["immediate"]["requests"] == 5


# ---------------------------------------------------------------------------
# A results download that breaks off after a chunk whose failures went to a
# retry round: the retries are sent once and their answers stored, and a
# later run pays nothing more.


async def test_results_of_a_retry_round_survive_a_broken_download(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugins.batch.executor as executor
    from providers.openai import OpenAIBatchEndpoint

    monkeypatch.setattr(executor, "RESULT_CHUNK", 4)
    original = OpenAIBatchEndpoint.results
    state = {"broken": False}

    async def breaks_after_one_chunk(self: Any, batch: Any) -> Any:
        n = 0
        async for item in original(self, batch):
            if not state["broken"] and n == 4:
                state["broken"] = True
                raise ProviderConnectionError("connection reset while reading the error file")
            n += 1
            yield item

    monkeypatch.setattr(OpenAIBatchEndpoint, "results", breaks_after_one_chunk)
    model = "gpt-4o-mini@item-error-once"
    prompts = [f"h7 {i}" for i in range(8)]
    settings = make_settings(fresh_emulator)
    first = open_connector(settings)
    try:
        first.enable_batch_mode()
        got = await gather(first, prompts, model=model)
        assert all(isinstance(r, Entry | ProviderConnectionError) for r in got), got
        await first.execute_batch()  # let the retry round finish
    finally:
        await first.aclose()
    second = open_connector(settings)
    try:
        second.enable_batch_mode()
        again = await gather(second, prompts, model=model)
        assert all(isinstance(r, Entry) for r in again), again
    finally:
        await second.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0


async def test_a_create_that_times_out_is_found_not_made_again(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real client-side read timeout (no exception injected)."""
    from providers.emulator import Emulator, EmulatorConfig
    from providers.openai import OpenAIBatchEndpoint

    original = OpenAIBatchEndpoint.create
    calls = 0
    with Emulator(EmulatorConfig(batch_seconds=0.2)) as emu:

        async def slow_provider_on_first_create(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            # The provider is slow to answer the first create (not the call itself).
            emu.configure(step_latency=1.0 if calls == 1 else 0.0)
            try:
                return await original(self, *args, **kwargs)
            finally:
                emu.configure(step_latency=0.0)

        monkeypatch.setattr(OpenAIBatchEndpoint, "create", slow_provider_on_first_create)
        settings = make_settings(
            emu, providers={"openai": {"base_url": emu.base_url + "/v1", "timeout": 0.5}}
        )
        connector = open_connector(settings)
        try:
            connector.enable_batch_mode()
            results = await gather(connector, [f"h1c {i}" for i in range(5)])
            assert all(isinstance(r, Entry) for r in results), results
        finally:
            await connector.aclose()
        await asyncio.sleep(1.0)
        billing = emu.billing()
    assert billing["batch"]["requests"] == 5 and billing["duplicates"] == 0


# A crash while the batches of shards of the same size are being created:
# one shard at a time is between "submitting" and "created", so the next run
# finds each batch (Anthropic's find matches by size and time) and pays once.


@pytest.mark.parametrize("shards", [1, 2])
async def test_anthropic_crash_while_equal_shards_are_created_pays_once(
    make_settings: Any, shards: int
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    prompts = [f"h6 {i}" for i in range(3 * shards)]
    with Emulator(EmulatorConfig(batch_seconds=0.3, step_latency=1.5)) as emu:
        settings = make_settings(
            emu,
            provider="anthropic",
            connector={"model": "claude-3-5-haiku-latest"},
            batch={"max_requests": 3},
        )
        first = open_connector(settings)
        first.enable_batch_mode()
        tasks = [asyncio.ensure_future(first.structured(p, Entry, task="t")) for p in prompts]
        for _ in range(200):
            await asyncio.sleep(0.02)
            states = [s.state for s in first.store.shards()]
            if len(states) == shards and all(s == "submitting" for s in states):
                break
        await asyncio.sleep(0.5)  # the provider has made the batches; no answer yet
        await first.aclose()  # the process dies before the answers arrive
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        emu.configure(step_latency=0.0)

        second = open_connector(settings)
        try:
            second.enable_batch_mode()
            await second.batch_strategy().resume()
            states = [s.state for s in second.store.shards()]
            assert states == ["collected"] * shards, states
        finally:
            await second.aclose()
        await asyncio.sleep(1.0)
        billing = emu.billing()
    assert billing["batch"]["requests"] == len(prompts) and billing["duplicates"] == 0


# A crash between creating a batch and journaling it, resumed days later
# behind a hundred newer batches of the same account: the provider's list is
# read back to when the shard was journaled, so the batch is found, not made
# (and paid for) again.


async def test_a_shard_resumed_days_later_behind_many_batches_finds_its_batch(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import io
    import sqlite3

    import openai

    from providers.emulator import Emulator, EmulatorConfig
    from providers.openai import OpenAIBatchEndpoint

    prompts = [f"late {i}" for i in range(3)]
    with Emulator(EmulatorConfig(batch_seconds=0.0)) as emu:
        settings = make_settings(emu)
        creates = await crash_after_create(settings, emu, prompts, OpenAIBatchEndpoint, monkeypatch)

        client = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="sk-other-tool")
        for i in range(100):  # other work on the same account, after ours
            line = {
                "custom_id": f"other-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            }
            upload = client.files.create(
                file=(f"o{i}.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch"
            )
            client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        days = 3 * 86_400.0

        def three_days_pass() -> None:
            for record in emu.app.state.batches.values():
                record["created"] -= days

        emu._call(three_days_pass)
        with sqlite3.connect(tmp_path / "store.db") as conn:
            conn.execute("UPDATE shards SET created_at = created_at - ?", (days,))

        second = open_connector(settings)
        try:
            second.enable_batch_mode()
            results = await gather(second, prompts)
            assert all(isinstance(r, Entry) for r in results), results
        finally:
            await second.aclose()
        billing = emu.billing()
    assert creates() == 1  # found, not created again
    ours = {k: n for k, n in billing["by_key"]["batch"].items() if not k.startswith("other-")}
    assert sorted(ours.values()) == [1, 1, 1]
