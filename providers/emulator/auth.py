"""API keys: which ones the emulator accepts, and how it refuses the others.

By default any non-empty key is accepted (``api_keys`` unset), so tests and
the sandbox need none. With ``api_keys`` set, a key outside the set is
refused as the real APIs refuse it: OpenAI with 401 ``invalid_api_key`` and
the key shown masked; Anthropic with 401 ``authentication_error``
"invalid x-api-key". A missing key gets each API's own "no key" answer.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from providers.emulator.replies import anthropic_error, openai_error

__all__ = ["anthropic_auth", "mask_key", "openai_auth"]

_NO_OPENAI_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
    "field (i.e. Authorization: Basic base64(:YOUR_KEY)). You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)


def mask_key(key: str) -> str:
    """A key as OpenAI shows it in an error: its start and its last four characters."""
    if len(key) <= 8:
        return "*" * len(key)
    head = key[: min(8, len(key) - 4)] if key.startswith("sk-") else key[:3]
    return head + "*" * (len(key) - len(head) - 4) + key[-4:]


def openai_auth(request: web.Request, keys: Collection[str] | None) -> web.Response | None:
    """``None`` when the request's bearer key is accepted, else the 401 answer."""
    auth = request.headers.get("Authorization", "")
    key = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if not key:
        return openai_error(401, _NO_OPENAI_KEY)
    if keys is not None and key not in keys:
        return openai_error(
            401,
            f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    return None


def anthropic_auth(request: web.Request, keys: Collection[str] | None) -> web.Response | None:
    """``None`` when the request's ``x-api-key`` (or bearer token) is accepted, else the answer."""
    key = request.headers.get("x-api-key", "").strip()
    bearer = request.headers.get("Authorization", "")
    if not key and bearer.startswith("Bearer "):
        key = bearer[7:].strip()
    if not key:
        return anthropic_error(401, "authentication_error", "x-api-key header is required")
    if keys is not None and key not in keys:
        return anthropic_error(401, "authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return anthropic_error(
            400, "invalid_request_error", "anthropic-version: header is required"
        )
    return None
