"""The adapters' shared toolkit: one SDK-error table with the key redacted, one pooled client."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest

from providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
)
from providers.sdkerrors import SdkErrors, redact, translate_sdk_error
from providers.transport import pooled_client

KEY = "sk-toolkit-secret-0123456789"


class _Timeout(Exception):
    pass


class _Unreachable(Exception):
    pass


class _Status(Exception):
    def __init__(self, status_code: int, body: object) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.body = body
        self.response = None


TABLE = SdkErrors(timeout=(_Timeout,), connection=(_Unreachable,), status=(_Status,))


def test_each_kind_of_sdk_failure_lands_on_its_branch_of_the_tree() -> None:
    args = {"provider": "acme", "where": "https://acme.test", "api_key": KEY}
    assert isinstance(translate_sdk_error(_Timeout(), TABLE, **args), ProviderTimeoutError)
    unreachable = _Unreachable()
    unreachable.__cause__ = OSError(f"refused for key {KEY}")
    error = translate_sdk_error(unreachable, TABLE, **args)
    assert type(error) is ProviderConnectionError
    assert str(error) == "acme: cannot reach https://acme.test: refused for key ***"
    limited = _Status(429, {"error": {"message": f"slow down {KEY}", "code": "rate_limit"}})
    error = translate_sdk_error(limited, TABLE, **args)
    assert isinstance(error, RateLimitError) and error.code == "rate_limit"
    assert KEY not in str(error) and "slow down ***" in str(error)
    other = translate_sdk_error(ValueError(f"odd {KEY}"), TABLE, **args)
    assert type(other) is ProviderError and str(other) == "acme: ValueError: odd ***"
    assert redact("abc", "ab") == "abc"  # keys shorter than 4 are never "found"


@pytest.mark.parametrize("sdk", [openai, anthropic])
def test_the_vendor_sdks_are_read_through_the_same_table(sdk: object) -> None:
    from providers.anthropic import ANTHROPIC_ERRORS
    from providers.openai import OPENAI_ERRORS

    table = OPENAI_ERRORS if sdk is openai else ANTHROPIC_ERRORS
    request = httpx2.Request("POST", "https://vendor.test/v1/x")
    timeout = sdk.APITimeoutError(request=request)  # type: ignore[attr-defined]
    timeout.__cause__ = httpx2.ConnectTimeout("no connection", request=request)
    error = translate_sdk_error(timeout, table, provider="p", where="https://vendor.test")
    assert type(error) is ProviderConnectionError and "no connection in time" in str(error)
    response = httpx2.Response(500, json={"error": {"message": "boom"}}, request=request)
    status = sdk.InternalServerError("boom", response=response, body=None)  # type: ignore[attr-defined]
    error = translate_sdk_error(status, table, provider="p", where="https://vendor.test")
    assert error.status_code == 500 and error.retryable and str(error) == "p: boom (HTTP 500)"


async def test_the_pooled_client_is_the_given_one_or_made_with_the_timeouts() -> None:
    given = httpx2.AsyncClient()
    assert pooled_client(given, timeout=9, connect_timeout=1, max_connections=2) is given
    made = pooled_client(None, timeout=9, connect_timeout=30, max_connections=2)
    assert (made.timeout.connect, made.timeout.read) == (9, 9)  # never longer than a call
    await given.aclose()
    await made.aclose()


async def test_gemini_and_mistral_take_the_configured_connect_timeout() -> None:
    from providers.gemini import GeminiProvider
    from providers.mistral import MistralProvider

    gemini = GeminiProvider(api_key="k", timeout=60, connect_timeout=2)
    mistral = MistralProvider(api_key="k", timeout=60, connect_timeout=3)
    assert gemini._http.timeout.connect == 2 and mistral._http.timeout.connect == 3
    await gemini.aclose()
    await mistral.aclose()
