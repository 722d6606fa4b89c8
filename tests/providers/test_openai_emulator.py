"""The OpenAI adapter end to end against the in-process emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel

from providers.emulator import Emulator, EmulatorConfig
from providers.errors import (
    BatchExpiredError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from providers.openai import OpenAIProvider
from providers.pricing import PriceTable
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


@pytest.fixture
async def openai_provider(emulator: Emulator) -> AsyncIterator[OpenAIProvider]:
    emulator.reset()
    emulator.configure(
        output_file_missing_polls=0, rate_limit=0.0, server_error=0.0, batch_seconds=0.0
    )
    p = OpenAIProvider(api_key="sk-emulator", base_url=emulator.base_url + "/v1", timeout=30)
    yield p
    await p.aclose()


def _requests(n: int, model: str = "gpt-4o-mini") -> list[Request]:
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


async def _write(p: OpenAIProvider, requests: list[Request], path: Path) -> Path:
    with path.open("wb") as fh:
        for request in requests:
            fh.write(p.batch.encode(request, request.key) + b"\n")
    return path


async def _wait(p: OpenAIProvider, batch_id: str, polls: int = 200) -> tuple[BatchInfo, int]:
    for count in range(1, polls + 1):
        info = await p.batch.poll(batch_id)
        if info.results_ready:
            return info, count
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never became ready")


async def _run_batch(
    p: OpenAIProvider, requests: list[Request], tmp_path: Path, shard: str
) -> tuple[BatchInfo, dict[str, ItemResult]]:
    path = await _write(p, requests, tmp_path / f"{shard}.jsonl")
    file_id = await p.batch.upload(path, shard_id=shard)
    created = await p.batch.create(path, file_id, shard_id=shard, model=requests[0].model)
    assert created.id.startswith("batch_")
    info, _ = await _wait(p, created.id)
    results = {item.custom_id: item async for item in p.batch.results(info)}
    return info, results


async def test_immediate_structured_call(openai_provider: OpenAIProvider) -> None:
    request = _requests(1)[0]
    completion = await openai_provider.complete(request)
    Sense.model_validate_json(completion.content)
    assert completion.usage.input_tokens > 0
    assert completion.usage.output_tokens > 0
    assert completion.request_id
    assert completion.finish_reason == "stop"
    assert completion.model.startswith("gpt-4o-mini")
    assert PriceTable.load().cost(completion.model, completion.usage, "immediate") is not None


async def test_immediate_responses_api(emulator: Emulator) -> None:
    emulator.reset()
    p = OpenAIProvider(
        api_key="sk-emulator", base_url=emulator.base_url + "/v1", api="responses", timeout=30
    )
    try:
        completion = await p.complete(_requests(1)[0])
    finally:
        await p.aclose()
    Sense.model_validate_json(completion.content)
    assert completion.usage.output_tokens > 0


async def test_full_batch_cycle(
    emulator: Emulator, openai_provider: OpenAIProvider, tmp_path: Path
) -> None:
    requests = _requests(25)
    info, results = await _run_batch(openai_provider, requests, tmp_path, "shard-full")
    billing = emulator.billing()
    assert billing["batch"]["requests"] == 25
    assert billing["immediate"]["requests"] == 0
    assert billing["duplicates"] == 0
    assert info.state is BatchState.COMPLETED
    assert (info.total, info.succeeded, info.failed) == (25, 25, 0)
    assert set(results) == {r.key for r in requests}
    for item in results.values():
        assert item.error is None
        assert item.completion is not None
        Sense.model_validate_json(item.completion.content)
        assert item.completion.usage.input_tokens > 0
    found = await openai_provider.batch.find(JournaledShard("shard-full"))
    assert found is not None
    assert found.id == info.id
    assert await openai_provider.batch.find(JournaledShard("shard-never-created")) is None


@pytest.mark.parametrize("one_piece", [True, False], ids=["from-memory", "streamed"])
async def test_upload_sends_the_file_byte_for_byte(
    openai_provider: OpenAIProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    one_piece: bool,
) -> None:
    import providers.openai as openai_module

    # Small files go in one piece from memory, large ones stream from disk.
    monkeypatch.setattr(openai_module, "_UPLOAD_IN_ONE_PIECE", 1 << 30 if one_piece else 0)
    path = await _write(openai_provider, _requests(300), tmp_path / "up.jsonl")
    assert path.stat().st_size > 3 * 65536  # more than a few streamed parts
    file_id = await openai_provider.batch.upload(path, shard_id="up")
    assert file_id is not None
    sent = await openai_provider._client.files.content(file_id)
    assert sent.content == path.read_bytes()


async def test_batch_line_equals_immediate_body_on_the_wire(
    openai_provider: OpenAIProvider, tmp_path: Path
) -> None:
    request = _requests(1)[0]
    immediate = await openai_provider.complete(request)
    _, results = await _run_batch(openai_provider, [request], tmp_path, "shard-same")
    batched = results[request.key].completion
    assert batched is not None
    # The emulator answers deterministically from the body, so equal bodies give equal answers.
    assert orjson.loads(batched.content) == orjson.loads(immediate.content)


async def test_output_file_missing_for_a_while(
    emulator: Emulator, openai_provider: OpenAIProvider, tmp_path: Path
) -> None:
    emulator.configure(output_file_missing_polls=3)
    requests = _requests(3)
    path = await _write(openai_provider, requests, tmp_path / "late.jsonl")
    file_id = await openai_provider.batch.upload(path, shard_id="late")
    created = await openai_provider.batch.create(
        path, file_id, shard_id="late", model="gpt-4o-mini"
    )
    seen_completed_without_file = False
    for _ in range(50):
        info = await openai_provider.batch.poll(created.id)
        if info.state is BatchState.COMPLETED and info.output_file_id is None:
            seen_completed_without_file = True
            assert not info.results_ready
        if info.results_ready:
            break
    assert seen_completed_without_file
    assert info.results_ready
    assert len([item async for item in openai_provider.batch.results(info)]) == 3


async def test_item_errors_come_from_the_error_file(
    openai_provider: OpenAIProvider, tmp_path: Path
) -> None:
    requests = _requests(6, model="gpt-4o-mini@item-error")
    info, results = await _run_batch(openai_provider, requests, tmp_path, "shard-errors")
    assert info.error_file_id is not None
    assert set(results) == {r.key for r in requests}
    errors = [item.error for item in results.values() if item.error is not None]
    assert errors
    assert all(isinstance(e, ProviderError) for e in errors)


async def test_expired_batch_keeps_finished_items(
    openai_provider: OpenAIProvider, tmp_path: Path
) -> None:
    requests = _requests(10, model="gpt-4o-mini@expire")
    info, results = await _run_batch(openai_provider, requests, tmp_path, "shard-expire")
    assert info.state is BatchState.EXPIRED
    expired = [i for i in results.values() if isinstance(i.error, BatchExpiredError)]
    done = [i for i in results.values() if i.completion is not None]
    assert expired
    assert len(expired) + len(done) == len(results)


async def test_failed_batch_reports_errors(openai_provider: OpenAIProvider, tmp_path: Path) -> None:
    requests = _requests(2, model="gpt-4o-mini@fail-batch")
    info, results = await _run_batch(openai_provider, requests, tmp_path, "shard-fail")
    assert info.state is BatchState.FAILED
    assert info.errors
    assert results == {}


async def test_cancel(emulator: Emulator, openai_provider: OpenAIProvider, tmp_path: Path) -> None:
    emulator.configure(batch_seconds=60.0)
    requests = _requests(3)
    path = await _write(openai_provider, requests, tmp_path / "cancel.jsonl")
    file_id = await openai_provider.batch.upload(path, shard_id="cancel")
    created = await openai_provider.batch.create(path, file_id, shard_id="cancel", model="m")
    cancelled = await openai_provider.batch.cancel(created.id)
    assert cancelled.state in (BatchState.CANCELLING, BatchState.CANCELLED)
    info = await openai_provider.batch.poll(created.id)
    assert info.id == created.id
    assert info.state in (BatchState.CANCELLING, BatchState.CANCELLED)
    assert info.results_ready is (info.state is BatchState.CANCELLED)


async def test_rate_limit_and_server_errors_are_typed(
    emulator: Emulator, openai_provider: OpenAIProvider
) -> None:
    emulator.configure(rate_limit=1.0, retry_after=0.25)
    with pytest.raises(RateLimitError) as info:
        await openai_provider.complete(_requests(1)[0])
    assert info.value.retry_after == 0.25
    emulator.configure(rate_limit=0.0, server_error=1.0)
    with pytest.raises(ServerError):
        await openai_provider.complete(_requests(1)[0])
