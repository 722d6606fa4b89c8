"""A connection that is not made in time is an unreachable provider, not a slow (billed) answer."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from plugins.retry import is_unreachable
from providers.anthropic import AnthropicProvider
from providers.errors import ProviderConnectionError, ProviderTimeoutError
from providers.gemini import GeminiProvider
from providers.mistral import MistralProvider
from providers.openai import OpenAIProvider
from providers.types import Message, Request

REQUEST = Request(model="m", messages=(Message("user", "hi"),), max_tokens=5)


def _client(error: type[Exception]) -> httpx2.AsyncClient:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise error("timed out", request=request)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def _providers(error: type[Exception], tmp_path: Path) -> list[object]:
    return [
        OpenAIProvider(api_key="sk-test-1234", http_client=_client(error)),
        AnthropicProvider(
            api_key="sk-ant-test-1234",
            base_url="https://api.anthropic.test",
            http_client=_client(error),
            state_dir=tmp_path / "state",
        ),
        GeminiProvider(
            api_key="g-test-1234", base_url="https://gemini.test", http_client=_client(error)
        ),
        MistralProvider(
            api_key="m-test-1234", base_url="https://mistral.test", http_client=_client(error)
        ),
    ]


# No connection made in time, or none free in the pool: the request was never sent.
@pytest.mark.parametrize("error", [httpx2.ConnectTimeout, httpx2.PoolTimeout])
async def test_a_connect_timeout_is_unreachable(tmp_path: Path, error: type[Exception]) -> None:
    for provider in _providers(error, tmp_path):
        with pytest.raises(ProviderConnectionError) as caught:
            await provider.complete(REQUEST)  # type: ignore[attr-defined]
        assert is_unreachable(caught.value), (provider, caught.value)
        assert "no connection in time" in str(caught.value), (provider, caught.value)
        await provider.aclose()  # type: ignore[attr-defined]


async def test_a_read_timeout_stays_a_timeout(tmp_path: Path) -> None:
    for provider in _providers(httpx2.ReadTimeout, tmp_path):
        with pytest.raises(ProviderTimeoutError):
            await provider.complete(REQUEST)  # type: ignore[attr-defined]
        await provider.aclose()  # type: ignore[attr-defined]


def test_the_default_connect_timeout_is_short(tmp_path: Path) -> None:
    provider = OpenAIProvider(api_key="sk-test-1234", timeout=600.0)
    timeout = provider._client.timeout
    assert isinstance(timeout, httpx2.Timeout)
    assert (timeout.connect, timeout.read) == (5.0, 600.0)
