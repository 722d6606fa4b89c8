"""Scheduling under the provider's queue cap: shards wait for room, every request answered once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugins.batch.queuecap import QueueRoom, request_tokens
from plugins.dashboard import RunState
from plugins.factory import open_connector
from providers.emulator import Emulator, EmulatorConfig
from providers.emulator.queuecap import anthropic_tokens, openai_tokens
from providers.types import BatchInfo, BatchState
from tests.plugins.batch_helpers import Entry, _die, gather

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "mistral": "mistral-small-latest",
}
# Where each API is served on the emulator.
PATHS = {"openai": "/v1", "anthropic": "", "gemini": "", "mistral": "/mistral"}
PROMPTS = [f"queue word {i}" for i in range(10, 22)]  # 12 requests: 4 shards of 3
SHARD = 3


def _settings(
    make_settings: Any, emu: Any, provider: str, db: Path | None = None, **provider_opts: Any
) -> Any:
    connector = {"model": MODELS[provider]} | ({"db": str(db)} if db else {})
    return make_settings(
        emu,
        provider=provider,
        connector=connector,
        providers={provider: {"base_url": emu.base_url + PATHS[provider], **provider_opts}},
        batch={"max_requests": SHARD},
    )


async def _counted_by_the_emulator(make_settings: Any, provider: str, tmp_path: Path) -> list[int]:
    """Tokens of each shard as the emulator counts them, from a run against another one."""
    # A limit no shard reaches: each batch is counted at its create, before its files go.
    with Emulator(EmulatorConfig(enqueued_token_limit=10**12)) as probe:
        await _run_all(
            _settings(make_settings, probe, provider, db=tmp_path / "probe.db"), provider
        )
        batches = sorted(probe.app.state.batches.values(), key=lambda rec: rec["created"])
        return [sum(probe.app.engine.batch_tokens(rec).values()) for rec in batches]


def _shard_sizes(settings: Any, provider: str) -> tuple[list[int], list[int]]:
    """Tokens of each shard: as this client estimates them, and as the emulator counts them."""
    connector = open_connector(settings)
    try:
        requests = [connector.build_request(p, Entry, task="t") for p in PROMPTS]
        endpoint = connector.provider.batch
        assert endpoint is not None
        ours: list[int] = []
        theirs: list[int] = []
        for at in range(0, len(requests), SHARD):
            group = requests[at : at + SHARD]
            ours.append(sum(request_tokens(r) for r in group))
            lines = [endpoint.encode(r, r.key) for r in group]
            if provider == "openai":
                counted = openai_tokens(b"\n".join(lines))
            else:
                counted = anthropic_tokens([orjson.loads(line) for line in lines])
            theirs.append(counted[MODELS[provider]])
    finally:
        connector.store.close()
    return ours, theirs


def _fits_two(sizes: list[int]) -> int:
    """A cap two shards fit under, three never."""
    cap = 2 * max(sizes) + min(sizes) // 2
    assert 3 * min(sizes) > cap
    return cap


def _watch_holds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the tokens enqueued for the model after each shard is counted."""
    seen: list[int] = []
    original = QueueRoom.hold

    def hold(self: QueueRoom, shard_id: str, tokens: Mapping[str, int]) -> None:
        original(self, shard_id, tokens)
        seen.append(max(self.enqueued(model) for model in tokens))

    monkeypatch.setattr(QueueRoom, "hold", hold)
    return seen


async def _run_all(settings: Any, provider: str) -> None:
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, PROMPTS)
        assert all(isinstance(r, Entry) for r in results), results
        store = connector.store
        assert store.count_requests(provider) == {"succeeded": len(PROMPTS)}
        # Not a retry round, nothing split: four shards, each answered in its first round.
        shards = store.shards()
        assert len(shards) == len(PROMPTS) // SHARD
        assert {(s.state, s.round) for s in shards} == {("collected", 0)}
    finally:
        await connector.aclose()


def _billed_once(emu: Any) -> None:
    billing = emu.billing()
    assert billing["batch"]["requests"] == len(PROMPTS)
    assert billing["duplicates"] == 0 and billing["immediate"]["requests"] == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_shards_wait_for_room_under_the_configured_cap(
    fresh_emulator: Any,
    make_settings: Any,
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Batches stay in progress a while, so later shards find the queue full.
    fresh_emulator.configure(batch_seconds=0.4)
    ours, _ = _shard_sizes(_settings(make_settings, fresh_emulator, provider), provider)
    cap = _fits_two(ours)
    settings = _settings(
        make_settings,
        fresh_emulator,
        provider,
        max_enqueued_tokens_by_model={MODELS[provider]: cap},
    )
    held = _watch_holds(monkeypatch)
    with caplog.at_level(logging.INFO, logger="lexibatch.batch"):
        await _run_all(settings, provider)
    # Never more than the cap enqueued, and two shards did go together.
    assert held and max(held) <= cap and max(held) > max(ours)
    waits = [r for r in caplog.records if "waiting for queue room" in r.getMessage()]
    assert waits and all(f"cap {cap:,}" in w.getMessage() for w in waits), waits
    assert waits[0].getMessage().startswith(f"waiting for queue room for {MODELS[provider]}: ")
    # Said as a warning once; the shards that wait after it within the minute, at info.
    assert [w.levelno for w in waits] == [logging.WARNING] + [logging.INFO] * (len(waits) - 1)
    # The provider never had to refuse a batch.
    states = [rec.get("refused") for rec in fresh_emulator.app.state.batches.values()]
    assert len(states) == len(PROMPTS) // SHARD and not any(states)
    _billed_once(fresh_emulator)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "mistral"])
async def test_batches_refused_for_the_queue_wait_and_are_sent_again(
    fresh_emulator: Any,
    make_settings: Any,
    provider: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    settings = _settings(make_settings, fresh_emulator, provider)
    theirs = await _counted_by_the_emulator(make_settings, provider, tmp_path)
    assert len(theirs) == len(PROMPTS) // SHARD
    fresh_emulator.configure(batch_seconds=0.4, enqueued_token_limit=_fits_two(theirs))
    with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
        await _run_all(settings, provider)
    messages = [r.getMessage() for r in caplog.records]
    waits = [m for m in messages if "waiting for queue room" in m]
    assert waits, messages
    assert "the provider refused it" in waits[0] or "the provider refused shard" in waits[0]
    batches = list(fresh_emulator.app.state.batches.values())
    if provider == "openai":
        # Refused batches are failed ones at the provider; they never ran.
        refused = [b for b in batches if b.get("refused")]
        assert refused and len(batches) == len(PROMPTS) // SHARD + len(refused)
        assert "token_limit_exceeded" in waits[0]
    else:
        # The others refuse at create (a 429): only the batches that ran exist.
        assert len(batches) == len(PROMPTS) // SHARD
        assert fresh_emulator.billing()["queue_refusals"] >= 1
    assert not any("failed" in m and "shard" in m and "refused" not in m for m in messages)
    _billed_once(fresh_emulator)


async def test_a_refusal_with_nothing_in_flight_backs_off_and_sends_again(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Another member of the organisation holds the queue: every create is refused.
    # (One request: a shard of more would be split, as too big for the queue.)
    fresh_emulator.configure(enqueued_token_limit=1)
    settings = _settings(make_settings, fresh_emulator, "anthropic")
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        # The second backoff within the minute is said at info level.
        with caplog.at_level(logging.INFO, logger="lexibatch.batch"):
            tasks = [
                asyncio.ensure_future(connector.structured(p, Entry, task="t")) for p in PROMPTS[:1]
            ]
            backoffs: list[str] = []
            for _ in range(200):
                await asyncio.sleep(0.02)
                backoffs = [
                    r.getMessage()
                    for r in caplog.records
                    if "none of this run's batches" in r.getMessage()
                ]
                if len(backoffs) >= 2:
                    break
        # Asked again and again, journaled before create each time, nothing failed.
        assert len(backoffs) >= 2, backoffs
        assert [s.state for s in connector.store.shards()] == ["uploaded"]
        assert connector.store.count_requests("anthropic") == {"submitted": 1}
        assert not any(t.done() for t in tasks)
        fresh_emulator.configure(enqueued_token_limit=None)  # the queue drains
        results = await asyncio.gather(*tasks)
        assert all(isinstance(r, Entry) for r in results)
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 1


async def test_a_batch_refused_for_the_queue_is_never_found_as_the_shards_own(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Every batch is refused: the shard's failed batch carries its id in its metadata.
    # (One request: a shard of more would be split, as too big for the queue.)
    fresh_emulator.configure(enqueued_token_limit=1)
    settings = _settings(make_settings, fresh_emulator, "openai")
    first = open_connector(settings)
    first.enable_batch_mode()
    tasks = [asyncio.ensure_future(first.structured(p, Entry, task="t")) for p in PROMPTS[:1]]
    for _ in range(200):
        await asyncio.sleep(0.02)
        if any("none of this run's batches" in r.getMessage() for r in caplog.records):
            break
    shards = first.store.shards()
    assert [(s.state, s.batch_id) for s in shards] == [("uploaded", None)]
    await _die(first, tasks)
    # As if the process had died between journaling "submitting" and hearing from create.
    refused = list(fresh_emulator.app.state.batches)
    assert refused
    store = open_connector(settings).store
    store.update_shard(shards[0].shard_id, state="submitting")
    store.close()
    fresh_emulator.configure(enqueued_token_limit=None)
    caplog.clear()

    again = open_connector(settings)
    try:
        again.enable_batch_mode()
        results = await gather(again, PROMPTS[:1])
        assert all(isinstance(r, Entry) for r in results), results
        [shard] = again.store.shards()
        # Its batch is a new one, not the refused one found by its metadata.
        assert shard.state == "collected" and shard.batch_id not in refused
    finally:
        await again.aclose()
    assert not any("waiting for queue room" in r.getMessage() for r in caplog.records)
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 1 and billing["duplicates"] == 0


def test_the_dashboard_says_which_shards_wait_for_room() -> None:
    state = RunState("run 12 requests", batch_mode=True, clock=lambda: 1000.0)
    refused = BatchInfo(
        "batch_1",
        BatchState.FAILED,
        errors=("token_limit_exceeded: Enqueued token limit reached for gpt-4o-mini",),
    )
    state.batch_submitted(batch=refused, shard_id="s1", provider="openai", requests=3)
    state.batch_status_changed(batch=refused, previous=None, provider="openai")
    # The refused batch is not shown as a failed one: it is sent again.
    assert "batch_1" not in state.batches
    for shard in ("s1", "s2"):
        state.batch_waiting_for_room(
            shard_id=shard, provider="openai", model="gpt-4o-mini", waiting=True
        )
    waiting = state.waiting_for()
    assert waiting is not None
    assert waiting.startswith("room in openai's batch queue for gpt-4o-mini: 2 shards held")
    state.batch_waiting_for_room(
        shard_id="s1", provider="openai", model="gpt-4o-mini", waiting=False
    )
    assert list(state.held) == ["s2"]


async def test_batches_of_an_earlier_run_still_in_flight_count_against_the_cap(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_emulator.configure(batch_seconds=2.0)
    ours, _ = _shard_sizes(_settings(make_settings, fresh_emulator, "openai"), "openai")
    cap = _fits_two(ours)
    settings = _settings(make_settings, fresh_emulator, "openai", max_enqueued_tokens=cap)
    first = open_connector(settings)
    first.enable_batch_mode()
    tasks = [asyncio.ensure_future(first.structured(p, Entry, task="t")) for p in PROMPTS]
    states: list[str] = []
    for _ in range(200):
        await asyncio.sleep(0.02)
        states = sorted(s.state for s in first.store.shards())
        if states == ["created", "created", "uploaded", "uploaded"]:
            break
    # Two batches in flight, two shards waiting for room: the process dies.
    assert states == ["created", "created", "uploaded", "uploaded"], states
    await _die(first, tasks)

    held = _watch_holds(monkeypatch)
    again = open_connector(settings)
    try:
        again.enable_batch_mode()
        results = await gather(again, PROMPTS)
        assert all(isinstance(r, Entry) for r in results), results
    finally:
        await again.aclose()
    # The two batches of the first run were counted before anything else was sent.
    assert held and max(held) <= cap
    _billed_once(fresh_emulator)


async def test_a_single_request_bigger_than_the_cap_goes_alone(
    fresh_emulator: Any,
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fresh_emulator.configure(batch_seconds=0.2)
    settings = _settings(make_settings, fresh_emulator, "openai", max_enqueued_tokens=10)
    held = _watch_holds(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
        connector = open_connector(settings)
        try:
            connector.enable_batch_mode()
            results = await gather(connector, PROMPTS)
            assert all(isinstance(r, Entry) for r in results), results
            shards = connector.store.shards()
            assert connector.store.count_requests("openai") == {"succeeded": len(PROMPTS)}
        finally:
            await connector.aclose()
    singles = [request_tokens_of(settings, p) for p in PROMPTS]
    # Every shard of three was split down to single requests, sent one at a time.
    collected = [s for s in shards if s.state == "collected"]
    assert len(collected) == len(PROMPTS) and {s.requests for s in collected} == {1}
    assert held and max(held) == max(singles)
    messages = [r.getMessage() for r in caplog.records]
    split = [m for m in messages if "too big for the queue" in m]
    assert len(split) == len(PROMPTS) // SHARD, split
    assert "cap of 10 enqueued tokens — sent again in batches of at most 1 " in split[0]
    alone = [m for m in messages if "it is sent when nothing else" in m]
    assert len(alone) == len(PROMPTS)
    assert "more than the cap of 10 enqueued tokens: it is sent when nothing else" in alone[0]
    _billed_once(fresh_emulator)


def request_tokens_of(settings: Any, prompt: str) -> int:
    """The tokens one request of ``prompt`` holds in the queue, as this client estimates them."""
    connector = open_connector(settings)
    try:
        return request_tokens(connector.build_request(prompt, Entry, task="t"))
    finally:
        connector.store.close()
