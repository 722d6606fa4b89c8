"""The Gemini provider: bodies, answers read as the real API writes them, errors, batches.

The answer and batch shapes below are the ones in the real recordings
(``generateContent`` with ``responseJsonSchema``, a finished file batch with
``batchStats`` as strings, result lines ``{"response", "key"}``, thinking
tokens); the batch cycle runs against the emulator in both input modes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from pydantic import BaseModel

from providers.emulator import Emulator, EmulatorConfig
from providers.errors import (
    AuthenticationError,
    InvalidRequestError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
    UnusableAnswerError,
    is_key_refused,
)
from providers.gemini import (
    GeminiProvider,
    batch_info,
    build_body,
    completion_from_response,
    item_result,
)
from providers.types import BatchState, JournaledShard, Message, Request

MODEL = "gemini-2.5-flash"


class City(BaseModel):
    """The answer's shape."""

    city: str
    country: str


def _request(text: str = "Largest city in Mexico?", **kw: Any) -> Request:
    return Request(
        model=MODEL,
        messages=(Message("system", "Be brief."), Message("user", text)),
        response_model=City,
        **kw,
    )


def test_body_asks_for_json_with_the_schema() -> None:
    body = build_body(_request(max_tokens=64, temperature=0.2))
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Largest city in Mexico?"}]}]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    config = body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"].keys() == {"city", "country"}
    assert config["maxOutputTokens"] == 64 and config["temperature"] == 0.2
    turns = build_body(
        Request(model=MODEL, messages=(Message("user", "a"), Message("assistant", "b")))
    )
    assert [c["role"] for c in turns["contents"]] == ["user", "model"]
    assert "generationConfig" not in turns


def test_generation_settings_given_as_extras_join_the_schemas() -> None:
    extras = {"generationConfig": {"topP": 0.5, "temperature": 1.5}, "safetySettings": []}
    config = build_body(_request(temperature=0.2, extras=extras))["generationConfig"]
    assert config["topP"] == 0.5 and config["temperature"] == 0.2  # the request's own wins
    assert config["responseMimeType"] == "application/json" and "responseJsonSchema" in config
    plain = Request(model=MODEL, messages=(Message("user", "a"),), extras=extras)
    assert build_body(plain)["generationConfig"] == {"topP": 0.5, "temperature": 1.5}


def test_answer_read_as_the_real_api_writes_it() -> None:
    # From a real generateContent answer (pydantic-ai's recording), plus a
    # thinking model's usage (ellmer's saved batch).
    response = {
        "candidates": [
            {
                "content": {"parts": [{"text": '{\n  "city": "Mexico City"\n}'}], "role": "model"},
                "finishReason": "STOP",
                "avgLogprobs": -4.7e-05,
            }
        ],
        "modelVersion": "gemini-2.0-flash",
        "responseId": "EfsgaZT5JPbXz7IPqtGJkQ8",
        "usageMetadata": {
            "candidatesTokenCount": 20,
            "promptTokenCount": 8,
            "thoughtsTokenCount": 62,
            "totalTokenCount": 90,
        },
    }
    completion = completion_from_response(response)
    assert completion.content == '{\n  "city": "Mexico City"\n}'
    assert completion.usage.input_tokens == 8
    # Thinking is billed as output: it is counted there, and as reasoning.
    assert completion.usage.output_tokens == 82 and completion.usage.reasoning_tokens == 62
    assert completion.finish_reason == "stop" and completion.request_id == "EfsgaZT5JPbXz7IPqtGJkQ8"
    assert completion.refusal is None
    cut = completion_from_response({"candidates": [{"finishReason": "MAX_TOKENS"}]})
    assert cut.finish_reason == "length"
    refused = completion_from_response({"candidates": [{"finishReason": "SAFETY"}]})
    assert refused.refusal and "SAFETY" in refused.refusal
    blocked = completion_from_response({"promptFeedback": {"blockReason": "OTHER"}})
    assert blocked.refusal and "OTHER" in blocked.refusal


def test_batch_states_and_counts_from_real_objects() -> None:
    # The real create answer (chatlas) and finished file batch (DelphiGemini's guide).
    created = {
        "name": "batches/gpv3pjje0g931jdhnalwqk9sv4pbqgjlqhi9",
        "metadata": {
            "model": "models/gemini-3.5-flash",
            "batchStats": {"requestCount": "2", "pendingRequestCount": "2"},
            "state": "BATCH_STATE_PENDING",
        },
    }
    info = batch_info(created)
    assert info.id == "batches/gpv3pjje0g931jdhnalwqk9sv4pbqgjlqhi9"
    assert info.state is BatchState.VALIDATING and info.total == 2 and not info.results_ready
    done = {
        "name": "batches/leg9wy9p5df66syjxke2eq4xfjqcwp47ejv3",
        "metadata": {
            "displayName": "my batch name",
            "inputConfig": {"fileName": "files/frh6ua11nk3o"},
            "output": {"responsesFile": "files/batch-leg9wy9p5df66syjxke2eq4xfjqcwp47ejv3"},
            "batchStats": {"requestCount": "2", "successfulRequestCount": "2"},
            "state": "BATCH_STATE_SUCCEEDED",
        },
        "done": True,
        "response": {"responsesFile": "files/batch-leg9wy9p5df66syjxke2eq4xfjqcwp47ejv3"},
    }
    info = batch_info(done)
    assert info.state is BatchState.COMPLETED and info.results_ready
    assert (info.total, info.succeeded, info.failed) == (2, 2, 0)
    assert info.output_file_id == "files/batch-leg9wy9p5df66syjxke2eq4xfjqcwp47ejv3"
    assert info.input_file_id == "files/frh6ua11nk3o"
    expired = batch_info(
        {
            "name": "batches/x",
            "metadata": {"state": "BATCH_STATE_EXPIRED", "batchStats": {"requestCount": "5"}},
        }
    )
    # Nothing of an expired batch ran: every request failed with it.
    assert expired.state is BatchState.EXPIRED and expired.failed == 5 and expired.results_ready
    failed = batch_info(
        {
            "name": "batches/y",
            "metadata": {"state": "BATCH_STATE_FAILED"},
            "done": True,
            "error": {"code": 3, "message": "bad input file"},
        }
    )
    assert failed.state is BatchState.FAILED and failed.errors == ("bad input file",)
    for state, expected in [
        ("BATCH_STATE_RUNNING", BatchState.IN_PROGRESS),
        ("BATCH_STATE_CANCELLED", BatchState.CANCELLED),
    ]:
        assert batch_info({"name": "b", "metadata": {"state": state}}).state is expected


def test_result_lines_and_item_errors() -> None:
    ok = item_result(
        "request_1",
        {
            "response": {"candidates": [{"content": {"parts": [{"text": "{}"}]}}]},
            "key": "request_1",
        },
    )
    assert ok.completion is not None and ok.completion.content == "{}"
    for code, status, kind in [
        (429, "RESOURCE_EXHAUSTED", RateLimitError),
        (500, "INTERNAL", ServerError),
        (400, "INVALID_ARGUMENT", InvalidRequestError),
    ]:
        bad = item_result("k", {"error": {"code": code, "message": "m", "status": status}})
        assert isinstance(bad.error, kind) and bad.error.code == status


@pytest.mark.parametrize(
    "item",
    [
        {"response": {"candidates": "none"}},
        {"response": {"candidates": [{"content": "text"}]}},
        {"response": {"usageMetadata": "x", "candidates": [7]}},
    ],
)
def test_an_answer_that_cannot_be_read_ends_its_request_unretried(item: dict[str, Any]) -> None:
    # It may be paid for; raised, it would stop the batch's other answers being read.
    read = item_result("k", item)
    assert read.custom_id == "k" and read.completion is None
    assert isinstance(read.error, UnusableAnswerError) and not read.error.retryable
    assert "its answer could not be read" in str(read.error)


def _failing(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body, headers=headers)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "kind"), [(429, RateLimitError), (503, ServerError), (403, AuthenticationError)]
)
async def test_errors_are_translated_and_never_show_the_key(status: int, kind: type) -> None:
    key = "AIzaSyD-secret-key-0123456789"
    body = {
        "error": {
            "code": status,
            "message": f"refused for key {key}",
            "status": "X",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
        }
    }
    provider = GeminiProvider(
        api_key=key, base_url="http://gemini.test", http_client=_failing(status, body)
    )
    try:
        with pytest.raises(kind) as caught:
            await provider.complete(_request())
    finally:
        await provider.aclose()
    assert key not in str(caught.value) and caught.value.status_code == status
    if status == 429:
        assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    "message", ["API key not valid. Please pass a valid API key.", "API key expired."]
)
async def test_a_key_refused_with_a_400_is_a_refused_key(message: str) -> None:
    # Gemini's words for a bad key: a 400 INVALID_ARGUMENT whose reason is API_KEY_INVALID.
    body = {
        "error": {
            "code": 400,
            "message": message,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        }
    }
    provider = GeminiProvider(
        api_key="k-1234", base_url="http://gemini.test", http_client=_failing(400, body)
    )
    try:
        with pytest.raises(AuthenticationError) as caught:
            await provider.complete(_request())
    finally:
        await provider.aclose()
    assert is_key_refused(caught.value) and caught.value.status_code == 400
    assert message in str(caught.value)


async def test_another_400_is_not_a_refused_key() -> None:
    body = {"error": {"code": 400, "message": "Invalid JSON payload", "status": "INVALID_ARGUMENT"}}
    provider = GeminiProvider(
        api_key="k-1234", base_url="http://gemini.test", http_client=_failing(400, body)
    )
    try:
        with pytest.raises(InvalidRequestError) as caught:
            await provider.complete(_request())
    finally:
        await provider.aclose()
    assert not is_key_refused(caught.value)


async def test_an_unreachable_api_is_a_connection_error() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused")

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    provider = GeminiProvider(api_key="k-1234", base_url="http://gemini.test", http_client=client)
    try:
        with pytest.raises(ProviderConnectionError):
            await provider.complete(_request())
    finally:
        await provider.aclose()


@pytest.mark.parametrize("inline_max_bytes", [1 << 20, 0], ids=["inline", "file"])
async def test_batch_cycle_and_find_by_display_name(
    fresh_emulator: Emulator, tmp_path: Path, inline_max_bytes: int
) -> None:
    provider = GeminiProvider(
        api_key="k", base_url=fresh_emulator.base_url, inline_max_bytes=inline_max_bytes
    )
    endpoint = provider.batch
    requests = [_request(f"Capital {c}?") for c in ("Paris", "Rome", "Oslo")]
    path = tmp_path / "shard.jsonl"
    path.write_bytes(b"".join(endpoint.encode(r, r.key) + b"\n" for r in requests))
    try:
        file_id = await endpoint.upload(path, shard_id="shard_g1")
        assert (file_id is None) == bool(inline_max_bytes)
        assert await endpoint.find(JournaledShard("shard_g1")) is None
        created = await endpoint.create(path, file_id, shard_id="shard_g1", model=MODEL)
        # A run that never heard back finds its batch by display name.
        found = await endpoint.find(JournaledShard("shard_g1"))
        assert found is not None and found.id == created.id
        assert await endpoint.find(JournaledShard("shard_other")) is None
        info = await endpoint.poll(created.id)
        assert info.state is BatchState.COMPLETED and info.results_ready and info.succeeded == 3
        # The journal keeps info.raw: inline answers are not in it.
        assert b"candidates" not in orjson.dumps(info.raw)
        items = [item async for item in endpoint.results(info)]
        # Another process (a resumed run) reads the same results from the same info.
        other = GeminiProvider(api_key="k", base_url=fresh_emulator.base_url)
        try:
            again = [item async for item in other.batch.results(info)]
        finally:
            await other.aclose()
        assert sorted(i.custom_id for i in again) == sorted(i.custom_id for i in items)
    finally:
        await provider.aclose()
    assert sorted(i.custom_id for i in items) == sorted(r.key for r in requests)
    for item in items:
        assert item.completion is not None
        City.model_validate_json(item.completion.content)
    assert fresh_emulator.billing()["batch"]["requests"] == 3


def _left_by_an_ended_run(folder: Path) -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (folder / f"lexibatch-gemini-{ended.pid}-abcd1234.jsonl").write_bytes(b'{"key": "k0"}\n')


def _files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def test_a_results_file_is_read_from_a_scratch_file_left_nowhere(
    fresh_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download's file goes once read, and so does one a killed run left."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _left_by_an_ended_run(scratch)
    provider = GeminiProvider(api_key="k", base_url=fresh_emulator.base_url, inline_max_bytes=0)
    endpoint = provider.batch
    requests = [_request(f"Capital {c}?") for c in ("Paris", "Rome")]
    path = tmp_path / "shard.jsonl"
    path.write_bytes(b"".join(endpoint.encode(r, r.key) + b"\n" for r in requests))
    try:
        file_id = await endpoint.upload(path, shard_id="shard_s1")
        created = await endpoint.create(path, file_id, shard_id="shard_s1", model=MODEL)
        info = await endpoint.poll(created.id)
        assert info.output_file_id
        items = [item async for item in endpoint.results(info)]
    finally:
        await provider.aclose()
    assert sorted(i.custom_id for i in items) == sorted(r.key for r in requests)
    assert _files(scratch) == []


async def test_find_pages_back_to_the_journal_time_and_cancel(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(batch_seconds=60)) as emu:
        provider = GeminiProvider(api_key="k", base_url=emu.base_url)
        endpoint = provider.batch
        path = tmp_path / "shard.jsonl"
        path.write_bytes(endpoint.encode(_request(), "k1") + b"\n")
        try:
            first = await endpoint.create(path, None, shard_id="old", model=MODEL)
            for i in range(120):  # more than one page of the list
                await endpoint.create(path, None, shard_id=f"new{i}", model=MODEL)
            found = await endpoint.find(JournaledShard("old"))
            assert found is not None and found.id == first.id
            # A shard journaled after every listed batch was made has none of them.
            later = JournaledShard("old", journaled_at=time.time() + 3600)
            assert await endpoint.find(later) is None
            cancelled = await endpoint.cancel(first.id)
            assert cancelled.state in (BatchState.IN_PROGRESS, BatchState.CANCELLED)
        finally:
            await provider.aclose()
