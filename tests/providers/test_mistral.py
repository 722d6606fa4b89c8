"""The Mistral provider: bodies, answers and result lines as the real API writes them, jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from pydantic import BaseModel

from providers.emulator import Emulator
from providers.errors import AuthenticationError, RateLimitError, ServerError
from providers.mistral import MistralProvider, build_body
from providers.openai import parse_result_line
from providers.types import BatchState, JournaledShard, Message, Request

MODEL = "mistral-small-latest"


class Summary(BaseModel):
    """The answer's shape."""

    title: str
    author: str


def _request(text: str = "Apples are tasty, by Hadley Wickham", **kw: Any) -> Request:
    return Request(model=MODEL, messages=(Message("user", text),), response_model=Summary, **kw)


def test_body_asks_for_a_strict_json_schema() -> None:
    body = build_body(_request(max_tokens=100, temperature=0.1))
    assert body["model"] == MODEL and body["messages"] == [
        {"role": "user", "content": "Apples are tasty, by Hadley Wickham"}
    ]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "Summary"
    assert body["max_tokens"] == 100 and body["temperature"] == 0.1
    assert "model" not in build_body(_request(), model=False)  # a batch line: the job's model


def test_a_real_output_line_is_read() -> None:
    # A line of the official cookbook's saved output (id: custom_id + uuid).
    line = (
        b'{"id":"1-18219f09-acff-4644-baec-a73b15788364","custom_id":"1","response":'
        b'{"status_code":200,"body":{"id":"aaee50ed69384fe9ae8e9fe9c4bc0c55","object":'
        b'"chat.completion","model":"pixtral-large-latest","usage":{"prompt_tokens":2080,'
        b'"completion_tokens":86,"total_tokens":2166},"created":1732400354,"choices":[{"index":0,'
        b'"finish_reason":"stop","message":{"role":"assistant","content":"{\\"items\\": []}",'
        b'"tool_calls":null}}]}},"error":null}'
    )
    item = parse_result_line(line, "mistral")
    assert item.custom_id == "1" and item.completion is not None
    assert orjson.loads(item.completion.content) == {"items": []}
    assert item.completion.usage.input_tokens == 2080
    assert item.completion.usage.output_tokens == 86


def _failing(status: int, body: dict[str, Any]) -> httpx2.AsyncClient:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            429,
            {"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited"},
            RateLimitError,
        ),
        (
            500,
            {"object": "error", "message": "Internal server error", "type": "internal"},
            ServerError,
        ),
        (401, {"message": "Unauthorized", "request_id": "abc"}, AuthenticationError),
    ],
)
async def test_errors_are_translated_and_never_show_the_key(
    status: int, body: dict[str, Any], kind: type
) -> None:
    key = "mistral-secret-key-0123456789"
    body = {**body, "message": f"{body['message']} ({key})"}
    provider = MistralProvider(
        api_key=key, base_url="http://mistral.test", http_client=_failing(status, body)
    )
    try:
        with pytest.raises(kind) as caught:
            await provider.complete(_request())
    finally:
        await provider.aclose()
    assert key not in str(caught.value) and caught.value.status_code == status


async def test_immediate_call_against_the_emulator(fresh_emulator: Emulator) -> None:
    provider = MistralProvider(api_key="k", base_url=fresh_emulator.base_url + "/mistral")
    try:
        completion = await provider.complete(_request())
    finally:
        await provider.aclose()
    Summary.model_validate_json(completion.content)
    assert len(completion.request_id or "") == 32 and completion.finish_reason == "stop"
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0


async def test_job_cycle_and_find_by_metadata(fresh_emulator: Emulator, tmp_path: Path) -> None:
    provider = MistralProvider(api_key="k", base_url=fresh_emulator.base_url + "/mistral")
    endpoint = provider.batch
    requests = [_request(f"Article {i}") for i in range(3)]
    path = tmp_path / "shard.jsonl"
    path.write_bytes(b"".join(endpoint.encode(r, r.key) + b"\n" for r in requests))
    try:
        file_id = await endpoint.upload(path, shard_id="shard_m1")
        assert file_id
        assert await endpoint.find(JournaledShard("shard_m1")) is None
        created = await endpoint.create(path, file_id, shard_id="shard_m1", model=MODEL)
        assert created.state is BatchState.VALIDATING
        found = await endpoint.find(JournaledShard("shard_m1"))
        assert found is not None and found.id == created.id
        info = await endpoint.poll(created.id)
        assert info.state is BatchState.COMPLETED and info.results_ready
        assert (info.total, info.succeeded, info.failed) == (3, 3, 0)
        items = [item async for item in endpoint.results(info)]
    finally:
        await provider.aclose()
    assert sorted(i.custom_id for i in items) == sorted(r.key for r in requests)
    assert all(
        i.completion is not None and Summary.model_validate_json(i.completion.content)
        for i in items
    )
    assert fresh_emulator.billing()["batch"]["requests"] == 3


async def test_item_errors_and_a_cancelled_job(fresh_emulator: Emulator, tmp_path: Path) -> None:
    provider = MistralProvider(api_key="k", base_url=fresh_emulator.base_url + "/mistral")
    endpoint = provider.batch
    request = _request()
    path = tmp_path / "shard.jsonl"
    path.write_bytes(endpoint.encode(request, "k1") + b"\n")
    try:
        file_id = await endpoint.upload(path, shard_id="s")
        bad = await endpoint.create(path, file_id, shard_id="s", model=f"{MODEL}@item-error")
        info = await endpoint.poll(bad.id)
        assert info.results_ready and info.failed == 1 and info.error_file_id
        (item,) = [item async for item in endpoint.results(info)]
        assert item.custom_id == "k1" and item.error is not None and item.error.retryable
        fresh_emulator.configure(batch_seconds=60)
        running = await endpoint.create(path, file_id, shard_id="s2", model=MODEL)
        cancelling = await endpoint.cancel(running.id)
        assert cancelling.state is BatchState.CANCELLING
    finally:
        await provider.aclose()


async def test_an_ended_job_missing_its_error_file_is_read_without_it_after_the_grace(
    fresh_emulator: Emulator, tmp_path: Path
) -> None:
    # A job that ended with a failed request and no error file would be polled forever.
    provider = MistralProvider(api_key="k", base_url=fresh_emulator.base_url + "/mistral")
    path = tmp_path / "shard.jsonl"
    path.write_bytes(provider.batch.encode(_request(), "k1") + b"\n")
    try:
        file_id = await provider.batch.upload(path, shard_id="s")
        created = await provider.batch.create(path, file_id, shard_id="s", model=MODEL)
        ended = await provider.batch.poll(created.id)
    finally:
        await provider.aclose()
    assert ended.results_ready and ended.output_file_id
    job = {**ended.raw, "failed_requests": 1, "total_requests": 2, "error_file": None}

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=job)

    def over(grace: float) -> MistralProvider:
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
        return MistralProvider(api_key="k", http_client=client, file_grace=grace)

    patient, hasty = over(3600), over(0)
    try:
        for _ in range(2):
            info = await patient.batch.poll(created.id)
            assert info.state is BatchState.COMPLETED and not info.results_ready
        info = await hasty.batch.poll(created.id)
        assert info.results_ready and info.error_file_id is None and info.failed == 1
        # Answers paid for are waited for past the grace: a missing output file.
        job["output_file"] = None
        assert not (await hasty.batch.poll(created.id)).results_ready
        assert not (await hasty.batch.poll(created.id)).results_ready
    finally:
        await patient.aclose()
        await hasty.aclose()
