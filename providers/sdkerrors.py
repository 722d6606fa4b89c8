"""One table translating a vendor SDK's exceptions into the error tree, the key redacted.

The OpenAI and Anthropic SDKs (and LiteLLM, whose exceptions subclass
OpenAI's) raise the same three kinds of failure: a timeout, a connection that
failed, and an answered status. :func:`translate_sdk_error` maps them, through
an :class:`SdkErrors` table naming each SDK's classes, onto::

    timeout whose cause is a connect timeout  -> ProviderConnectionError (never reached it)
    timeout                                   -> ProviderTimeoutError
    connection failure                        -> ProviderConnectionError
    answered status                           -> error_from_status(...) (429, 5xx, 4xx, ...)
    a failure of the HTTP stack itself        -> transport_error(...) (providers.transport)
    anything else                             -> ProviderError

so every adapter says the same thing in the same words, and no message,
body or detail ever carries the API key (:func:`redact`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from providers.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_from_status,
)
from providers.transport import transport_error

__all__ = ["SdkErrors", "error_message", "redact", "translate_sdk_error"]

#: Reads ``(message, code)`` out of an error body, with a fallback message.
MessageOf = Callable[[Any, str], tuple[str, "str | None"]]


@dataclass(frozen=True)
class SdkErrors:
    """The exception classes of one SDK, by what they mean.

    Attributes:
        timeout: raised when no answer came in time.
        connection: raised when the provider could not be reached.
        status: raised for an answered non-2xx status (``status_code``,
            ``response``, ``body``).
        connect_timeout: the HTTP library's timeout classes that the SDK's
            timeout carries as its cause when the request was never sent (no
            connection made in time, none free in the pool).
    """

    timeout: tuple[type[BaseException], ...]
    connection: tuple[type[BaseException], ...]
    status: tuple[type[BaseException], ...]
    connect_timeout: tuple[type[BaseException], ...] = ()


def redact(text: str, api_key: str | None) -> str:
    """``text`` with every occurrence of the key replaced by ``***``."""
    if api_key and len(api_key) >= 4 and api_key in text:
        return text.replace(api_key, "***")
    return text


def error_message(body: Any, fallback: str) -> tuple[str, str | None]:
    """``(message, code)`` from an ``{"error": {"message", "code" | "type"}}`` body."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            code = inner.get("code") or inner.get("type")
            return str(inner.get("message") or fallback), str(code) if code else None
        if isinstance(inner, str):
            return inner, None
        if isinstance(body.get("message"), str):
            return str(body["message"]), None
    return fallback, None


def translate_sdk_error(
    exc: BaseException,
    table: SdkErrors,
    *,
    provider: str,
    where: str,
    api_key: str | None = None,
    message_of: MessageOf = error_message,
) -> ProviderError:
    """The error-tree counterpart of an SDK exception.

    Args:
        exc: what the SDK (or the HTTP stack under it) raised.
        table: the SDK's exception classes.
        provider: the provider name the error carries.
        where: the address the call went to, as messages name it.
        api_key: the key, never to appear in a message or body.
        message_of: reads the message and code out of an error body.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, table.timeout):
        if table.connect_timeout and isinstance(exc.__cause__, table.connect_timeout):
            # Never reached the provider: unreachable, not a (billed) slow answer.
            return ProviderConnectionError(
                f"cannot reach {where}: no connection in time", provider=provider
            )
        return ProviderTimeoutError(f"no answer from {where} in time", provider=provider)
    if isinstance(exc, table.connection):
        cause = exc.__cause__ or exc.__context__
        detail = f": {redact(str(cause), api_key)}" if cause and str(cause) else ""
        return ProviderConnectionError(f"cannot reach {where}{detail}", provider=provider)
    if isinstance(exc, table.status):
        return status_error(exc, provider=provider, api_key=api_key, message_of=message_of)
    transport = transport_error(exc, provider=provider, doing="the call", redact=api_key)
    if transport is not None:
        return transport
    return ProviderError(redact(f"{type(exc).__name__}: {exc}", api_key), provider=provider)


def status_error(
    exc: BaseException,
    *,
    provider: str,
    api_key: str | None = None,
    message_of: MessageOf = error_message,
) -> ProviderError:
    """The error for an SDK's answered-status exception: status, body and headers kept."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    body: Any = getattr(exc, "body", None)
    try:
        content = response.content if response is not None else None
        if content:
            body = orjson.loads(content)
    except Exception:  # a streamed response not read, or not JSON: keep the SDK's body
        pass
    if isinstance(body, str):
        body = redact(body, api_key)
    fallback = str(getattr(exc, "message", None) or f"HTTP {status}")
    message, code = message_of(body, fallback)
    headers = getattr(response, "headers", None)
    return error_from_status(
        status if isinstance(status, int) else None,
        redact(message, api_key),
        provider=provider,
        body=body,
        headers=dict(headers) if headers is not None else {},
        code=code,
    )
