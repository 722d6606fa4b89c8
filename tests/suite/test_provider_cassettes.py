"""Recorded-cassette tests of the Anthropic, LiteLLM, Gemini and Mistral providers (strict replay).

For each: one immediate structured call and one full batch cycle (upload,
create, poll, results). Cassettes live in ``cassettes/test_provider_cassettes/``.
They were recorded against an emulator serving on ``RECORD_ROOT``
(``lexibatch emulator --port 18766``, then ``pytest tests/suite/test_provider_cassettes.py
--record-mode=once``); with ``LEXIBATCH_CASSETTE_TARGET=real`` and real
``ANTHROPIC_API_KEY`` / ``OPENAI_API_KEY`` they are recorded against the real
APIs (and ``GEMINI_API_KEY`` / ``MISTRAL_API_KEY`` for those two). Gemini's
batch goes through a file, so its cassette holds the resumable upload and the
results download. Replay fails if any recorded interaction is left unplayed. The OpenAI
provider's cassettes are in ``tests/cassette/``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from providers.protocol import BatchEndpoint, Provider
from providers.types import BatchState, Message, Request

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

RECORD_ROOT = "http://127.0.0.1:18766"
REAL = os.environ.get("LEXIBATCH_CASSETTE_TARGET") == "real"

ANTHROPIC_MODEL = "claude-haiku-4-5"
LITELLM_MODEL = "openai/gpt-4o-mini"
GEMINI_MODEL = "gemini-2.5-flash"
MISTRAL_MODEL = "mistral-small-latest"


class Capital(BaseModel):
    """The answer's shape."""

    city: str
    country: str


def _anthropic(tmp_path: Path) -> Provider:
    from providers.anthropic import AnthropicProvider

    key = os.environ["ANTHROPIC_API_KEY"] if REAL else "sk-ant-cassette-dummy"
    base = None if REAL else RECORD_ROOT
    return AnthropicProvider(api_key=key, base_url=base, state_dir=tmp_path / "shards")


def _litellm(tmp_path: Path) -> Provider:
    from providers.litellm import LiteLLMProvider

    key = os.environ["OPENAI_API_KEY"] if REAL else "sk-cassette-dummy"
    base = None if REAL else RECORD_ROOT + "/v1"
    return LiteLLMProvider(api_key=key, base_url=base, model=LITELLM_MODEL)


def _gemini(tmp_path: Path) -> Provider:
    from providers.gemini import GeminiProvider

    key = os.environ["GEMINI_API_KEY"] if REAL else "gemini-cassette-dummy"
    base = None if REAL else RECORD_ROOT
    return GeminiProvider(api_key=key, base_url=base, inline_max_bytes=0)


def _mistral(tmp_path: Path) -> Provider:
    from providers.mistral import MistralProvider

    key = os.environ["MISTRAL_API_KEY"] if REAL else "mistral-cassette-dummy"
    base = None if REAL else RECORD_ROOT + "/mistral"
    return MistralProvider(api_key=key, base_url=base)


_PROVIDERS = {
    "anthropic": (_anthropic, ANTHROPIC_MODEL),
    "litellm": (_litellm, LITELLM_MODEL),
    "gemini": (_gemini, GEMINI_MODEL),
    "mistral": (_mistral, MISTRAL_MODEL),
}


def _request(city: str, model: str) -> Request:
    return Request(
        model=model,
        messages=(Message("user", f"Which country is {city} the capital of?"),),
        response_model=Capital,
        max_tokens=50,
    )


@pytest.mark.vcr
@pytest.mark.parametrize("name", list(_PROVIDERS))
async def test_immediate_structured_call(vcr: Any, name: str, tmp_path: Path) -> None:
    make, model = _PROVIDERS[name]
    provider = make(tmp_path)
    try:
        completion = await provider.complete(_request("Lisbon", model))
    finally:
        await provider.aclose()
    answer = Capital.model_validate_json(completion.content)
    assert answer.city and answer.country
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0
    assert vcr.all_played or vcr.record_mode != "none"  # strict on replay


@pytest.mark.vcr
@pytest.mark.parametrize("name", list(_PROVIDERS))
async def test_full_batch_cycle(vcr: Any, name: str, tmp_path: Path) -> None:
    make, model = _PROVIDERS[name]
    provider = make(tmp_path)
    endpoint: BatchEndpoint | None = provider.batch
    assert endpoint is not None
    requests = [_request(c, model) for c in ("Paris", "Rome", "Oslo")]
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b"".join(endpoint.encode(r, r.key) + b"\n" for r in requests))
    try:
        file_id = await endpoint.upload(path, shard_id="shard_cassette")
        # Anthropic takes the requests inline: there is no file to upload.
        assert (file_id is None) == (name == "anthropic")
        info = await endpoint.create(path, file_id, shard_id="shard_cassette", model=model)
        assert not info.state.terminal  # OpenAI counts nothing while validating
        while not (info.state.terminal and info.results_ready):
            await asyncio.sleep(30 if REAL else 0)
            info = await endpoint.poll(info.id)
        assert info.state is BatchState.COMPLETED and info.succeeded == 3
        items = [item async for item in endpoint.results(info)]
    finally:
        await provider.aclose()
    assert sorted(i.custom_id for i in items) == sorted(r.key for r in requests)
    for item in items:
        assert item.error is None and item.completion is not None
        Capital.model_validate_json(item.completion.content)
        assert item.completion.usage.input_tokens > 0
    assert vcr.all_played or vcr.record_mode != "none"  # strict on replay


@pytest.mark.vcr
async def test_anthropic_answers_say_what_is_left_and_when_to_ask_again(
    vcr: Any, tmp_path: Path
) -> None:
    """Rate-limit headers on a message; ``retry-after`` on a poll of a batch in progress.

    Recorded against ``lexibatch emulator --port 18766`` started with
    ``--config '{"batch_seconds": 30, "poll_retry_after": 10}'`` (the real API
    sends ``retry-after: 10`` while a batch runs).
    """
    from providers.anthropic import AnthropicProvider

    provider = _anthropic(tmp_path)
    assert isinstance(provider, AnthropicProvider)
    endpoint = provider.batch
    requests = [_request(c, ANTHROPIC_MODEL) for c in ("Cairo", "Quito")]
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b"".join(endpoint.encode(r, r.key) + b"\n" for r in requests))
    try:
        completion = await provider.complete(_request("Accra", ANTHROPIC_MODEL))
        assert completion.rate_limit is not None
        assert completion.rate_limit.remaining_requests is not None
        assert completion.rate_limit.requests_reset_at is not None
        info = await endpoint.create(path, None, shard_id="shard_wait", model=ANTHROPIC_MODEL)
        polled = await endpoint.poll(info.id)
        assert polled.state is BatchState.IN_PROGRESS
        assert polled.retry_after is not None and polled.retry_after > 0
        cancelled = await endpoint.cancel(info.id)
        assert cancelled.state in (BatchState.CANCELLING, BatchState.CANCELLED)
    finally:
        await provider.aclose()
    assert vcr.all_played or vcr.record_mode != "none"  # strict on replay
