"""The one table that turns the HTTP stack's transport failures into the error tree."""

from __future__ import annotations

import aiohttp
import httpx
import httpx2
import pytest

from providers.errors import ProviderConnectionError, ProviderTimeoutError
from providers.transport import transport_error

KEY = "sk-secret-key-123"


def _request(lib: object) -> object:
    return lib.Request("GET", "http://127.0.0.1:1/v1/files/f/content")  # type: ignore[attr-defined]


@pytest.mark.parametrize("lib", [httpx2, httpx], ids=["httpx2", "httpx"])
def test_httpx_stacks_translate_alike(lib: object) -> None:
    request = _request(lib)
    timeout = transport_error(
        lib.ReadTimeout("slow", request=request),  # type: ignore[attr-defined]
        provider="p",
        doing="download of f",
    )
    assert type(timeout) is ProviderTimeoutError
    assert str(timeout) == "p: download of f timed out"
    cut = transport_error(
        lib.RemoteProtocolError(f"peer closed ({KEY})", request=request),  # type: ignore[attr-defined]
        provider="p",
        doing="download of f",
        redact=KEY,
    )
    assert type(cut) is ProviderConnectionError and cut.retryable
    assert "download of f broke off (RemoteProtocolError" in str(cut)
    assert KEY not in str(cut) and "***" in str(cut)
    # An answered status is the SDK's to translate, not a transport failure.
    response = lib.Response(429, request=request)  # type: ignore[attr-defined]
    status = lib.HTTPStatusError("429", request=request, response=response)  # type: ignore[attr-defined]
    assert transport_error(status, provider="p", doing="x") is None


def test_aiohttp_and_builtin_failures_translate() -> None:
    assert type(transport_error(aiohttp.ServerTimeoutError(), provider="p", doing="x")) is (
        ProviderTimeoutError
    )
    for exc in (aiohttp.ServerDisconnectedError(), aiohttp.ClientPayloadError("short")):
        assert type(transport_error(exc, provider="p", doing="x")) is ProviderConnectionError
    assert type(transport_error(TimeoutError(), provider="p", doing="x")) is ProviderTimeoutError
    assert type(transport_error(ConnectionResetError(), provider="p", doing="x")) is (
        ProviderConnectionError
    )


def test_anything_else_is_not_a_transport_failure() -> None:
    for exc in (ValueError("bad"), KeyError("k"), httpx2.ResponseNotRead()):
        assert transport_error(exc, provider="p", doing="x") is None
