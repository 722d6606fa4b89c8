"""Too large for a batch: one request refused up front; a batch refused whole sent again split."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plugins.batch.settlement import Settlement
from plugins.factory import open_connector
from providers.errors import InputError
from tests.plugins.batch_helpers import Entry, gather

ANTHROPIC = {"connector": {"model": "claude-haiku-4-5"}}


def _model(provider: str) -> dict[str, Any]:
    return ANTHROPIC if provider == "anthropic" else {}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_request_no_batch_can_hold_is_refused_before_it_is_journaled(
    fresh_emulator: Any, make_settings: Any, provider: str
) -> None:
    settings = make_settings(
        fresh_emulator, provider=provider, batch={"max_bytes": 4000}, **_model(provider)
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        huge = "word " * 2000
        results = await gather(connector, ["small one", huge, "small two"])
        assert isinstance(results[0], Entry) and isinstance(results[2], Entry), results
        assert isinstance(results[1], InputError)
        assert "more than the 4,000 bytes one batch may hold" in str(results[1])
        assert "--mode immediate" in str(results[1])
        # Not journaled, not sent: only the two small ones are in the journal.
        assert connector.store.count_requests(provider) == {"succeeded": 2}
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 2


@pytest.mark.parametrize(
    ("provider", "fault"),
    [
        # OpenAI fails the batch when it checks the file (too_many_requests).
        ("openai", {"openai_max_requests": 3}),
        # Anthropic refuses to create it: 400 "too many requests".
        ("anthropic", {"anthropic_max_requests": 3}),
        # OpenAI refuses to create it: "The batch input file is larger than ...".
        ("openai", {"openai_max_bytes": 1500}),
        # Anthropic: 413 request_too_large.
        ("anthropic", {"anthropic_max_bytes": 2500}),
    ],
    ids=["openai-requests", "anthropic-requests", "openai-bytes", "anthropic-bytes"],
)
async def test_a_batch_refused_as_too_large_is_split_and_sent_again(
    fresh_emulator: Any, make_settings: Any, provider: str, fault: dict[str, int]
) -> None:
    fresh_emulator.configure(**fault)
    settings = make_settings(fresh_emulator, provider=provider, **_model(provider))
    prompts = [f"split {i}" for i in range(8)]
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, prompts)
        assert all(isinstance(r, Entry) for r in results), results
        store = connector.store
        assert store.count_requests(provider) == {"succeeded": 8}
        shards = store.shards()
        # The refused batch (and any half refused again) never ran; the rest answered all.
        refused = [s for s in shards if s.state == "failed" or s.counts.get("succeeded") == 0]
        answered = [s for s in shards if s not in refused]
        assert refused and refused[0].requests == 8
        assert sum(s.requests for s in answered) == 8
        assert all(s.requests < 8 for s in answered)
        # Not a retry round: each request was answered in its first round.
        assert {s.round for s in answered} == {0}
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0
    assert billing["immediate"]["requests"] == 0


async def test_a_single_request_refused_as_too_large_fails_alone(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(openai_max_bytes=64)  # under any one request
    connector = open_connector(make_settings(fresh_emulator, batch={"max_requests": 1}))
    try:
        connector.enable_batch_mode()
        results = await gather(connector, ["alone"])
        assert "larger than the 64 maximum" in str(results[0]), results
        assert connector.store.count_requests("openai") == {"failed": 1}
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_split_interrupted_before_its_halves_are_sent_resumes_without_paying_twice(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    fresh_emulator.configure(**{f"{provider}_max_requests": 3})
    settings = make_settings(fresh_emulator, provider=provider, **_model(provider))
    prompts = [f"halves {i}" for i in range(6)]
    with monkeypatch.context() as patch:
        # The process dies once the refusal is journaled, before the halves are queued.
        died = asyncio.Event()

        def die(self: Any, shard: Any, keys: list[str], why: str) -> None:
            died.set()

        patch.setattr(Settlement, "resend_smaller", die)
        first = open_connector(settings)
        first.enable_batch_mode()
        tasks = [asyncio.ensure_future(first.structured(p, Entry, task="t")) for p in prompts]
        await asyncio.wait_for(died.wait(), 20)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await first.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 0  # refused, so never billed

    again = open_connector(settings)
    try:
        again.enable_batch_mode()
        results = await gather(again, prompts)
        assert all(isinstance(r, Entry) for r in results), results
        assert again.store.count_requests(provider) == {"succeeded": 6}
    finally:
        await again.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 6 and billing["duplicates"] == 0


def test_only_refusals_for_size_count_as_too_large() -> None:
    from plugins.batch.oversize import too_large
    from providers.errors import InvalidRequestError, RateLimitError, ServerError
    from providers.types import BatchInfo, BatchState

    assert too_large(InvalidRequestError("File is too large.", status_code=400))
    assert too_large(InvalidRequestError("Request exceeds ...", status_code=413))
    assert too_large(InvalidRequestError("requests: too many requests (8 > 3)", status_code=400))
    assert too_large(
        InvalidRequestError(
            "The batch input file is larger than the 209715200 maximum for the gpt-4o model. "
            "Please try again with a smaller batch.",
            status_code=400,
        )
    )
    # Not about the batch's size: a rate limit, a bad parameter, an outage, the queue cap.
    assert not too_large(RateLimitError("Too Many Requests", status_code=429))
    assert not too_large(InvalidRequestError("max_tokens: Field required", status_code=400))
    assert not too_large(ServerError("Internal server error", status_code=500))
    full = "token_limit_exceeded: Enqueued token limit reached for gpt-4o-mini"
    assert not too_large(info=BatchInfo("b", BatchState.FAILED, errors=(full,)))
    size = "too_many_requests: The batch input file has 8 requests, more than the 3 allowed"
    assert too_large(info=BatchInfo("b", BatchState.FAILED, errors=(size,)))
    assert not too_large(info=BatchInfo("b", BatchState.COMPLETED, errors=(size,)))
