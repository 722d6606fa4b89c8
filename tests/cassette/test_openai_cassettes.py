"""Recorded-cassette tests: a full OpenAI batch cycle and an immediate call, replayed strictly.

Cassettes live in ``cassettes/test_openai_cassettes/``. They were recorded
against the emulator (``--record-mode=once`` with an emulator serving on
``RECORD_URL``, started with ``--api-key sk-cassette-dummy``, so that any
other key is refused); with ``LEXIBATCH_CASSETTE_TARGET=real`` and a real
``OPENAI_API_KEY`` they are recorded against the real API instead. Replay
fails if any recorded interaction is left unplayed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from providers.openai import OpenAIProvider
from providers.types import BatchState, Message, Request

RECORD_URL = "http://127.0.0.1:18765/v1"
REAL = os.environ.get("LEXIBATCH_CASSETTE_TARGET") == "real"
CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"


class Capital(BaseModel):
    """The answer's shape."""

    city: str
    country: str


def _provider() -> OpenAIProvider:
    if REAL:
        return OpenAIProvider(api_key=os.environ["OPENAI_API_KEY"])
    return OpenAIProvider(api_key="sk-cassette-dummy", base_url=RECORD_URL)


def _request(city: str) -> Request:
    return Request(
        model="gpt-4o-mini",
        messages=(Message("user", f"Which country is {city} the capital of?"),),
        response_model=Capital,
        max_tokens=50,
    )


@pytest.mark.vcr
async def test_immediate_structured_call(vcr: Any) -> None:
    provider = _provider()
    try:
        completion = await provider.complete(_request("Lisbon"))
    finally:
        await provider.aclose()
    answer = Capital.model_validate_json(completion.content)
    assert answer.city and answer.country
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0
    assert vcr.all_played or vcr.record_mode != "none"  # strict on replay


@pytest.mark.vcr
async def test_full_batch_cycle(vcr: Any, tmp_path: Path) -> None:
    import asyncio

    provider = _provider()
    endpoint = provider.batch
    requests = [_request(c) for c in ("Paris", "Rome", "Oslo")]
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b"".join(endpoint.encode(r, r.key) + b"\n" for r in requests))
    try:
        file_id = await endpoint.upload(path, shard_id="shard_cassette")
        info = await endpoint.create(path, file_id, shard_id="shard_cassette", model="gpt-4o-mini")
        assert info.id.startswith("batch_") and info.state is BatchState.VALIDATING
        while not (info.state.terminal and info.results_ready):
            await asyncio.sleep(0 if not REAL else 30)
            info = await endpoint.poll(info.id)
        assert info.state is BatchState.COMPLETED and info.succeeded == 3
        items = [item async for item in endpoint.results(info)]
    finally:
        await provider.aclose()
    assert sorted(i.custom_id for i in items) == sorted(r.key for r in requests)
    for item in items:
        assert item.error is None and item.completion is not None
        Capital.model_validate_json(item.completion.content)
    assert vcr.all_played or vcr.record_mode != "none"  # strict on replay


@pytest.mark.vcr
async def test_batch_files_are_deleted_once_collected(vcr: Any, tmp_path: Path) -> None:
    import asyncio

    import openai

    provider = _provider()
    endpoint = provider.batch
    requests = [_request(c) for c in ("Vienna", "Lima")]
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b"".join(endpoint.encode(r, r.key) + b"\n" for r in requests))
    try:
        file_id = await endpoint.upload(path, shard_id="shard_files")
        info = await endpoint.create(path, file_id, shard_id="shard_files", model="gpt-4o-mini")
        assert info.model is None  # not known while validating
        while not (info.state.terminal and info.results_ready):
            await asyncio.sleep(0 if not REAL else 30)
            info = await endpoint.poll(info.id)
        assert info.model is not None and info.model.startswith("gpt-4o-mini")
        assert info.usage is not None and info.usage.input_tokens > 0
        items = [item async for item in endpoint.results(info)]
        assert len(items) == 2
        files = endpoint.batch_files(info)
        assert files[0] == file_id and len(files) == 2  # input and output
        assert [await endpoint.delete_file(f) for f in files] == [True, True]
        # Deleting again is not an error: the file is gone.
        assert await endpoint.delete_file(file_id) is False
        with pytest.raises(openai.NotFoundError):
            await provider._client.files.retrieve(file_id)
    finally:
        await provider.aclose()
    assert vcr.all_played or vcr.record_mode != "none"  # strict on replay


@pytest.mark.vcr
async def test_a_wrong_key_is_refused(vcr: Any) -> None:
    from providers.errors import AuthenticationError

    if REAL:
        provider = OpenAIProvider(api_key="sk-cassette-wrong-key-000000")
    else:
        provider = OpenAIProvider(api_key="sk-cassette-wrong", base_url=RECORD_URL)
    try:
        with pytest.raises(AuthenticationError) as info:
            await provider.complete(_request("Bern"))
    finally:
        await provider.aclose()
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    assert vcr.all_played or vcr.record_mode != "none"  # strict on replay


def test_no_cassette_holds_a_real_key() -> None:
    import re

    pattern = re.compile(
        rb"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|Bearer [A-Za-z0-9._-]{20,}|AIza[0-9A-Za-z_-]{35}"
    )
    files = list(CASSETTES.rglob("*.yaml"))
    assert files, "no cassettes found"
    for file in files:
        data = file.read_bytes()
        assert not pattern.search(data), f"{file} holds something that looks like an API key"
        assert b"authorization" not in data.lower().replace(b"www-authorization", b"")
        assert b"x-goog-api-key" not in data.lower()
