"""The OpenAI adapter against hand-built HTTP answers shaped like the real API's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from pydantic import BaseModel

from providers.errors import (
    AuthenticationError,
    BatchCancelledError,
    BatchExpiredError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    UnsupportedError,
)
from providers.openai import OpenAIProvider, batch_info, parse_result_line, refusal_error
from providers.protocol import BatchEndpoint, Provider
from providers.stop import StopReason
from providers.types import BatchState, Completion, JournaledShard, Message, Request

API_KEY = "sk-test-DO-NOT-LEAK-0123456789"

# Lines and objects below are copied from recorded real OpenAI traffic.
OUTPUT_LINE = (
    '{"id": "batch_req_6780bb36c8508190a5254f418acd5ed0", "custom_id": "0", "response": '
    '{"status_code": 200, "request_id": "ed3ad7feb8ad212a440ab12a1175798e", "body": '
    '{"id": "chatcmpl-Ao2bZUcX4NWHN7CDnc08E2pPhqQ0Q", "object": "chat.completion", '
    '"created": 1736489777, "model": "gpt-3.5-turbo-0125", "choices": [{"index": 0, '
    '"message": {"role": "assistant", "content": "Spaghetti is a type of pasta.", '
    '"refusal": null}, "logprobs": null, "finish_reason": "stop"}], "usage": '
    '{"prompt_tokens": 10, "completion_tokens": 72, "total_tokens": 82, '
    '"prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, '
    '"completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, '
    '"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}, '
    '"service_tier": "default", "system_fingerprint": null}}, "error": null}'
)

BATCH_COMPLETED = {
    "id": "batch_67da9f948d5481908986e92c9e212725",
    "object": "batch",
    "endpoint": "/v1/chat/completions",
    "errors": None,
    "input_file_id": "file-SghX2MuVCgie8XJ9YtxZDN",
    "completion_window": "24h",
    "status": "completed",
    "output_file_id": "file-E9eec6qqHBWrp6Xq2G8RMg",
    "error_file_id": None,
    "created_at": 1742380948,
    "in_progress_at": 1742380949,
    "expires_at": 1742467348,
    "finalizing_at": 1742380952,
    "completed_at": 1742380952,
    "failed_at": None,
    "expired_at": None,
    "cancelling_at": None,
    "cancelled_at": None,
    "request_counts": {"total": 3, "completed": 2, "failed": 1},
    "metadata": {"request_file": "requests_0.jsonl"},
}

BATCH_VALIDATING = {
    **BATCH_COMPLETED,
    "status": "validating",
    "output_file_id": None,
    "request_counts": {"total": 0, "completed": 0, "failed": 0},
    "completed_at": None,
}

CHAT_ANSWER = {
    "id": "chatcmpl-BSXjzYGu67dhTy5r8KmjJvQ4HhDVO",
    "object": "chat.completion",
    "created": 1746142583,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "logprobs": None,
            "message": {
                "annotations": [],
                "content": '{"city":"Mexico City","country":"Mexico"}',
                "refusal": None,
                "role": "assistant",
            },
        }
    ],
    "service_tier": "default",
    "system_fingerprint": "fp_f5bdcc3276",
    "usage": {
        "completion_tokens": 15,
        "completion_tokens_details": {
            "accepted_prediction_tokens": 0,
            "audio_tokens": 0,
            "reasoning_tokens": 4,
            "rejected_prediction_tokens": 0,
        },
        "prompt_tokens": 92,
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 64},
        "total_tokens": 107,
    },
}

RESPONSES_ANSWER = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "status": "completed",
    "model": "gpt-4o-2024-08-06",
    "output": [
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": '{"city":"Lima"}', "annotations": []}],
        }
    ],
    "usage": {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 12},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 123,
    },
}


class City(BaseModel):
    """A city and its country."""

    city: str
    country: str


def make_request(**kw: Any) -> Request:
    base: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": (Message("system", "Be brief."), Message("user", "Largest city in Peru?")),
        "response_model": City,
        "max_tokens": 200,
        "temperature": 0.2,
    }
    base.update(kw)
    return Request(**base)


Handler = Callable[[httpx2.Request], httpx2.Response]


def provider(handler: Handler, **kw: Any) -> OpenAIProvider:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return OpenAIProvider(api_key=API_KEY, http_client=client, **kw)


# ---------------------------------------------------------------- result lines


def test_output_line_from_real_cassette_parses() -> None:
    item = parse_result_line(OUTPUT_LINE.encode())
    assert item.custom_id == "0"
    assert item.error is None
    completion = item.completion
    assert completion is not None
    assert completion.content == "Spaghetti is a type of pasta."
    assert completion.model == "gpt-3.5-turbo-0125"
    assert completion.request_id == "ed3ad7feb8ad212a440ab12a1175798e"
    assert completion.finish_reason == "stop"
    assert completion.refusal is None
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (10, 72)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("batch_expired", BatchExpiredError),
        ("batch_cancelled", BatchCancelledError),
        ("request_timeout", ProviderTimeoutError),
    ],
)
def test_error_file_lines_map_to_typed_errors(code: str, cls: type[ProviderError]) -> None:
    line = (
        '{"id": "batch_req_123", "custom_id": "lb-abc", "response": null, '
        f'"error": {{"code": "{code}", "message": "This request could not be executed."}}}}'
    )
    item = parse_result_line(line)
    assert item.custom_id == "lb-abc"
    assert item.completion is None
    assert type(item.error) is cls
    assert item.error.code == code
    assert item.error.retryable
    assert "could not be executed" in item.error.message


def test_unknown_error_code_is_kept() -> None:
    line = (
        '{"id": "batch_req_1", "custom_id": "x", "response": null, '
        '"error": {"code": "server_overloaded", "message": "try later"}}'
    )
    item = parse_result_line(line)
    assert type(item.error) is ProviderError
    assert item.error.code == "server_overloaded"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, InvalidRequestError), (429, RateLimitError), (500, ServerError)],
)
def test_non_200_line_maps_by_status(status: int, cls: type[ProviderError]) -> None:
    line = {
        "id": "batch_req_2",
        "custom_id": "lb-x",
        "response": {
            "status_code": status,
            "request_id": "8f1d3c",
            "body": {
                "error": {
                    "message": "Invalid schema for response_format 'City'",
                    "type": "invalid_request_error",
                    "param": "response_format",
                    "code": "invalid_json_schema",
                }
            },
        },
        "error": None,
    }
    item = parse_result_line(json.dumps(line))
    assert type(item.error) is cls
    assert item.error.status_code == status
    assert item.error.code == "invalid_json_schema"
    assert item.error.message == "Invalid schema for response_format 'City'"


def test_responses_api_line_parses() -> None:
    line = {
        "id": "batch_req_3",
        "custom_id": "lb-r",
        "response": {"status_code": 200, "request_id": "abc", "body": RESPONSES_ANSWER},
        "error": None,
    }
    completion = parse_result_line(orjson.dumps(line)).completion
    assert completion is not None
    assert completion.content == '{"city":"Lima"}'
    assert completion.usage.input_tokens == 36
    assert completion.usage.cached_tokens == 12
    assert completion.usage.reasoning_tokens == 30
    assert completion.finish_reason == "completed"
    assert completion.stop_reason is StopReason.END


def test_line_without_custom_id_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_result_line(b'{"id": "batch_req_1"}')


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_batch_line_body_equals_immediate_body(api: str) -> None:
    sent: list[httpx2.Request] = []
    answer = CHAT_ANSWER if api == "chat" else RESPONSES_ANSWER

    def handler(req: httpx2.Request) -> httpx2.Response:
        sent.append(req)
        return httpx2.Response(200, json=answer, headers={"x-request-id": "req_1"})

    p = provider(handler, api=api)
    request = make_request(extras={"seed": 7, "service_tier": "default"})
    await p.complete(request)
    line = orjson.loads(p.batch.encode(request, request.key))
    assert orjson.loads(sent[0].content) == line["body"]
    assert sent[0].content == orjson.dumps(line["body"])
    url = "/v1/chat/completions" if api == "chat" else "/v1/responses"
    assert sent[0].url.path == url
    assert sent[0].headers["content-type"] == "application/json"
    assert sent[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert line["custom_id"] == request.key
    assert line["method"] == "POST"
    assert line["url"] == url
    body = line["body"]
    assert body["seed"] == 7
    assert body["temperature"] == 0.2
    if api == "chat":
        assert body["max_completion_tokens"] == 200
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "City"
        assert fmt["json_schema"]["strict"] is True
        assert fmt["json_schema"]["schema"]["additionalProperties"] is False
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        assert body["max_output_tokens"] == 200
        fmt = body["text"]["format"]
        assert (fmt["type"], fmt["name"], fmt["strict"]) == ("json_schema", "City", True)
        assert body["input"][1] == {"role": "user", "content": "Largest city in Peru?"}
    await p.aclose()


def test_no_schema_means_no_response_format() -> None:
    p = provider(lambda r: httpx2.Response(500))
    request = Request(model="gpt-4o-mini", messages=(Message("user", "hi"),))
    body = orjson.loads(p.batch.encode(request, "c1"))["body"]
    assert body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_raw_json_schema_is_sent_under_its_name() -> None:
    p = provider(lambda r: httpx2.Response(500))
    schema = {"type": "object", "properties": {}, "additionalProperties": False, "required": []}
    request = Request(
        model="gpt-4o-mini",
        messages=(Message("user", "hi"),),
        json_schema=schema,
        schema_name="Empty",
    )
    body = orjson.loads(p.batch.encode(request, "c1"))["body"]
    assert body["response_format"]["json_schema"] == {
        "name": "Empty",
        "schema": schema,
        "strict": True,
    }


# ---------------------------------------------------------------- immediate


async def test_complete_reads_usage_and_request_id() -> None:
    p = provider(
        lambda r: httpx2.Response(200, json=CHAT_ANSWER, headers={"x-request-id": "req_9"})
    )
    completion = await p.complete(make_request())
    assert completion.content == '{"city":"Mexico City","country":"Mexico"}'
    assert completion.usage.input_tokens == 92
    assert completion.usage.output_tokens == 15
    assert completion.usage.cached_tokens == 64
    assert completion.usage.reasoning_tokens == 4
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.request_id == "req_9"
    assert completion.finish_reason == "stop"


async def test_refusal_and_length_come_back() -> None:
    refused = json.loads(json.dumps(CHAT_ANSWER))
    refused["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    truncated = json.loads(json.dumps(CHAT_ANSWER))
    truncated["choices"][0]["message"]["content"] = '{"city":"Mex'
    truncated["choices"][0]["finish_reason"] = "length"
    answers = iter([refused, truncated])
    p = provider(lambda r: httpx2.Response(200, json=next(answers)))
    first = await p.complete(make_request())
    assert first.refusal == "I can't help with that."
    assert first.content == ""
    error = refusal_error(first)
    assert isinstance(error, InvalidRequestError)
    assert error.code == "refusal"
    second = await p.complete(make_request())
    assert second.finish_reason == "length"
    assert second.stop_reason is StopReason.MAX_TOKENS
    assert second.content == '{"city":"Mex'


async def test_responses_incomplete_is_a_length_finish() -> None:
    answer = {
        **RESPONSES_ANSWER,
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
    }
    p = provider(lambda r: httpx2.Response(200, json=answer), api="responses")
    completion = await p.complete(make_request())
    assert completion.finish_reason == "max_output_tokens"
    assert completion.stop_reason is StopReason.MAX_TOKENS
    assert completion.request_id == RESPONSES_ANSWER["id"]


def _error(status: int, message: str, code: str | None, **headers: str) -> Handler:
    def handler(req: httpx2.Request) -> httpx2.Response:
        body = {"error": {"message": message, "type": "x", "param": None, "code": code}}
        return httpx2.Response(status, json=body, headers=headers)

    return handler


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, InvalidRequestError, False),
        (401, AuthenticationError, False),
        (404, InvalidRequestError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (503, ServerError, True),
    ],
)
async def test_status_errors_are_translated(
    status: int, cls: type[ProviderError], retryable: bool
) -> None:
    p = provider(_error(status, f"failure {status}", "some_code", **{"retry-after": "12"}))
    with pytest.raises(cls) as info:
        await p.complete(make_request())
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.retryable is retryable
    assert error.code == "some_code"
    assert error.message == f"failure {status}"
    assert error.retry_after == 12.0
    assert error.body["error"]["message"] == f"failure {status}"
    assert error.provider == "openai"
    assert error.__cause__ is None


async def test_rate_limit_keeps_retry_after_ms() -> None:
    p = provider(
        _error(429, "Rate limit reached", "rate_limit_exceeded", **{"retry-after-ms": "1500"})
    )
    with pytest.raises(RateLimitError) as info:
        await p.complete(make_request())
    assert info.value.retry_after == 1.5
    assert info.value.headers["retry-after-ms"] == "1500"


async def test_api_key_never_in_error_message() -> None:
    p = provider(_error(401, f"Incorrect API key provided: {API_KEY}.", "invalid_api_key"))
    with pytest.raises(AuthenticationError) as info:
        await p.complete(make_request())
    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(info.value.to_dict())
    assert "***" in info.value.message


async def test_a_proxys_html_error_page_is_said_on_one_line_by_its_title() -> None:
    page = (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(502, text=page, headers={"content-type": "text/html"})

    with pytest.raises(ServerError) as info:
        await provider(handler).complete(make_request())
    assert info.value.message == "an HTML page: 502 Bad Gateway"
    assert "\n" not in str(info.value)


async def test_timeout_and_connection_errors() -> None:
    def timeout(req: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("read timed out", request=req)

    def refused(req: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"connection refused with key {API_KEY}", request=req)

    with pytest.raises(ProviderTimeoutError) as t_info:
        await provider(timeout).complete(make_request())
    assert t_info.value.retryable
    with pytest.raises(ProviderConnectionError) as c_info:
        await provider(refused).complete(make_request())
    assert type(c_info.value) is ProviderConnectionError
    assert c_info.value.retryable
    assert API_KEY not in str(c_info.value)
    assert "api.openai.com" in str(c_info.value)


def test_satisfies_the_protocols() -> None:
    p = provider(lambda r: httpx2.Response(500))
    assert isinstance(p, Provider)
    assert isinstance(p.batch, BatchEndpoint)
    assert p.batch.limits.max_requests == 50_000
    assert p.batch.limits.max_bytes == 200 * 1024 * 1024
    assert p.batch.limits.mixed_models is False


# ---------------------------------------------------------------- batch objects


def test_batch_info_from_real_objects() -> None:
    info = batch_info(BATCH_COMPLETED)
    assert info.state is BatchState.COMPLETED
    assert (info.total, info.succeeded, info.failed) == (3, 2, 1)
    assert info.input_file_id == "file-SghX2MuVCgie8XJ9YtxZDN"
    assert info.output_file_id == "file-E9eec6qqHBWrp6Xq2G8RMg"
    assert info.error_file_id is None
    # One item failed but its error file is not there yet.
    assert not info.results_ready
    early = batch_info(BATCH_VALIDATING)
    assert early.state is BatchState.VALIDATING
    assert not early.results_ready


@pytest.mark.parametrize(
    ("changes", "ready"),
    [
        (
            {"status": "in_progress", "request_counts": {"total": 3, "completed": 3, "failed": 0}},
            False,
        ),
        (
            {"status": "finalizing", "request_counts": {"total": 3, "completed": 3, "failed": 0}},
            False,
        ),
        (
            {"output_file_id": None, "request_counts": {"total": 3, "completed": 3, "failed": 0}},
            False,
        ),
        ({"request_counts": {"total": 3, "completed": 3, "failed": 0}}, True),
        ({"error_file_id": "file-err"}, True),
        (
            {
                "status": "failed",
                "output_file_id": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "errors": {
                    "object": "list",
                    "data": [
                        {"code": "invalid_json_line", "message": "bad", "param": None, "line": 2}
                    ],
                },
            },
            True,
        ),
        (
            {
                "status": "expired",
                "output_file_id": None,
                "error_file_id": "file-err",
                "request_counts": {"total": 3, "completed": 0, "failed": 3},
            },
            True,
        ),
        (
            {
                "status": "cancelled",
                "output_file_id": None,
                "request_counts": {"total": 3, "completed": 1, "failed": 0},
            },
            False,
        ),
    ],
)
def test_results_ready(changes: dict[str, Any], ready: bool) -> None:
    assert batch_info({**BATCH_COMPLETED, **changes}).results_ready is ready


def test_failed_batch_errors_are_flattened() -> None:
    raw = {
        **BATCH_VALIDATING,
        "status": "failed",
        "errors": {
            "object": "list",
            "data": [
                {
                    "code": "invalid_json_line",
                    "message": "This line is not JSON.",
                    "param": None,
                    "line": 2,
                },
                {
                    "code": "model_not_found",
                    "message": "No such model.",
                    "param": "body.model",
                    "line": None,
                },
            ],
        },
    }
    info = batch_info(raw)
    assert info.state is BatchState.FAILED
    assert info.results_ready
    assert info.errors == (
        "invalid_json_line: This line is not JSON. (line 2)",
        "model_not_found: No such model.",
    )


async def test_poll_waits_for_missing_file_then_gives_up_after_grace() -> None:
    objects = [BATCH_COMPLETED, BATCH_COMPLETED, {**BATCH_COMPLETED, "status": "in_progress"}]

    def handler(req: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=objects.pop(0))

    patient = provider(lambda r: httpx2.Response(200, json=BATCH_COMPLETED), file_grace=3600)
    assert not (await patient.batch.poll(BATCH_COMPLETED["id"])).results_ready
    assert not (await patient.batch.poll(BATCH_COMPLETED["id"])).results_ready
    hasty = provider(handler, file_grace=0)
    info = await hasty.batch.poll(BATCH_COMPLETED["id"])
    assert info.results_ready
    assert info.error_file_id is None


async def test_poll_waits_for_a_missing_output_file_past_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two answers were paid for: declaring the batch ready without them would re-send them.
    no_output = {**BATCH_COMPLETED, "output_file_id": None}
    objects = [no_output, no_output, no_output, BATCH_COMPLETED]

    def handler(req: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=objects.pop(0))

    hasty = provider(handler, file_grace=0)
    for _ in range(3):
        assert not (await hasty.batch.poll(BATCH_COMPLETED["id"])).results_ready
    assert caplog.text.count("output file is not there yet") == 1
    info = await hasty.batch.poll(BATCH_COMPLETED["id"])
    assert info.results_ready and info.output_file_id == BATCH_COMPLETED["output_file_id"]


async def test_create_sends_window_endpoint_and_shard() -> None:
    sent: list[dict[str, Any]] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        sent.append(orjson.loads(req.content))
        return httpx2.Response(200, json=BATCH_VALIDATING)

    p = provider(handler, api="responses")
    info = await p.batch.create(Path("unused"), "file-1", shard_id="shard-7", model="gpt-4o-mini")
    assert info.state is BatchState.VALIDATING
    assert sent[0]["input_file_id"] == "file-1"
    assert sent[0]["completion_window"] == "24h"
    assert sent[0]["endpoint"] == "/v1/responses"
    assert sent[0]["metadata"]["lexibatch_shard"] == "shard-7"


async def test_find_pages_through_recent_batches() -> None:
    import time

    now = int(time.time())
    pages = {
        None: {
            "object": "list",
            "data": [
                {**BATCH_VALIDATING, "id": "batch_a", "created_at": now, "metadata": {}},
                {**BATCH_VALIDATING, "id": "batch_b", "created_at": now - 10, "metadata": None},
            ],
            "first_id": "batch_a",
            "last_id": "batch_b",
            "has_more": True,
        },
        "batch_b": {
            "object": "list",
            "data": [
                {
                    **BATCH_VALIDATING,
                    "id": "batch_c",
                    "created_at": now - 20,
                    "metadata": {"lexibatch_shard": "s-1"},
                }
            ],
            "has_more": False,
        },
    }
    seen: list[str | None] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        after = req.url.params.get("after")
        seen.append(after)
        return httpx2.Response(200, json=pages[after])

    p = provider(handler)
    found = await p.batch.find(JournaledShard("s-1"))
    assert found is not None
    assert found.id == "batch_c"
    assert seen == [None, "batch_b"]
    assert await p.batch.find(JournaledShard("s-unknown")) is None


async def test_find_pages_past_old_batches_back_to_when_the_shard_was_journaled() -> None:
    # The shard was journaled three days ago; a hundred batches made since are
    # all over a day old. Its batch is on the second page.
    journaled = 1_000_000.0
    newer = [
        {
            **BATCH_VALIDATING,
            "id": f"batch_n{i}",
            "created_at": int(journaled) + 100,
            "metadata": {},
        }
        for i in range(100)
    ]
    pages = {
        None: {"object": "list", "data": newer, "last_id": "batch_n99", "has_more": True},
        "batch_n99": {
            "object": "list",
            "data": [
                {
                    **BATCH_VALIDATING,
                    "id": "batch_ours",
                    "created_at": int(journaled) + 5,
                    "metadata": {"lexibatch_shard": "s-1"},
                },
                {**BATCH_VALIDATING, "id": "batch_older", "created_at": 1_000, "metadata": {}},
            ],
            "last_id": "batch_older",
            "has_more": True,
        },
    }
    seen: list[str | None] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        seen.append(req.url.params.get("after"))
        return httpx2.Response(200, json=pages[req.url.params.get("after")])

    found = await provider(handler).batch.find(JournaledShard("s-1", journaled_at=journaled))
    assert found is not None and found.id == "batch_ours"
    assert seen == [None, "batch_n99"]
    # Another shard's batch is not there: paging stops at the first batch made
    # before that shard was journaled (less the clock margin), not at the end.
    seen.clear()
    assert await provider(handler).batch.find(JournaledShard("s-2", journaled_at=journaled)) is None
    assert seen == [None, "batch_n99"]


async def test_find_stops_at_batches_older_than_the_shard() -> None:
    old = {
        "object": "list",
        "data": [{**BATCH_VALIDATING, "id": "batch_old", "created_at": 1_000_000, "metadata": {}}],
        "last_id": "batch_old",
        "has_more": True,
    }
    calls: list[httpx2.Request] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        calls.append(req)
        return httpx2.Response(200, json=old)

    assert (
        await provider(handler).batch.find(JournaledShard("s-1", journaled_at=2_000_000.0)) is None
    )
    assert len(calls) == 1


async def test_results_stream_output_then_error_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import providers.openai as module

    monkeypatch.setattr(module, "_DOWNLOAD_CHUNK", 37)
    error_line = (
        '{"id": "batch_req_9", "custom_id": "2", "response": null, '
        '"error": {"code": "batch_expired", "message": "expired"}}'
    )
    files = {
        "file-out": (
            OUTPUT_LINE + "\n" + OUTPUT_LINE.replace('"custom_id": "0"', '"custom_id": "1"') + "\n"
        ),
        "file-err": error_line + "\n",
    }
    paths: list[str] = []

    def handler(req: httpx2.Request) -> httpx2.Response:
        paths.append(req.url.path)
        file_id = req.url.path.split("/")[3]
        return httpx2.Response(200, content=files[file_id].encode())

    p = provider(handler)
    info = batch_info(
        {**BATCH_COMPLETED, "output_file_id": "file-out", "error_file_id": "file-err"}
    )
    items = [item async for item in p.batch.results(info)]
    assert [i.custom_id for i in items] == ["0", "1", "2"]
    assert all(isinstance(i.completion, Completion) for i in items[:2])
    assert isinstance(items[2].error, BatchExpiredError)
    assert paths == ["/v1/files/file-out/content", "/v1/files/file-err/content"]


async def test_failed_batch_without_files_yields_nothing() -> None:
    p = provider(lambda r: httpx2.Response(500))
    info = batch_info({**BATCH_VALIDATING, "status": "failed"})
    assert info.results_ready
    assert [item async for item in p.batch.results(info)] == []


async def test_cancel_returns_cancelling() -> None:
    cancelling = {**BATCH_VALIDATING, "status": "cancelling", "cancelling_at": 1744391935}

    def handler(req: httpx2.Request) -> httpx2.Response:
        assert req.method == "POST"
        assert req.url.path == f"/v1/batches/{BATCH_VALIDATING['id']}/cancel"
        return httpx2.Response(200, json=cancelling)

    info = await provider(handler).batch.cancel(BATCH_VALIDATING["id"])
    assert info.state is BatchState.CANCELLING
    assert not info.results_ready


# ---------------------------------------------------------------- files


class _StreamCheck(httpx2.AsyncBaseTransport):
    """Records how an upload's body arrives, reading it chunk by chunk."""

    def __init__(self) -> None:
        self.stream_type: type | None = None
        self.body = b""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.stream_type = type(request.stream)
        async for chunk in request.stream:  # type: ignore[union-attr]
            self.body += chunk
        return httpx2.Response(
            200,
            json={
                "object": "file",
                "id": "file-TnjeSoqJGFp7SfehYrEuHH",
                "purpose": "batch",
                "filename": "upload",
                "bytes": 470,
                "created_at": 1736489773,
                "status": "processed",
                "status_details": None,
            },
        )


async def test_upload_streams_the_file_for_batch(tmp_path: Path) -> None:
    transport = _StreamCheck()
    p = OpenAIProvider(api_key=API_KEY, http_client=httpx2.AsyncClient(transport=transport))
    path = tmp_path / "shard.jsonl"
    request = make_request()
    path.write_bytes(p.batch.encode(request, request.key) + b"\n")
    file_id = await p.batch.upload(path, shard_id="shard-1")
    assert file_id == "file-TnjeSoqJGFp7SfehYrEuHH"
    assert transport.stream_type is httpx2._multipart.MultipartStream
    assert b'name="purpose"\r\n\r\nbatch' in transport.body
    assert path.read_bytes() in transport.body


@pytest.mark.parametrize("status", [404, 405])
async def test_service_without_batch_api_is_unsupported(tmp_path: Path, status: int) -> None:
    path = tmp_path / "shard.jsonl"
    path.write_bytes(b"{}\n")
    p = provider(
        lambda r: httpx2.Response(status, text="Not Found"), base_url="http://localhost:9/v1"
    )
    with pytest.raises(UnsupportedError) as info:
        await p.batch.upload(path, shard_id="s")
    assert str(info.value) == (
        f"http://localhost:9/v1 has no Batch API (Files/Batches endpoints answered {status}); "
        "use --mode immediate"
    )
    with pytest.raises(UnsupportedError):
        await p.batch.create(path, "file-1", shard_id="s", model="m")
    with pytest.raises(UnsupportedError):
        await p.batch.find(JournaledShard("s"))


class _Broken(httpx2.AsyncByteStream):
    """A body that breaks off after its first line."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield OUTPUT_LINE.encode() + b"\n"
        raise httpx2.RemoteProtocolError("peer closed connection")


async def test_download_that_breaks_off_is_a_connection_error() -> None:
    p = provider(lambda r: httpx2.Response(200, stream=_Broken()))
    info = batch_info(
        {**BATCH_COMPLETED, "request_counts": {"total": 1, "completed": 1, "failed": 0}}
    )
    with pytest.raises(ProviderConnectionError) as caught:
        async for _ in p.batch.results(info):
            pass
    assert type(caught.value) is ProviderConnectionError
    assert caught.value.retryable
