"""What real answers carry is read: cache writes, stop reasons, batch totals, retry-after,
rate-limit headers, context-length errors; results are fetched through the base URL.

The shapes below are those of real recorded traffic (OpenAI batch and Responses
objects, Anthropic messages and message batches), cut down to the fields read.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import orjson
import pytest
from pydantic import BaseModel

from plugins.results import build_response, more_tokens
from providers.anthropic import (
    AnthropicProvider,
    completion_from_message,
    item_result_from_line,
)
from providers.errors import (
    ContextLengthError,
    InvalidRequestError,
    TruncatedError,
    error_from_status,
)
from providers.openai import _completion, batch_info, parse_result_line
from providers.pricing import PriceTable
from providers.ratelimits import parse_duration, rate_limit_state, retry_after_seconds
from providers.stop import StopReason, normalize_stop
from providers.types import BatchInfo, BatchState, Completion, Message, Request, Usage

MESSAGE = {
    "id": "msg_01K4Fzcf1bhiyLzHpwLdrefj",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [{"type": "text", "text": '{"word":"swift"}'}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 10000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 50,
        "service_tier": "standard",
    },
}


class Word(BaseModel):
    word: str


def test_anthropic_cache_reads_and_both_kinds_of_writes_are_read_and_priced() -> None:
    usage = completion_from_message(MESSAGE).usage
    # Anthropic counts the prompt in three parts; lexibatch's input is the whole prompt.
    assert usage.input_tokens == 13020
    assert (usage.cached_tokens, usage.cache_creation_tokens) == (10000, 3000)
    assert usage.cache_creation_1h_tokens == 2000
    price = PriceTable.load().price("claude-haiku-4-5")
    assert price is not None and price.cache_creation_1h_input is not None
    expected = (
        20 * price.input
        + 10000 * (price.cached_input or 0)
        + 1000 * (price.cache_creation_input or 0)
        + 2000 * price.cache_creation_1h_input
        + 50 * price.output
    )
    assert price.cost(usage, "immediate") == pytest.approx(expected)
    # Hour-long writes cost more than five-minute ones.
    five_minutes = Usage(13020, 50, 10000, 0, 3000, 0)
    assert price.cost(usage, "immediate") > price.cost(five_minutes, "immediate")


def test_openai_cache_writes_are_read_from_responses_and_chat_bodies() -> None:
    responses = {
        "object": "response",
        "status": "completed",
        "model": "gpt-5-mini",
        "output": [],
        "usage": {
            "input_tokens": 5000,
            "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 3000},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 4},
        },
    }
    usage = _completion(responses, None).usage
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_creation_tokens) == (
        5000,
        1000,
        3000,
    )
    chat = {
        "object": "chat.completion",
        "choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 20},
        },
    }
    assert _completion(chat, None).usage.cache_creation_tokens == 20


@pytest.mark.parametrize(
    ("raw", "stop"),
    [
        ("stop", StopReason.END),
        ("end_turn", StopReason.END),
        ("completed", StopReason.END),
        ("length", StopReason.MAX_TOKENS),
        ("max_tokens", StopReason.MAX_TOKENS),
        ("max_output_tokens", StopReason.MAX_TOKENS),
        ("MAX_TOKENS", StopReason.MAX_TOKENS),
        ("content_filter", StopReason.CONTENT_FILTER),
        ("refusal", StopReason.REFUSAL),
        ("tool_calls", StopReason.TOOL_USE),
        ("tool_use", StopReason.TOOL_USE),
        ("model_context_window_exceeded", StopReason.CONTEXT_WINDOW),
        ("something_new", StopReason.OTHER),
        (None, None),
    ],
)
def test_stop_reasons_have_one_vocabulary(raw: str | None, stop: StopReason | None) -> None:
    assert normalize_stop(raw) is stop


def _request(max_tokens: int | None = 100) -> Request:
    return Request("m", (Message("user", "x"),), response_model=Word, max_tokens=max_tokens)


def test_a_structured_answer_cut_at_max_tokens_is_a_truncated_error() -> None:
    cut = Completion('{"wo', Usage(10, 100), "m", finish_reason="max_tokens")
    with pytest.raises(TruncatedError) as info:
        build_response(_request(), cut, provider="p", mode="immediate", cost_usd=None)
    error = info.value
    assert error.retryable and error.retry_max_tokens == 200
    assert error.raw_stop_reason == "max_tokens" and error.content == '{"wo'
    assert more_tokens(_request(), error).max_tokens == 200
    # At the ceiling there is nothing larger to ask for.
    top = TruncatedError("cut", max_tokens=TruncatedError.CEILING)
    assert not top.retryable and more_tokens(_request(), top).max_tokens == 100


def test_a_complete_answer_keeps_its_stop_reasons() -> None:
    done = Completion('{"word":"swift"}', Usage(10, 5), "m", finish_reason="end_turn")
    response = build_response(_request(), done, provider="p", mode="batch", cost_usd=0.0)
    assert (response.stop_reason, response.raw_stop_reason) == (StopReason.END, "end_turn")
    text = Completion("Swift me", Usage(1, 2), "m", finish_reason="length")
    plain = Request("m", (Message("user", "x"),), max_tokens=2)
    cut = build_response(plain, text, provider="p", mode="immediate", cost_usd=None)
    assert cut.output == "Swift me" and cut.stop_reason is StopReason.MAX_TOKENS
    filtered = Completion("", Usage(1, 0), "m", finish_reason="content_filter")
    with pytest.raises(InvalidRequestError) as info:
        build_response(_request(), filtered, provider="p", mode="immediate", cost_usd=None)
    assert info.value.code == "content_filter"


def test_openai_batch_objects_give_their_model_and_token_totals() -> None:
    validating = {"id": "batch_1", "status": "validating", "model": None, "usage": None}
    info = batch_info(validating)
    assert info.model is None and info.usage is None
    done = {
        "id": "batch_1",
        "status": "completed",
        "model": "gpt-4o-mini-2024-07-18",
        "request_counts": {"total": 2, "completed": 2, "failed": 0},
        "output_file_id": "file-x",
        "usage": {
            "input_tokens": 120,
            "input_tokens_details": {"cached_tokens": 20},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 5},
            "total_tokens": 150,
        },
    }
    info = batch_info(done)
    assert info.model == "gpt-4o-mini-2024-07-18"
    assert info.usage == Usage(120, 30, 20, 5)


def test_context_length_errors_are_typed_and_permanent() -> None:
    line = {
        "id": "batch_req_1",
        "custom_id": "lb-1",
        "response": {
            "status_code": 400,
            "request_id": "0" * 32,
            "body": {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        },
        "error": None,
    }
    openai_error = parse_result_line(orjson.dumps(line)).error
    errored = {
        "custom_id": "lb-2",
        "result": {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
        },
    }
    anthropic_error = item_result_from_line(orjson.dumps(errored)).error
    for error in (openai_error, anthropic_error):
        assert isinstance(error, ContextLengthError) and not error.retryable


def test_rate_limit_headers_of_both_apis_are_read() -> None:
    assert parse_duration("6m0s") == 360 and parse_duration("120ms") == pytest.approx(0.12)
    assert parse_duration("1.5s") == 1.5 and parse_duration("soon") is None
    openai = rate_limit_state(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "1500",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        now=1000.0,
    )
    assert openai is not None
    assert (openai.remaining_requests, openai.remaining_tokens) == (0, 1500)
    assert (openai.requests_reset_at, openai.tokens_reset_at) == (1001.0, 1360.0)
    anthropic = rate_limit_state(
        {
            "anthropic-ratelimit-requests-remaining": "3",
            "anthropic-ratelimit-requests-reset": "2025-01-12T05:59:59Z",
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2025-01-12T06:00:00Z",
        }
    )
    assert anthropic is not None and anthropic.remaining_tokens == 0
    assert anthropic.tokens_reset_at == 1736661600.0
    assert rate_limit_state({"content-type": "application/json"}) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "20"}, 20.0),
        ({"Retry-After": "1.5"}, 1.5),
        # Milliseconds win over seconds (OpenAI sends both).
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
        # An unreadable one is passed over for the other.
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({"content-type": "application/json"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_is_read_one_way_and_an_error_waits_what_it_asks(
    headers: dict[str, str] | None, seconds: float | None
) -> None:
    assert retry_after_seconds(headers) == (pytest.approx(seconds) if seconds else None)
    if headers is not None:
        # A refusal with those headers waits what they ask.
        assert error_from_status(429, "slow down", headers=headers).retry_after == (
            pytest.approx(seconds) if seconds else None
        )


def _anthropic(handler: object, tmp_path: Path, base_url: str) -> AnthropicProvider:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))  # type: ignore[arg-type]
    return AnthropicProvider(
        api_key="sk-ant-test", base_url=base_url, http_client=client, state_dir=tmp_path
    )


async def test_anthropic_results_come_through_the_configured_base_url(tmp_path: Path) -> None:
    seen: list[str] = []
    line = {"custom_id": "lb-1", "result": {"type": "succeeded", "message": MESSAGE}}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, content=orjson.dumps(line) + b"\n")

    provider = _anthropic(handler, tmp_path, "http://gateway.internal:4000/anthropic")
    # As the real API writes it: absolute, on api.anthropic.com.
    url = "https://api.anthropic.com/v1/messages/batches/msgbatch_01X/results"
    info = BatchInfo("msgbatch_01X", BatchState.COMPLETED, raw={"results_url": url})
    items = [item async for item in provider.batch.results(info)]
    await provider.aclose()
    assert [i.custom_id for i in items] == ["lb-1"]
    assert seen == [
        "http://gateway.internal:4000/anthropic/v1/messages/batches/msgbatch_01X/results"
    ]


async def test_anthropic_polls_read_retry_after(tmp_path: Path) -> None:
    batch = {
        "id": "msgbatch_01X",
        "type": "message_batch",
        "processing_status": "in_progress",
        "request_counts": {
            "processing": 3,
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "results_url": None,
    }

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=batch, headers={"retry-after": "10"})

    provider = _anthropic(handler, tmp_path, "https://api.anthropic.test")
    info = await provider.batch.poll("msgbatch_01X")
    await provider.aclose()
    assert info.retry_after == 10.0 and info.state is BatchState.IN_PROGRESS


def test_a_reasoning_item_before_the_message_is_skipped_and_its_tokens_counted() -> None:
    body = {
        "object": "response",
        "status": "completed",
        "model": "o3-mini-2025-01-31",
        "output": [
            {"id": "rs_67ccd2bf", "type": "reasoning", "summary": []},
            {
                "id": "msg_67ccd2c0",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "annotations": [], "text": '{"word":"x"}'}],
            },
        ],
        "usage": {
            "input_tokens": 30,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 90,
            "output_tokens_details": {"reasoning_tokens": 64},
        },
    }
    completion = _completion(body, None)
    assert completion.content == '{"word":"x"}'
    assert completion.usage.reasoning_tokens == 64
    assert (completion.finish_reason, completion.stop_reason) == ("completed", StopReason.END)
    filtered = {**body, "status": "incomplete", "incomplete_details": {"reason": "content_filter"}}
    assert _completion(filtered, None).stop_reason is StopReason.CONTENT_FILTER
