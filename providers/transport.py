"""One table translating the HTTP stack's transport failures into the error tree.

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

The HTTP libraries are imported on first use, not with this module: start-up
stays fast and a library that is not installed is simply not in the table.
"""

from __future__ import annotations

import importlib
from functools import cache

from providers.errors import ProviderConnectionError, ProviderError, ProviderTimeoutError

__all__ = ["transport_error"]

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
