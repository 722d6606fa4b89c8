"""The LiteLLM adapter: call building, answers, error mapping, batch availability."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel

from providers.errors import (
    AuthenticationError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    UnsupportedError,
)
from providers.litellm import (
    LiteLLMProvider,
    batch_provider_for,
    completion_from_response,
    load_litellm,
    translate_error,
)
from providers.protocol import BatchEndpoint, Provider
from providers.types import Message, Request

API_KEY = "sk-litellm-DO-NOT-LEAK-42"


class Word(BaseModel):
    """A test schema."""

    word: str
    level: int


def _request(model: str = "openai/gpt-4o-mini", **kw: Any) -> Request:
    return Request(
        model=model,
        messages=(Message("system", "Be terse."), Message("user", "Define cat.")),
        response_model=Word,
        **kw,
    )


def test_completion_kwargs() -> None:
    provider = LiteLLMProvider(api_key=API_KEY, base_url="http://host/v1", timeout=12)
    kwargs = provider.completion_kwargs(_request(max_tokens=50, temperature=0.0))
    assert kwargs["model"] == "openai/gpt-4o-mini"
    assert kwargs["messages"][0] == {"role": "system", "content": "Be terse."}
    fmt = kwargs["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Word"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["word", "level"]
    assert kwargs["api_base"] == "http://host/v1"
    assert kwargs["api_key"] == API_KEY
    assert kwargs["max_tokens"] == 50 and kwargs["temperature"] == 0.0
    assert kwargs["timeout"] == 12
    assert kwargs["num_retries"] == 0 and kwargs["max_retries"] == 0


def test_completion_kwargs_without_schema_or_endpoint() -> None:
    provider = LiteLLMProvider(extra_params={"api_version": "2024-10-21"})
    request = Request(model="groq/llama-3.1-8b-instant", messages=(Message("user", "hi"),))
    kwargs = provider.completion_kwargs(request)
    assert "response_format" not in kwargs
    assert "api_base" not in kwargs and "api_key" not in kwargs
    assert kwargs["api_version"] == "2024-10-21"


def test_model_response_is_read() -> None:
    litellm = load_litellm()
    response = litellm.ModelResponse(
        id="chatcmpl-1",
        model="gpt-4o-mini",
        choices=[
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": '{"word":"cat","level":1}'},
            }
        ],
        usage={
            "prompt_tokens": 30,
            "completion_tokens": 9,
            "total_tokens": 39,
            "prompt_tokens_details": {"cached_tokens": 12},
        },
    )
    completion = completion_from_response(response)
    assert Word.model_validate_json(completion.content).word == "cat"
    assert completion.usage.input_tokens == 30 and completion.usage.output_tokens == 9
    assert completion.usage.cached_tokens == 12
    assert completion.finish_reason == "stop"
    assert completion.request_id == "chatcmpl-1"


def _litellm_errors() -> list[tuple[Any, type[Exception], int | None]]:
    litellm = load_litellm()
    response_429 = httpx.Response(
        429,
        headers={"retry-after": "3"},
        request=httpx.Request("POST", "http://host/v1/chat/completions"),
    )
    common = {"llm_provider": "openai", "model": "gpt-4o-mini"}
    return [
        (litellm.BadRequestError(f"bad key {API_KEY}", **common), InvalidRequestError, 400),
        (litellm.AuthenticationError("no", **common), AuthenticationError, 401),
        (litellm.NotFoundError("no model", **common), InvalidRequestError, 404),
        (
            litellm.RateLimitError("slow down", response=response_429, **common),
            RateLimitError,
            429,
        ),
        (litellm.InternalServerError("boom", **common), ServerError, 500),
        (litellm.ServiceUnavailableError("busy", **common), ServerError, 503),
        (litellm.Timeout("late", **common), ProviderTimeoutError, None),
        (litellm.APIConnectionError("down", **common), ProviderConnectionError, None),
    ]


def test_errors_are_translated() -> None:
    for exc, cls, status in _litellm_errors():
        error = translate_error(exc, api_key=API_KEY)
        assert type(error) is cls, (exc, error)
        if status is not None:
            assert error.status_code == status
        assert API_KEY not in str(error)
        if cls is RateLimitError:
            assert error.retry_after == 3.0


def test_connection_failure_reported_as_500_is_a_connection_error() -> None:
    import openai

    litellm = load_litellm()
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    wrapped = litellm.InternalServerError("Connection error.", llm_provider="openai", model="m")
    try:
        try:
            raise openai.APIConnectionError(request=request)
        except openai.APIConnectionError as inner:
            raise wrapped from inner
    except Exception as exc:
        error = translate_error(exc)
    assert type(error) is ProviderConnectionError


@pytest.mark.parametrize(
    ("model", "base_url", "explicit", "vendor"),
    [
        ("openai/gpt-4o-mini", None, None, "openai"),
        ("gpt-4o-mini", None, None, "openai"),
        ("azure/my-deployment", None, None, "azure"),
        ("vertex_ai/gemini-2.0-flash", None, None, "vertex_ai"),
        ("bedrock/anthropic.claude-3-haiku", None, None, "bedrock"),
        ("hosted_vllm/qwen", "http://vllm/v1", None, "hosted_vllm"),
        ("groq/llama-3.1-8b-instant", None, None, None),
        ("anthropic/claude-haiku-4-5", None, None, None),
        ("claude-3-5-sonnet-20241022", None, None, None),
        (None, "http://proxy/v1", None, "openai"),
        (None, None, None, None),
        ("groq/llama", None, "openai", "openai"),
    ],
)
def test_batch_vendor_detection(
    model: str | None, base_url: str | None, explicit: str | None, vendor: str | None
) -> None:
    assert batch_provider_for(model, base_url=base_url, explicit=explicit) == vendor


def test_batch_is_none_without_a_batch_api() -> None:
    provider = LiteLLMProvider(model="groq/llama-3.1-8b-instant")
    assert isinstance(provider, Provider)
    assert provider.batch is None


def test_batch_endpoint_and_line_format() -> None:
    provider = LiteLLMProvider(model="openai/gpt-4o-mini", base_url="http://host/v1")
    endpoint = provider.batch
    assert endpoint is not None and isinstance(endpoint, BatchEndpoint)
    assert endpoint.vendor == "openai"
    assert not endpoint.limits.mixed_models
    line = orjson.loads(endpoint.encode(_request(max_tokens=20), "lb-1"))
    assert line["custom_id"] == "lb-1"
    assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
    body = line["body"]
    assert body["model"] == "gpt-4o-mini"  # the vendor prefix is LiteLLM's, not the vendor's
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["max_completion_tokens"] == 20


async def test_create_refuses_a_model_of_another_batch_vendor(tmp_path: Any) -> None:
    provider = LiteLLMProvider(model="openai/gpt-4o-mini")
    assert provider.batch is not None
    with pytest.raises(UnsupportedError):
        await provider.batch.create(
            tmp_path / "x.jsonl", "file-1", shard_id="s", model="azure/deployment"
        )
