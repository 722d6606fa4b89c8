"""The Anthropic adapter end to end against the in-process emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from providers.anthropic import AnthropicProvider
from providers.emulator import Emulator, EmulatorConfig
from providers.errors import (
    BatchCancelledError,
    BatchExpiredError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from providers.types import BatchInfo, BatchState, ItemResult, JournaledShard, Message, Request


class Sense(BaseModel):
    """One meaning of a word."""

    definition: str
    synonyms: list[str]
    level: int


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig()) as emu:
        yield emu


@pytest.fixture(params=["json_schema", "tool"])
async def provider(
    request: pytest.FixtureRequest, emulator: Emulator, tmp_path: Path
) -> AsyncIterator[AnthropicProvider]:
    emulator.reset()
    emulator.configure(rate_limit=0.0, server_error=0.0, batch_seconds=0.0)
    p = AnthropicProvider(
        api_key="sk-ant-emulator",
        base_url=emulator.base_url,
        structured_output=request.param,
        timeout=30,
        state_dir=tmp_path / "state",
    )
    yield p
    await p.aclose()


def _requests(n: int, model: str = "claude-haiku-4-5") -> list[Request]:
    return [
        Request(
            model=model,
            messages=(
                Message("system", "You write dictionary entries."),
                Message("user", f"Define word number {i}."),
            ),
            response_model=Sense,
            max_tokens=300,
        )
        for i in range(n)
    ]


def _write(provider: AnthropicProvider, requests: list[Request], path: Path) -> None:
    path.write_bytes(b"\n".join(provider.batch.encode(r, r.key) for r in requests) + b"\n")


async def _run_batch(
    provider: AnthropicProvider, requests: list[Request], path: Path, shard_id: str = "shard-1"
) -> tuple[BatchInfo, list[ItemResult]]:
    endpoint = provider.batch
    _write(provider, requests, path)
    assert await endpoint.upload(path, shard_id=shard_id) is None
    info = await endpoint.create(path, None, shard_id=shard_id, model=requests[0].model)
    for _ in range(200):
        if info.state.terminal and info.results_ready:
            break
        await asyncio.sleep(0.01)
        info = await endpoint.poll(info.id)
    assert info.results_ready
    return info, [item async for item in endpoint.results(info)]


async def test_immediate_structured_call(provider: AnthropicProvider) -> None:
    (request,) = _requests(1)
    completion = await provider.complete(request)
    sense = Sense.model_validate_json(completion.content)
    assert isinstance(sense.level, int)
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0
    assert completion.request_id


async def test_full_batch_cycle(provider: AnthropicProvider, tmp_path: Path) -> None:
    requests = _requests(25)
    info, items = await _run_batch(provider, requests, tmp_path / "shard.jsonl")
    assert info.state is BatchState.COMPLETED
    assert info.id.startswith("msgbatch_")
    assert (info.total, info.succeeded, info.failed) == (25, 25, 0)
    assert {i.custom_id for i in items} == {r.key for r in requests}
    for item in items:
        assert item.completion is not None, item.error
        Sense.model_validate_json(item.completion.content)
    # Re-attaching after the fact finds the same batch, told apart by its keys.
    keys = tuple(r.key for r in requests)
    shard = JournaledShard("shard-1", 25, keys=keys, sent_at=time.time() - 5)
    found = await provider.batch.find(shard)
    assert found is not None and found.id == info.id


async def test_find_by_listing_after_a_lost_answer(
    emulator: Emulator, provider: AnthropicProvider, tmp_path: Path
) -> None:
    requests = _requests(4)
    sent = time.time()
    info, _ = await _run_batch(provider, requests, tmp_path / "shard.jsonl", "lost-1")
    # A fresh process that never heard the answer knows what the journal knows.
    fresh = AnthropicProvider(api_key="k", base_url=emulator.base_url, state_dir=tmp_path / "state")
    shard = JournaledShard("lost-1", 4, keys=tuple(r.key for r in requests), sent_at=sent)
    found = await fresh.batch.find(shard)
    await fresh.aclose()
    assert found is not None and found.id == info.id


async def test_item_errors_and_expiry(
    emulator: Emulator, provider: AnthropicProvider, tmp_path: Path
) -> None:
    _, items = await _run_batch(
        provider, _requests(6, model="claude-haiku-4-5@item-error"), tmp_path / "a.jsonl", "a"
    )
    assert items and all(isinstance(i.error, ProviderError) for i in items)
    info, items = await _run_batch(
        provider, _requests(6, model="claude-haiku-4-5@expire"), tmp_path / "b.jsonl", "b"
    )
    assert info.state is BatchState.EXPIRED
    assert any(isinstance(i.error, BatchExpiredError) for i in items)
    info, items = await _run_batch(
        provider, _requests(6, model="claude-haiku-4-5@cancel"), tmp_path / "c.jsonl", "c"
    )
    assert info.state is BatchState.CANCELLED
    assert any(isinstance(i.error, BatchCancelledError) for i in items)


async def test_cancel_and_results_before_end(
    emulator: Emulator, provider: AnthropicProvider, tmp_path: Path
) -> None:
    emulator.configure(batch_seconds=60.0)
    path = tmp_path / "slow.jsonl"
    _write(provider, _requests(3), path)
    info = await provider.batch.create(path, None, shard_id="slow", model="claude-haiku-4-5")
    assert info.state is BatchState.IN_PROGRESS and not info.results_ready
    with pytest.raises(ProviderError) as raised:
        [item async for item in provider.batch.results(info)]
    assert raised.value.code == "results_not_ready"
    cancelled = await provider.batch.cancel(info.id)
    assert cancelled.state in (BatchState.CANCELLING, BatchState.CANCELLED)


async def test_faults_are_translated(emulator: Emulator, provider: AnthropicProvider) -> None:
    (request,) = _requests(1, model="claude-haiku-4-5@rate-limit")
    with pytest.raises(RateLimitError) as info:
        await provider.complete(request)
    assert info.value.retry_after is not None
    (request,) = _requests(1, model="claude-haiku-4-5@server-error")
    with pytest.raises(ServerError):
        await provider.complete(request)
