"""The HTTP stack under the adapters: one table of its failures, and the pooled client.

The SDKs wrap a failure that happens while they make a call (``APITimeoutError``,
``APIConnectionError``), but not one that happens after they hand a streamed
response over: a results file whose download breaks off mid-body raises the
HTTP library's own exception in the caller. The SDKs of today run on
``httpx2``; LiteLLM still reaches some vendors through ``httpx`` or
``aiohttp``. :func:`transport_error` knows all of them, so every provider
module turns such a failure into a :class:`~providers.errors.ProviderTimeoutError`
or :class:`~providers.errors.ProviderConnectionError` (both retryable) in the
same words, and nothing above the provider layer sees an HTTP library's
exception.

:func:`pooled_client` is the ``http_client`` seam every adapter shares: the
client a test hands in, or a pool made with the provider's timeouts.

The HTTP libraries are imported on first use, not with this module: start-up
stays fast and a library that is not installed is simply not in the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from providers.errors import ProviderConnectionError, ProviderError, ProviderTimeoutError

if TYPE_CHECKING:
    import httpx2

__all__ = ["pooled_client", "transport_error"]

# (module, timeout classes, every other failure to carry a request or its answer).
# Not an answered status (httpx's HTTPStatusError): that is the SDK's to translate.
_LIBRARIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("httpx2", ("TimeoutException",), ("RequestError",)),
    ("httpx", ("TimeoutException",), ("RequestError",)),
    ("aiohttp", ("ServerTimeoutError",), ("ClientConnectionError", "ClientPayloadError")),
)


@cache
def _table() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    timeouts: list[type[BaseException]] = [TimeoutError]
    failures: list[type[BaseException]] = [ConnectionError]
    for module_name, timeout_names, failure_names in _LIBRARIES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        timeouts += [getattr(module, n) for n in timeout_names if hasattr(module, n)]
        failures += [getattr(module, n) for n in failure_names if hasattr(module, n)]
    return tuple(timeouts), tuple(failures)


def transport_error(
    exc: BaseException, *, provider: str, doing: str, redact: str | None = None
) -> ProviderError | None:
    """The error-tree counterpart of a transport failure, or ``None`` if ``exc`` is not one.

    Args:
        exc: the exception raised by an HTTP library (or the builtin
            ``TimeoutError`` / ``ConnectionError``).
        provider: the provider name the error carries.
        doing: what was under way, as the message begins it
            (``"download of file-abc"``).
        redact: a secret (the API key) never to appear in the message.
    """
    timeouts, failures = _table()
    if isinstance(exc, timeouts):
        return ProviderTimeoutError(f"{doing} timed out", provider=provider)
    if isinstance(exc, failures):
        detail = str(exc)
        if redact and len(redact) >= 4:
            detail = detail.replace(redact, "***")
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        return ProviderConnectionError(f"{doing} broke off ({reason})", provider=provider)
    return None


def pooled_client(
    given: httpx2.AsyncClient | None,
    *,
    timeout: float,
    connect_timeout: float,
    max_connections: int,
    make: Callable[..., httpx2.AsyncClient] | None = None,
) -> httpx2.AsyncClient:
    """The HTTP client an adapter sends through: ``given`` (the test seam), or a pool of its own.

    Every adapter takes an ``http_client`` (an ``httpx2.AsyncClient``, e.g.
    with a ``MockTransport``) and otherwise makes this one: ``timeout`` per
    call, at most ``connect_timeout`` (never more than ``timeout``) to
    connect, ``max_connections`` kept alive. ``make`` is the SDK's own
    client class when it has one (its default headers and proxies apply);
    by default ``httpx2.AsyncClient``.
    """
    if given is not None:
        return given
    import httpx2

    options: dict[str, Any] = {
        "timeout": httpx2.Timeout(timeout, connect=min(connect_timeout, timeout)),
        "limits": httpx2.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    }
    return (make or httpx2.AsyncClient)(**options)
