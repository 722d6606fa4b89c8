"""The LiteLLM adapter end to end against the emulator's OpenAI endpoints."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from providers.emulator import Emulator, EmulatorConfig
from providers.errors import ProviderConnectionError, RateLimitError, ServerError
from providers.litellm import LiteLLMProvider
from providers.types import BatchState, JournaledShard, Message, Request

MODEL = "openai/gpt-4o-mini"


class Word(BaseModel):
    """A test schema."""

    word: str
    synonyms: list[str]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig()) as emu:
        yield emu


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection litellm might try beyond loopback (cost maps, telemetry)."""
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access to {address!r}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def provider(emulator: Emulator) -> LiteLLMProvider:
    emulator.reset()
    emulator.configure(rate_limit=0.0, server_error=0.0, batch_seconds=0.0)
    return LiteLLMProvider(
        api_key="sk-emulator", base_url=emulator.base_url + "/v1", model=MODEL, timeout=30
    )


def _requests(n: int, model: str = MODEL) -> list[Request]:
    return [
        Request(model=model, messages=(Message("user", f"word {i}"),), response_model=Word)
        for i in range(n)
    ]


async def test_immediate_call(provider: LiteLLMProvider) -> None:
    (request,) = _requests(1)
    completion = await provider.complete(request)
    Word.model_validate_json(completion.content)
    assert completion.usage.input_tokens > 0
    assert completion.request_id and completion.finish_reason == "stop"


async def test_faults_are_translated(provider: LiteLLMProvider) -> None:
    with pytest.raises(RateLimitError) as info:
        await provider.complete(_requests(1, MODEL + "@rate-limit")[0])
    assert info.value.retry_after is not None
    with pytest.raises(ServerError):
        await provider.complete(_requests(1, MODEL + "@server-error")[0])
    unreachable = LiteLLMProvider(api_key="k", base_url="http://127.0.0.1:1/v1", timeout=5)
    with pytest.raises(ProviderConnectionError):
        await unreachable.complete(_requests(1)[0])


def _write(lines: list[bytes], path: Path) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


async def test_full_batch_cycle(provider: LiteLLMProvider, tmp_path: Path) -> None:
    endpoint = provider.batch
    assert endpoint is not None
    requests = _requests(12)
    path = tmp_path / "shard.jsonl"
    _write([endpoint.encode(r, r.key) for r in requests], path)
    file_id = await endpoint.upload(path, shard_id="shard-7")
    assert file_id
    info = await endpoint.create(path, file_id, shard_id="shard-7", model=MODEL)
    found = await endpoint.find(JournaledShard("shard-7"))
    assert found is not None and found.id == info.id
    assert await endpoint.find(JournaledShard("no-such-shard")) is None
    for _ in range(200):
        if info.state.terminal and info.results_ready:
            break
        await asyncio.sleep(0.01)
        info = await endpoint.poll(info.id)
    assert info.state is BatchState.COMPLETED
    assert (info.total, info.succeeded, info.failed) == (12, 12, 0)
    items = [item async for item in endpoint.results(info)]
    assert {i.custom_id for i in items} == {r.key for r in requests}
    for item in items:
        assert item.completion is not None
        Word.model_validate_json(item.completion.content)


async def test_item_errors_and_cancel(
    emulator: Emulator, provider: LiteLLMProvider, tmp_path: Path
) -> None:
    endpoint = provider.batch
    assert endpoint is not None
    model = MODEL + "@item-error"
    requests = _requests(4, model)
    path = tmp_path / "errors.jsonl"
    _write([endpoint.encode(r, r.key) for r in requests], path)
    file_id = await endpoint.upload(path, shard_id="e")
    info = await endpoint.create(path, file_id, shard_id="e", model=model)
    while not (info.state.terminal and info.results_ready):
        await asyncio.sleep(0.01)
        info = await endpoint.poll(info.id)
    items = [item async for item in endpoint.results(info)]
    assert len(items) == 4 and all(i.error is not None for i in items)

    emulator.configure(batch_seconds=60.0)
    file_id = await endpoint.upload(path, shard_id="c")
    info = await endpoint.create(path, file_id, shard_id="c", model=model)
    cancelled = await endpoint.cancel(info.id)
    assert cancelled.state in (BatchState.CANCELLING, BatchState.CANCELLED)
