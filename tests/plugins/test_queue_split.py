"""Shards too big for the provider's queue are split; a full queue's 429 is not a rate limit."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from plugins.batch.oversize import halved_to_fit
from plugins.batch.queuecap import (
    SPLIT_AFTER,
    QueueRoom,
    create_refusal,
    refused_at_create,
    stated_limit,
)
from plugins.config import registered_spec
from plugins.dashboard import RunState
from plugins.factory import open_connector
from providers.errors import RateLimitError, ServerError, error_from_status
from providers.types import BatchLimits
from tests.plugins.batch_helpers import Entry, gather
from tests.plugins.test_queue_cap import (
    PROMPTS,
    SHARD,
    _counted_by_the_emulator,
    _settings,
    _watch_holds,
    request_tokens_of,
)

# -- which 429 is a full queue ------------------------------------------------

OPENAI_QUEUE = (
    "Enqueued token limit reached for gpt-4o-mini in organization org-abc. Limit: 2,000,000 "
    "enqueued tokens. Please try again once some in_progress batches have been completed."
)


def _429(provider: str, message: str, code: str | None) -> Any:
    return error_from_status(429, message, provider=provider, code=code)


@pytest.mark.parametrize(
    ("provider", "message", "code", "kind", "waits_when_lasting"),
    [
        # OpenAI's own words for its enqueued-token and enqueued-request limits.
        ("openai", OPENAI_QUEUE, "token_limit_exceeded", "queue", True),
        (
            "openai",
            "Enqueued request limit reached for text-embedding-3-small in organization "
            "org-abc. Limit: 1,000,000 enqueued requests. Please try again once some "
            "in_progress batches have been completed.",
            None,
            "queue",
            True,
        ),
        # OpenAI's limit on creating batches: a rate limit like any other.
        (
            "openai",
            "Rate limit reached for batch creation in organization org-abc: Limit 2000 per 1h.",
            "rate_limit_exceeded",
            "rate",
            False,
        ),
        (
            "anthropic",
            "Your organization has reached its limit of 500,000 enqueued tokens for "
            "claude-haiku-4-5 in message batches being processed.",
            "rate_limit_error",
            "queue",
            True,
        ),
        (
            "anthropic",
            "This request would exceed the rate limit for your organization of 50 Message "
            "Batches API requests per minute. Please try again later.",
            "rate_limit_error",
            "rate",
            False,
        ),
        (
            "gemini",
            "Enqueued token limit of 40,000 reached for gemini-2.5-flash batches.",
            "RESOURCE_EXHAUSTED",
            "queue",
            True,
        ),
        # Gemini words a full batch queue as any exhausted quota: lasting, it is one.
        (
            "gemini",
            "You exceeded your current quota, please check your plan and billing details.",
            "RESOURCE_EXHAUSTED",
            "rate",
            True,
        ),
        ("mistral", "Requests rate limit exceeded", "1300", "rate", False),
        (
            "mistral",
            "Enqueued token limit of 40,000 reached for mistral-small-latest batches.",
            "rate_limited",
            "queue",
            True,
        ),
    ],
)
def test_a_full_queue_429_is_told_from_a_rate_limit(
    provider: str, message: str, code: str | None, kind: str, waits_when_lasting: bool
) -> None:
    error = _429(provider, message, code)
    assert isinstance(error, RateLimitError)
    assert create_refusal(error) == kind
    spec = registered_spec(provider)
    assert spec is not None and spec.batch is not None
    quota_worded = spec.batch.queue_full_as_quota
    assert refused_at_create(error, quota_worded=quota_worded) is waits_when_lasting


def test_a_plugin_says_its_queue_is_full_with_the_public_code_in_its_own_words() -> None:
    from providers.errors import QUEUE_FULL

    # Acme's words name no queue lexibatch knows; its code does.
    said = "Acme allows 3 open jobs per account"
    full = RateLimitError(said, provider="acme", status_code=429, code=QUEUE_FULL)
    assert create_refusal(full) == "queue" and refused_at_create(full)
    busy = RateLimitError(said, provider="acme", status_code=429, code="open_jobs_exhausted")
    assert create_refusal(busy) == "rate" and not refused_at_create(busy)


def test_only_a_429_is_a_refusal_at_create() -> None:
    error = error_from_status(500, OPENAI_QUEUE, provider="openai")
    assert isinstance(error, ServerError)
    assert create_refusal(error) is None and not refused_at_create(error)


def test_the_limit_a_refusal_states_is_read() -> None:
    assert stated_limit(f"batch batch_1 failed: token_limit_exceeded: {OPENAI_QUEUE}") == 2_000_000
    assert stated_limit("reached its limit of 1,234 enqueued tokens for m") == 1234
    assert stated_limit("Enqueued token limit of 777 reached for m batches.") == 777
    assert stated_limit("You exceeded your current quota") is None


# -- halving until a shard fits -------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "share", "most"),
    [(1000, 0.5, 500), (1000, 0.3, 250), (1000, 0.01, 8), (3, 0.5, 1), (2, 0.9, 1), (1, 0.1, 1)],
)
def test_a_shard_is_halved_until_its_share_fits(requests: int, share: float, most: int) -> None:
    limits = halved_to_fit(BatchLimits(50_000, 100_000_000), requests, share)
    assert limits.max_requests == most
    assert limits.max_bytes == 100_000_000
    assert most <= max(1, requests * share)


def test_halving_never_grows_past_the_current_limit() -> None:
    assert halved_to_fit(BatchLimits(100, 1_000), 1000, 0.9).max_requests == 50


# -- deciding, in the queue room ------------------------------------------------


async def test_a_shard_refused_alone_over_the_stated_limit_is_split_at_once() -> None:
    room = QueueRoom(lambda m: None, False, (0.001, 0.002), lambda *a: None)
    why = "batch b failed: token_limit_exceeded: Limit: 1,000 enqueued tokens."
    share = await room.refused("s1", "m", why, tokens=lambda: {"m": 4_000})
    assert share == 0.25


async def test_a_shard_refused_alone_again_and_again_is_halved() -> None:
    # The refusal states no limit the estimate passes (the provider counts more).
    room = QueueRoom(lambda m: None, False, (0.001, 0.002), lambda *a: None)
    why = "token_limit_exceeded: Limit: 1,000 enqueued tokens."
    shares = [await room.refused("s1", "m", why, tokens=lambda: {"m": 900}) for _ in range(3)]
    assert shares == [None, None, 0.5]
    assert room.waits == 2 and room.waited > 0
    # A single request (nothing to split) waits, however often it is refused.
    singles = [await room.refused("s2", "m", why) for _ in range(4)]
    assert singles == [None] * 4


async def test_a_refusal_while_this_run_has_batches_in_flight_waits_for_one_to_end() -> None:
    room = QueueRoom(lambda m: None, False, (0.001, 0.002), lambda *a: None)
    why = "Limit: 1,000 enqueued tokens."
    for _ in range(SPLIT_AFTER + 1):
        room.hold("other", {"m": 10})
        waiting = asyncio.ensure_future(room.refused("s1", "m", why, tokens=lambda: {"m": 900}))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        room.release("other")
        # Something else held the queue and made room when it ended: waited, never split.
        assert await waiting is None


async def test_shards_refused_while_none_of_their_batches_runs_are_split() -> None:
    # Every shard in flight is refused in turn (each bigger than the queue, as
    # the provider counts it): their ends make no room, and they are halved.
    room = QueueRoom(lambda m: None, False, (0.001, 0.002), lambda *a: None)
    why = "Limit: 1,000 enqueued tokens."
    shares: list[float | None] = []
    for _ in range(SPLIT_AFTER):
        room.hold("s2", {"m": 900})
        waiting = asyncio.ensure_future(room.refused("s1", "m", why, tokens=lambda: {"m": 900}))
        await asyncio.sleep(0.01)
        shares.append(await room.refused("s2", "m", why) if not waiting.done() else None)
        shares.append(await waiting)
    assert shares[-1] == 0.5 and all(share is None for share in shares[:-1])


async def test_a_shard_over_the_stated_limit_is_split_even_while_others_run() -> None:
    room = QueueRoom(lambda m: None, False, (0.001, 0.002), lambda *a: None)
    room.hold("other", {"m": 10})
    share = await room.refused(
        "s1", "m", "Limit: 1,000 enqueued tokens.", tokens=lambda: {"m": 8_000}
    )
    assert share == 0.125


# -- through the emulator ---------------------------------------------------------


async def _answer_all(settings: Any, provider: str, prompts: list[str]) -> Any:
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, prompts)
        assert all(isinstance(r, Entry) for r in results), results
        store = connector.store
        assert store.count_requests(provider) == {"succeeded": len(prompts)}
        return store.shards()
    finally:
        await connector.aclose()


async def test_a_shard_over_the_configured_cap_is_split_before_it_is_sent(
    fresh_emulator: Any,
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fresh_emulator.configure(batch_seconds=0.1)
    plain = _settings(make_settings, fresh_emulator, "openai")
    one = max(request_tokens_of(plain, p) for p in PROMPTS)
    # One request fits, a shard of three never does.
    cap = one + one // 2
    settings = _settings(make_settings, fresh_emulator, "openai", max_enqueued_tokens=cap)
    held = _watch_holds(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
        shards = await _answer_all(settings, "openai", PROMPTS)
    split = [s for s in shards if s.state == "failed"]
    sent = [s for s in shards if s.state == "collected"]
    assert split and {s.requests for s in split} == {SHARD}
    assert sent and max(s.requests for s in sent) == 1
    assert sum(s.requests for s in sent) == len(PROMPTS)
    # Never more than the cap enqueued, and the provider never had to refuse.
    assert held and max(held) <= cap
    assert not any(rec.get("refused") for rec in fresh_emulator.app.state.batches.values())
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "too big for the queue" in m and f"more than the cap of {cap:,} enqueued" in m
        for m in messages
    )
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == len(PROMPTS) and billing["duplicates"] == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_shard_the_provider_refuses_even_alone_is_split_until_it_fits(
    fresh_emulator: Any,
    make_settings: Any,
    provider: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # No cap configured: only the provider knows its limit, which one request
    # fits and no shard of three does.
    theirs = await _counted_by_the_emulator(make_settings, provider, tmp_path)
    one = max(theirs) // SHARD
    fresh_emulator.configure(batch_seconds=0.1, enqueued_token_limit=one + one // 2)
    settings = _settings(make_settings, fresh_emulator, provider)
    with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
        shards = await asyncio.wait_for(_answer_all(settings, provider, PROMPTS), 60)
    split = [s for s in shards if s.state == "failed"]
    sent = [s for s in shards if s.state == "collected"]
    assert split and sent and sum(s.requests for s in sent) == len(PROMPTS)
    assert max(s.requests for s in sent) < SHARD
    messages = [r.getMessage() for r in caplog.records]
    assert any("too big for the queue" in m for m in messages), messages
    # Refused batches never ran: each request billed once, none failed.
    billing = fresh_emulator.billing()
    assert billing["queue_refusals"] >= 1
    assert billing["batch"]["requests"] == len(PROMPTS) and billing["duplicates"] == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "mistral"])
async def test_an_ordinary_429_at_create_goes_through_the_retry_policy(
    fresh_emulator: Any,
    make_settings: Any,
    provider: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fresh_emulator.configure(batch_create_rate_limit=2, retry_after=0.05)
    settings = _settings(make_settings, fresh_emulator, provider)
    with caplog.at_level(logging.INFO):
        shards = await _answer_all(settings, provider, PROMPTS[:SHARD])
    assert [(s.state, s.round) for s in shards] == [("collected", 0)]
    messages = [r.getMessage() for r in caplog.records]
    retried = [m for m in messages if m.startswith("batch create of") and "retrying" in m]
    assert len(retried) == 2, messages
    # Not a wait for queue room.
    assert not any("queue room" in m for m in messages)
    assert fresh_emulator.app.config.batch_create_rate_limit == 0
    billing = fresh_emulator.billing()
    assert billing["queue_refusals"] == 0 and billing["batch"]["requests"] == SHARD
    assert billing["duplicates"] == 0


async def test_a_rate_limit_the_retry_policy_gives_up_on_leaves_the_shard_journaled(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_emulator.configure(batch_create_rate_limit=1_000, retry_after=0.01)
    settings = _settings(make_settings, fresh_emulator, "openai")
    settings = settings.model_copy(
        update={"retry": settings.retry.model_copy(update={"max_attempts": 3})}
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
            results = await gather(connector, PROMPTS[:SHARD])
        # The shard stopped before create (a 429 proves no batch was made): not
        # failed, not a retry round, not a wait for queue room.
        assert all(isinstance(r, RateLimitError) for r in results), results
        assert [s.state for s in connector.store.shards()] == ["uploaded"]
        assert connector.store.count_requests("openai") == {"submitted": SHARD}
    finally:
        await connector.aclose()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("queue room" in m for m in messages)
    assert any("stays journaled" in m for m in messages), messages
    assert not fresh_emulator.app.state.batches
    # The limit passes: the same work resumes, each request billed once.
    fresh_emulator.configure(batch_create_rate_limit=0)
    shards = await _answer_all(settings, "openai", PROMPTS[:SHARD])
    assert [s.state for s in shards] == ["collected"]
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == SHARD and billing["duplicates"] == 0


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "mistral"])
async def test_a_full_queue_429_waits_for_room_without_a_retry_round(
    fresh_emulator: Any,
    make_settings: Any,
    provider: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    theirs = await _counted_by_the_emulator(make_settings, provider, tmp_path)
    cap = 2 * max(theirs) + min(theirs) // 2
    fresh_emulator.configure(batch_seconds=0.3, enqueued_token_limit=cap)
    settings = _settings(make_settings, fresh_emulator, provider)
    with caplog.at_level(logging.INFO):
        await _answer_all(settings, provider, PROMPTS)
    messages = [r.getMessage() for r in caplog.records]
    assert fresh_emulator.billing()["queue_refusals"] >= 1
    assert any("waiting for queue room" in m for m in messages)
    # The retry policy never saw a full queue's 429.
    assert not any(m.startswith("batch create of") for m in messages), messages
    waited = [m for m in messages if "waited" in m and "for queue room" in m]
    assert waited, messages


# -- how long shards waited, told ---------------------------------------------


def test_the_run_says_how_long_shards_waited_for_room() -> None:
    now = [1000.0]
    state = RunState("run", batch_mode=True, clock=lambda: now[0])
    assert state.room_note() is None
    state.batch_waiting_for_room(shard_id="a", provider="openai", model="m", waiting=True)
    now[0] += 10
    state.batch_waiting_for_room(shard_id="b", provider="openai", model="m", waiting=True)
    now[0] += 5
    state.batch_waiting_for_room(shard_id="a", provider="openai", model="m", waiting=False)
    now[0] += 5
    state.batch_waiting_for_room(shard_id="b", provider="openai", model="m", waiting=False)
    # a: 15 s, b: 10 s; at least one of them waited for 20 s.
    assert state.room_note() == "shards waited 25.0 s for queue room (the run was held 20.0 s)"
    now[0] += 100
    state.batch_waiting_for_room(shard_id="c", provider="openai", model="m", waiting=True)
    now[0] += 2
    # A wait still going counts up to now.
    assert state.room_note() == "shards waited 27.0 s for queue room (the run was held 22.0 s)"
    assert "shards waited 27.0 s for queue room" in state.status_line()
