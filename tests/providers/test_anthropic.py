"""The Anthropic adapter against hand-built HTTP answers shaped like the real API's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from pydantic import BaseModel

from providers.anthropic import (
    AnthropicProvider,
    batch_info_from_dict,
    build_body,
    completion_from_message,
    item_result_from_line,
)
from providers.errors import (
    AuthenticationError,
    BatchCancelledError,
    BatchExpiredError,
    BatchInDoubtError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    UnusableAnswerError,
)
from providers.protocol import BatchEndpoint, Provider
from providers.types import BatchState, JournaledShard, Message, Request, Usage

API_KEY = "sk-ant-test-DO-NOT-LEAK-0123456789"

# The objects and lines below are copied from recorded real Anthropic traffic.
NATIVE_OUTPUT_MESSAGE = {
    "content": [
        {
            "text": '{"city":"London","country":"United Kingdom","population":9002488}',
            "type": "text",
        }
    ],
    "id": "msg_01Hfgh959WDWjL5jkM2FQXTL",
    "model": "claude-sonnet-4-5-20250929",
    "role": "assistant",
    "stop_details": None,
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "type": "message",
    "usage": {
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "inference_geo": "not_available",
        "input_tokens": 196,
        "output_tokens": 19,
        "service_tier": "standard",
    },
}

TOOL_OUTPUT_MESSAGE = {
    "content": [
        {
            "id": "toolu_01LZABsgreMefH2Go8D5PQbW",
            "input": {"city": "Mexico City", "country": "Mexico"},
            "name": "final_result",
            "type": "tool_use",
        }
    ],
    "id": "msg_01K4Fzcf1bhiyLzHpwLdrefj",
    "model": "claude-sonnet-4-5-20250929",
    "role": "assistant",
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "type": "message",
    "usage": {
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "input_tokens": 497,
        "output_tokens": 56,
        "service_tier": "standard",
    },
}

SUCCEEDED_LINE = (
    '{"custom_id":"1","result":{"type":"succeeded","message":{"id":"msg_01DyTJNYKDoDJJAcDddDvsgV",'
    '"type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":'
    '[{"type":"text","text":"Sushi is a Japanese dish."}],"stop_reason":"end_turn",'
    '"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,'
    '"cache_read_input_tokens":0,"output_tokens":259}}}}'
)

THINKING_LINE = (
    '{"custom_id":"0","result":{"type":"succeeded","message":{"id":"msg_011vwwBeSsEscYvT2NNVgDQu",'
    '"type":"message","role":"assistant","model":"claude-3-7-sonnet-20250219","content":'
    '[{"type":"thinking","thinking":"Let\'s think step by step.","signature":"EqQB"},'
    '{"type":"text","text":"The proof follows."}],"stop_reason":"end_turn","stop_sequence":null,'
    '"usage":{"input_tokens":151,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
    '"output_tokens":5000}}}}'
)

BATCH_CREATED = {
    "id": "msgbatch_01MxdL3LT4Dizo9t3j6FY9Ap",
    "type": "message_batch",
    "processing_status": "in_progress",
    "request_counts": {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
    "ended_at": None,
    "created_at": "2025-01-12T05:59:14.154311+00:00",
    "expires_at": "2025-01-13T05:59:14.154311+00:00",
    "archived_at": None,
    "cancel_initiated_at": None,
    "results_url": None,
}

BATCH_ENDED = {
    **BATCH_CREATED,
    "processing_status": "ended",
    "request_counts": {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0},
    "ended_at": "2025-01-12T05:59:59.064695+00:00",
    "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_01MxdL3LT4Dizo9t3j6FY9Ap/results",
}

BATCH_CANCELING = {
    "id": "msgbatch_015Myz5Wcm1Ua9o4n8qaw5zt",
    "type": "message_batch",
    "processing_status": "canceling",
    "request_counts": {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
    "ended_at": None,
    "created_at": "2025-04-11T17:18:57.044758+00:00",
    "expires_at": "2025-04-12T17:18:57.044758+00:00",
    "archived_at": None,
    "cancel_initiated_at": "2025-04-11T17:18:57.342817+00:00",
    "results_url": None,
}


class City(BaseModel):
    """A test schema."""

    city: str
    country: str
    population: int


def _request(**kw: Any) -> Request:
    base: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "messages": (Message("system", "Be terse."), Message("user", "Tell me about London")),
        "response_model": City,
    }
    base.update(kw)
    return Request(**base)


Handler = Callable[[httpx2.Request], httpx2.Response]


def _provider(handler: Handler, tmp_path: Path, **kw: Any) -> AnthropicProvider:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return AnthropicProvider(
        api_key=API_KEY,
        base_url="https://api.anthropic.test",
        http_client=client,
        state_dir=tmp_path / "state",
        **kw,
    )


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, content=orjson.dumps(data), headers=headers or {})


# ---------------------------------------------------------------- bodies


def test_body_native_output_hoists_system_and_sets_output_config() -> None:
    body = build_body(_request())
    assert body["system"] == "Be terse."
    assert body["messages"] == [{"role": "user", "content": "Tell me about London"}]
    assert body["max_tokens"] == 1024
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["required"] == ["city", "country", "population"]
    assert fmt["schema"]["additionalProperties"] is False
    assert "tools" not in body and "tool_choice" not in body


def test_body_tool_mode_forces_one_tool() -> None:
    body = build_body(_request(max_tokens=300, temperature=0.2), structured_output="tool")
    assert body["tool_choice"] == {"type": "tool", "name": "City"}
    (tool,) = body["tools"]
    assert tool["name"] == "City"
    assert tool["input_schema"]["properties"]["population"] == {
        "title": "Population",
        "type": "integer",
    }
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0.2
    assert "output_config" not in body


def test_body_without_schema_multiple_systems_and_extras() -> None:
    request = Request(
        model="claude-haiku-4-5",
        messages=(
            Message("system", "one"),
            Message("user", "hi"),
            Message("system", "two"),
            Message("assistant", "hello"),
        ),
        extras={"top_k": 5},
    )
    body = build_body(request, default_max_tokens=77)
    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 77,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ],
        "system": "one\n\ntwo",
        "top_k": 5,
    }


def test_unsupported_schema_constraints_move_into_description() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "required": ["n"],
        "additionalProperties": False,
    }
    request = Request(model="m", messages=(Message("user", "x"),), json_schema=schema)
    out = build_body(request)["output_config"]["format"]["schema"]
    assert "minimum" not in out["properties"]["n"]
    assert "minimum: 1" in out["properties"]["n"]["description"]
    assert schema["properties"]["n"]["minimum"] == 1  # the request's schema is untouched


# ---------------------------------------------------------------- answers


def test_native_output_message_parses() -> None:
    c = completion_from_message(NATIVE_OUTPUT_MESSAGE)
    assert City.model_validate_json(c.content).population == 9002488
    assert c.usage.input_tokens == 196 and c.usage.output_tokens == 19
    assert c.model == "claude-sonnet-4-5-20250929"
    assert c.finish_reason == "end_turn"
    assert c.request_id == "msg_01Hfgh959WDWjL5jkM2FQXTL"


def test_tool_output_message_parses_input_as_json() -> None:
    c = completion_from_message(TOOL_OUTPUT_MESSAGE)
    assert orjson.loads(c.content) == {"city": "Mexico City", "country": "Mexico"}
    assert c.finish_reason == "tool_use"
    assert c.usage.input_tokens == 497


def test_cache_tokens_are_recorded() -> None:
    message = {
        **NATIVE_OUTPUT_MESSAGE,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 2,
            "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 40,
        },
    }
    usage = completion_from_message(message).usage
    assert (usage.cached_tokens, usage.cache_creation_tokens) == (900, 40)


def test_answers_with_the_same_token_counts_share_one_usage() -> None:
    def usage_of(counts: dict[str, Any]) -> Any:
        return completion_from_message({**NATIVE_OUTPUT_MESSAGE, "usage": counts}).usage

    counts = {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": 900,
        "cache_creation": {"ephemeral_1h_input_tokens": 30, "ephemeral_5m_input_tokens": 10},
    }
    first, second = usage_of(counts), usage_of(dict(counts))
    assert first is second
    assert first == Usage(950, 2, 900, 0, 40, 30)
    other = usage_of({**counts, "output_tokens": 3})
    assert other is not first and other.output_tokens == 3


def test_a_refusal_is_a_completion_that_keeps_its_billed_usage() -> None:
    # Billed like any answer: raising here would keep its tokens out of the ledger.
    message = {**NATIVE_OUTPUT_MESSAGE, "stop_reason": "refusal", "content": []}
    refused = completion_from_message(message)
    assert refused.refusal == "stop reason 'refusal'"
    assert refused.usage == completion_from_message(NATIVE_OUTPUT_MESSAGE).usage
    assert refused.usage.output_tokens > 0
    said = {**message, "content": [{"type": "text", "text": "I can't help with that."}]}
    assert completion_from_message(said).refusal == "I can't help with that."
    assert completion_from_message(NATIVE_OUTPUT_MESSAGE).refusal is None


# ---------------------------------------------------------------- batch result lines


def test_succeeded_line() -> None:
    item = item_result_from_line(SUCCEEDED_LINE)
    assert item.custom_id == "1" and item.error is None
    assert item.completion is not None
    assert item.completion.content == "Sushi is a Japanese dish."
    assert item.completion.usage.output_tokens == 259
    assert item.completion.request_id == "msg_01DyTJNYKDoDJJAcDddDvsgV"


def test_thinking_blocks_are_skipped() -> None:
    item = item_result_from_line(THINKING_LINE)
    assert item.completion is not None
    assert item.completion.content == "The proof follows."


@pytest.mark.parametrize(
    ("kind", "cls", "retryable"),
    [
        ("invalid_request_error", InvalidRequestError, False),
        ("authentication_error", AuthenticationError, False),
        ("rate_limit_error", RateLimitError, True),
        ("api_error", ServerError, True),
        ("overloaded_error", ServerError, True),
    ],
)
def test_errored_line(kind: str, cls: type[ProviderError], retryable: bool) -> None:
    line = orjson.dumps(
        {
            "custom_id": "lb-x",
            "result": {
                "type": "errored",
                "error": {"type": "error", "error": {"type": kind, "message": "went wrong"}},
            },
        }
    )
    item = item_result_from_line(line)
    assert item.completion is None
    assert type(item.error) is cls
    assert item.error.retryable is retryable
    assert item.error.code == kind
    assert item.error.message == "went wrong"


def test_canceled_and_expired_lines() -> None:
    canceled = item_result_from_line(b'{"custom_id":"a","result":{"type":"canceled"}}')
    expired = item_result_from_line(b'{"custom_id":"b","result":{"type":"expired"}}')
    assert isinstance(canceled.error, BatchCancelledError) and canceled.error.retryable
    assert isinstance(expired.error, BatchExpiredError) and expired.error.retryable


def test_a_refused_item_is_billed_then_fails_as_refused() -> None:
    from plugins.batch.answers import judge_items
    from plugins.batch.promise import BatchPromise, BatchRequest

    message = {**NATIVE_OUTPUT_MESSAGE, "stop_reason": "refusal"}
    line = orjson.dumps({"custom_id": "r", "result": {"type": "succeeded", "message": message}})
    item = item_result_from_line(line)
    assert item.error is None and item.completion is not None and item.completion.refusal
    pending = BatchRequest("r", "claude", "task", None, None, BatchPromise("r"))
    judged = judge_items(
        [item],
        waiting={"r": pending},
        stubs={},
        done=set(),
        billed=set(),
        costs=lambda model, usage, mode: (0.5, 1.0),
        provider="anthropic",
        batch_id="msgbatch_1",
        now=1.0,
        cancelled=lambda error: error,
    )
    [(failed, error)] = judged.failed
    assert failed is pending and isinstance(error, InvalidRequestError)
    assert error.code == "refusal"
    [call] = judged.calls
    assert (call.key, call.cost_usd, call.usage) == ("r", 0.5, item.completion.usage)


# ---------------------------------------------------------------- batch states


def test_poll_state_mapping() -> None:
    created = batch_info_from_dict(BATCH_CREATED)
    assert created.state is BatchState.IN_PROGRESS
    assert (created.total, created.succeeded, created.failed) == (3, 0, 0)
    assert not created.results_ready

    canceling = batch_info_from_dict(BATCH_CANCELING)
    assert canceling.state is BatchState.CANCELLING and not canceling.results_ready

    ended = batch_info_from_dict(BATCH_ENDED)
    assert ended.state is BatchState.COMPLETED and ended.results_ready
    assert (ended.total, ended.succeeded, ended.failed) == (3, 3, 0)

    cancelled = batch_info_from_dict(
        {
            **BATCH_ENDED,
            "cancel_initiated_at": "2025-01-12T05:59:20+00:00",
            "request_counts": {
                "processing": 0,
                "succeeded": 1,
                "errored": 0,
                "canceled": 2,
                "expired": 0,
            },
        }
    )
    assert cancelled.state is BatchState.CANCELLED
    assert (cancelled.succeeded, cancelled.failed) == (1, 2)

    expired = batch_info_from_dict(
        {
            **BATCH_ENDED,
            "request_counts": {
                "processing": 0,
                "succeeded": 1,
                "errored": 1,
                "canceled": 0,
                "expired": 4,
            },
        }
    )
    assert expired.state is BatchState.EXPIRED
    assert (expired.total, expired.succeeded, expired.failed) == (6, 1, 5)
    assert expired.results_ready


def test_ended_without_results_url_is_not_ready() -> None:
    info = batch_info_from_dict({**BATCH_ENDED, "results_url": None})
    assert info.state.terminal and not info.results_ready


# ---------------------------------------------------------------- HTTP: immediate


def test_satisfies_protocols(tmp_path: Path) -> None:
    provider = _provider(lambda r: _json(200, {}), tmp_path)
    assert isinstance(provider, Provider)
    assert isinstance(provider.batch, BatchEndpoint)
    limits = provider.batch.limits
    assert (limits.max_requests, limits.max_bytes, limits.mixed_models) == (
        100_000,
        256 * 1024 * 1024,
        True,
    )


async def test_complete_sends_body_and_reads_answer(tmp_path: Path) -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return _json(200, NATIVE_OUTPUT_MESSAGE, {"request-id": "req_011CTest"})

    provider = _provider(handler, tmp_path)
    completion = await provider.complete(_request())
    (sent,) = seen
    assert sent.url.path == "/v1/messages"
    # SDK 2.x sends the key as a bearer token; older ones (and the recordings) use x-api-key.
    assert API_KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert sent.headers["anthropic-version"]
    assert orjson.loads(sent.content) == provider.build_body(_request())
    assert completion.request_id == "req_011CTest"
    assert City.model_validate_json(completion.content).city == "London"
    await provider.aclose()


async def test_complete_tool_mode(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = orjson.loads(request.content)
        assert body["tool_choice"] == {"type": "tool", "name": "City"}
        return _json(200, TOOL_OUTPUT_MESSAGE)

    provider = _provider(handler, tmp_path, structured_output="tool")
    completion = await provider.complete(_request())
    assert orjson.loads(completion.content)["city"] == "Mexico City"


def _error(kind: str, message: str = "nope") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (400, "invalid_request_error", InvalidRequestError),
        (401, "authentication_error", AuthenticationError),
        (404, "not_found_error", InvalidRequestError),
        (429, "rate_limit_error", RateLimitError),
        (500, "api_error", ServerError),
        (529, "overloaded_error", ServerError),
    ],
)
async def test_status_errors_are_translated(
    tmp_path: Path, status: int, kind: str, cls: type[ProviderError]
) -> None:
    headers = {"request-id": "req_1", "retry-after": "7"}
    provider = _provider(lambda r: _json(status, _error(kind, f"bad {API_KEY}"), headers), tmp_path)
    with pytest.raises(cls) as info:
        await provider.complete(_request())
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.code == kind
    assert err.retry_after == 7.0
    assert err.headers["request-id"] == "req_1"
    assert API_KEY not in str(err)
    assert err.provider == "anthropic"


async def test_timeout_and_connection_errors(tmp_path: Path) -> None:
    def timeout(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    def refused(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    with pytest.raises(ProviderTimeoutError):
        await _provider(timeout, tmp_path).complete(_request())
    with pytest.raises(ProviderConnectionError) as info:
        await _provider(refused, tmp_path).complete(_request())
    assert not isinstance(info.value, ProviderTimeoutError)
    assert info.value.retryable


# ---------------------------------------------------------------- HTTP: batches


def _write_shard(provider: AnthropicProvider, path: Path, n: int) -> list[str]:
    ids = [f"lb-{i:04d}" for i in range(n)]
    lines = [
        provider.batch.encode(_request(messages=(Message("user", f"word {i}"),)), cid)
        for i, cid in enumerate(ids)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return ids


async def test_encode_is_custom_id_and_params(tmp_path: Path) -> None:
    provider = _provider(lambda r: _json(200, {}), tmp_path)
    line = provider.batch.encode(_request(), "lb-abc")
    data = orjson.loads(line)
    assert data == {"custom_id": "lb-abc", "params": provider.build_body(_request())}
    assert b"\n" not in line


async def test_create_sends_entries_inline(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.method == "POST" and request.url.path == "/v1/messages/batches"
        seen.append(request.content)
        return _json(200, BATCH_CREATED)

    provider = _provider(handler, tmp_path)
    shard = tmp_path / "shard.jsonl"
    ids = _write_shard(provider, shard, 3)
    assert await provider.batch.upload(shard, shard_id="s1") is None
    info = await provider.batch.create(shard, None, shard_id="s1", model="claude-sonnet-4-5")
    assert info.id == "msgbatch_01MxdL3LT4Dizo9t3j6FY9Ap"
    assert info.state is BatchState.IN_PROGRESS
    sent = orjson.loads(seen[0])
    assert [r["custom_id"] for r in sent["requests"]] == ids
    assert sent["requests"][0]["params"]["messages"] == [{"role": "user", "content": "word 0"}]
    # The journal is the store's: create leaves no record of its own.
    assert not (tmp_path / "state").exists()


async def test_results_stream_every_type(tmp_path: Path) -> None:
    lines = [
        SUCCEEDED_LINE,
        '{"custom_id":"2","result":{"type":"errored","error":{"type":"error","error":'
        '{"type":"invalid_request_error","message":"max_tokens: too large"}}}}',
        '{"custom_id":"3","result":{"type":"canceled"}}',
        '{"custom_id":"4","result":{"type":"expired"}}',
    ]
    payload = ("\n".join(lines) + "\n").encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path.endswith("/results")
        return httpx2.Response(200, stream=httpx2.ByteStream(payload))

    provider = _provider(handler, tmp_path)
    items = [item async for item in provider.batch.results(batch_info_from_dict(BATCH_ENDED))]
    assert [i.custom_id for i in items] == ["1", "2", "3", "4"]
    assert items[0].completion is not None
    assert isinstance(items[1].error, InvalidRequestError)
    assert isinstance(items[2].error, BatchCancelledError)
    assert isinstance(items[3].error, BatchExpiredError)


async def test_an_unreadable_results_line_never_stops_the_paid_lines_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def other(custom_id: str) -> str:
        return SUCCEEDED_LINE.replace('"custom_id":"1"', f'"custom_id":"{custom_id}"')

    broken = [
        '{"custom_id":"5","result":"succeeded"}',
        '{"custom_id":"6","result":{"type":"succeeded","message":[1]}}',
        '{"custom_id":"7","result":{"type":"succeeded","message":{"content":"abc"}}}',
        '{"custom_id":"8","result":{"type":"errored","error":"boom"}}',
    ]
    lines = [SUCCEEDED_LINE, other("2")[:40], "[1, 2]", *broken, other("3")]
    assert '"custom_id":"1"' in SUCCEEDED_LINE
    payload = ("\n".join(lines) + "\n").encode()

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=httpx2.ByteStream(payload))

    provider = _provider(handler, tmp_path)
    items = [item async for item in provider.batch.results(batch_info_from_dict(BATCH_ENDED))]
    by_id = {i.custom_id: i for i in items}
    assert [i.custom_id for i in items] == ["1", "5", "6", "7", "8", "3"]
    assert by_id["1"].completion is not None and by_id["3"].completion is not None
    # A line whose id is readable ends its request, not sent again: it may be billed.
    for key in ("5", "6", "7", "8"):
        error = by_id[key].error
        assert isinstance(error, UnusableAnswerError) and not error.retryable, key
        assert "could not be read" in str(error) and "not sent again" in str(error)
    skipped = [r for r in caplog.records if "skipping a malformed line" in r.getMessage()]
    assert len(skipped) == 2  # the two lines that name no id


async def test_results_before_end_is_a_clear_error(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return _json(404, _error("not_found_error", "results not available yet"))

    provider = _provider(handler, tmp_path)
    batch = batch_info_from_dict(BATCH_CREATED)
    assert not batch.results_ready
    with pytest.raises(ProviderError) as info:
        [item async for item in provider.batch.results(batch)]
    assert "not available yet" in str(info.value)
    assert info.value.code == "results_not_ready"


async def test_poll_and_cancel(tmp_path: Path) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/cancel"):
            assert request.method == "POST"
            return _json(200, BATCH_CANCELING)
        return _json(200, BATCH_ENDED)

    provider = _provider(handler, tmp_path)
    polled = await provider.batch.poll("msgbatch_01MxdL3LT4Dizo9t3j6FY9Ap")
    assert polled.state is BatchState.COMPLETED and polled.results_ready
    cancelled = await provider.batch.cancel("msgbatch_015Myz5Wcm1Ua9o4n8qaw5zt")
    assert cancelled.state is BatchState.CANCELLING


def _listed(batch_id: str, created_at: str, total: int) -> dict[str, Any]:
    return {
        **BATCH_CREATED,
        "id": batch_id,
        "created_at": created_at,
        "request_counts": {
            "processing": total,
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
    }


async def _crash_after_send(tmp_path: Path, shard_id: str) -> None:
    """Run create() against a server that takes the batch but never answers."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("lost", request=request)

    provider = _provider(handler, tmp_path)
    shard = tmp_path / f"{shard_id}.jsonl"
    _write_shard(provider, shard, 3)
    with pytest.raises(ProviderTimeoutError):
        await provider.batch.create(shard, None, shard_id=shard_id, model="m")


async def test_find_after_lost_answer_matches_count_and_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    await _crash_after_send(tmp_path, "s9")
    now = datetime.now(UTC).isoformat()
    page = {
        "data": [
            _listed("msgbatch_other_size", now, 5),
            _listed("msgbatch_ours", now, 3),
            _listed("msgbatch_old", "2020-01-01T00:00:00+00:00", 3),
        ],
        "has_more": False,
        "first_id": "msgbatch_other_size",
        "last_id": "msgbatch_old",
    }
    provider = _provider(lambda r: _json(200, page), tmp_path)
    found = await provider.batch.find(JournaledShard("s9", 3, sent_at=time.time()))
    assert found is not None and found.id == "msgbatch_ours"
    assert await provider.batch.find(JournaledShard("never-created")) is None


async def test_find_is_none_when_ambiguous(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    await _crash_after_send(tmp_path, "s10")
    now = datetime.now(UTC).isoformat()
    page = {
        "data": [_listed("msgbatch_a", now, 3), _listed("msgbatch_b", now, 3)],
        "has_more": False,
    }
    provider = _provider(lambda r: _json(200, page), tmp_path)
    assert await provider.batch.find(JournaledShard("s10", 3, sent_at=time.time())) is None


async def test_two_unfinished_candidates_of_known_keys_are_in_doubt_not_none(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    page = {
        "data": [_listed("msgbatch_a", now, 3), _listed("msgbatch_b", now, 3)],
        "has_more": False,
    }
    provider = _provider(lambda r: _json(200, page), tmp_path)
    shard = JournaledShard("s10b", 3, keys=("lb-a", "lb-b", "lb-c"), sent_at=time.time())
    # None would create the shard's batch again: one of the two may be it.
    with pytest.raises(BatchInDoubtError, match="2 unfinished batches of 3 requests") as doubt:
        await provider.batch.find(shard)
    assert doubt.value.code == "batch_in_doubt" and "msgbatch_a, msgbatch_b" in str(doubt.value)


async def test_an_ended_candidate_carrying_the_shards_keys_wins_over_an_unfinished_one(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    ours = {**_listed("msgbatch_ours", now, 3), "processing_status": "ended"}
    ours["results_url"] = "https://api.anthropic.com/v1/messages/batches/msgbatch_ours/results"
    page = {"data": [_listed("msgbatch_theirs", now, 3), ours], "has_more": False}

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/results"):
            line = b'{"custom_id":"lb-b","result":{"type":"canceled"}}\n'
            return httpx2.Response(200, stream=httpx2.ByteStream(line))
        return _json(200, page)

    shard = JournaledShard("s10c", 3, keys=("lb-a", "lb-b", "lb-c"), sent_at=time.time())
    found = await _provider(handler, tmp_path).batch.find(shard)
    assert found is not None and found.id == "msgbatch_ours"


async def test_a_create_in_doubt_for_a_week_is_still_found(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    await _crash_after_send(tmp_path, "s11")
    week = time.time() - 8 * 86_400  # journaled eight days ago, sent at last...
    await _crash_after_send(tmp_path, "s12")  # ...after another shard's create
    now = datetime.now(UTC).isoformat()
    page = {"data": [_listed("msgbatch_ours", now, 3)], "has_more": False}
    provider = _provider(lambda r: _json(200, page), tmp_path)
    shard = JournaledShard("s11", 3, journaled_at=week, sent_at=time.time())
    found = await provider.batch.find(shard)
    assert found is not None and found.id == "msgbatch_ours"
    # Not sent yet as far as the journal knows: any batch since it was journaled counts.
    found = await provider.batch.find(JournaledShard("s11", 3, journaled_at=week))
    assert found is not None and found.id == "msgbatch_ours"


async def test_find_on_a_list_that_does_not_page_is_an_error_not_none(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    await _crash_after_send(tmp_path, "s13")
    now = datetime.now(UTC).isoformat()
    page = {"data": [_listed("msgbatch_other", now, 7)], "has_more": True, "last_id": "x"}
    calls: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        return _json(200, page)

    with pytest.raises(ProviderError, match="does not page past x"):
        await _provider(handler, tmp_path).batch.find(JournaledShard("s13", 3, sent_at=time.time()))
    assert len(calls) == 2


def _old_record(tmp_path: Path, shard_id: str, **fields: Any) -> None:
    """A shard record as an earlier version wrote it (``state_dir/<shard>.json``)."""
    record = {
        "shard_id": shard_id,
        "count": 3,
        "first_custom_id": "lb-0000",
        "last_custom_id": "lb-0002",
        "sent_at": time.time(),
        "batch_id": None,
    }
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / f"{shard_id}.json").write_bytes(orjson.dumps({**record, **fields}))


async def test_an_old_record_naming_its_batch_is_honoured(tmp_path: Path) -> None:
    _old_record(tmp_path, "s20", batch_id="msgbatch_01MxdL3LT4Dizo9t3j6FY9Ap")
    asked: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        asked.append(request.url.path)
        return _json(200, BATCH_CREATED)

    # The journal knows nothing of when it was sent: the record does.
    found = await _provider(handler, tmp_path).batch.find(JournaledShard("s20"))
    assert found is not None and found.id == "msgbatch_01MxdL3LT4Dizo9t3j6FY9Ap"
    assert asked == ["/v1/messages/batches/msgbatch_01MxdL3LT4Dizo9t3j6FY9Ap"]


async def test_an_old_record_of_a_lost_answer_gives_its_size_and_send_time(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    _old_record(tmp_path, "s21", count=4)
    now = datetime.now(UTC).isoformat()
    four = _listed("msgbatch_four", now, 4)
    page = {"data": [_listed("msgbatch_three", now, 3), four], "has_more": False}
    provider = _provider(lambda r: _json(200, page), tmp_path)
    # Of its size and time, unfinished: it is the shard's once its results show its keys.
    with pytest.raises(BatchInDoubtError, match="msgbatch_four"):
        await provider.batch.find(JournaledShard("s21"))
    page["data"][1] = {**four, "processing_status": "ended"}
    page["data"][1]["results_url"] = "https://api.anthropic.com/v1/messages/batches/four/results"

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/results"):
            line = b'{"custom_id":"lb-0002","result":{"type":"canceled"}}\n'
            return httpx2.Response(200, stream=httpx2.ByteStream(line))
        return _json(200, page)

    provider = _provider(handler, tmp_path)
    found = await provider.batch.find(JournaledShard("s21"))
    assert found is not None and found.id == "msgbatch_four"
    # A record of another shard, copied under this shard's name, is not taken.
    (tmp_path / "state" / "s22.json").write_bytes((tmp_path / "state" / "s21.json").read_bytes())
    assert await provider.batch.find(JournaledShard("s22")) is None


async def test_an_ended_candidate_must_carry_one_of_the_shards_keys(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    theirs = {**_listed("msgbatch_theirs", now, 3), "processing_status": "ended"}
    theirs["results_url"] = "https://api.anthropic.com/v1/messages/batches/msgbatch_theirs/results"
    ours = _listed("msgbatch_ours", now, 3)
    page = {"data": [theirs, ours], "has_more": False}

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/results"):
            line = b'{"custom_id":"lb-not-ours","result":{"type":"canceled"}}\n'
            return httpx2.Response(200, stream=httpx2.ByteStream(line))
        return _json(200, page)

    shard = JournaledShard("s23", 3, keys=("lb-a", "lb-b", "lb-c"), sent_at=time.time())
    # Theirs ended and does not carry the shard's keys; ours has not ended: it may be
    # another's too (the shard's create may never have arrived), so the shard waits.
    with pytest.raises(BatchInDoubtError, match="an unfinished batch of 3 requests"):
        await _provider(handler, tmp_path).batch.find(shard)
    # Without keys the two cannot be told apart.
    assert (
        await _provider(handler, tmp_path).batch.find(JournaledShard("s23", 3, sent_at=time.time()))
        is None
    )


async def test_a_batch_the_journal_gives_another_shard_is_never_found(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    page = {
        "data": [_listed("msgbatch_other_shard", now, 3), _listed("msgbatch_ours", now, 3)],
        "has_more": False,
    }
    provider = _provider(lambda r: _json(200, page), tmp_path)
    both = JournaledShard("s24", 3, sent_at=time.time())
    assert await provider.batch.find(both) is None  # ambiguous: two of its size
    known = JournaledShard("s24", 3, sent_at=time.time(), taken=frozenset({"msgbatch_other_shard"}))
    found = await provider.batch.find(known)
    assert found is not None and found.id == "msgbatch_ours"
    only_taken = {"data": [_listed("msgbatch_other_shard", now, 3)], "has_more": False}
    provider = _provider(lambda r: _json(200, only_taken), tmp_path)
    assert await provider.batch.find(known) is None
