"""The emulator's answer envelopes: JSON bodies, error shapes and headers of each API."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from providers.emulator import ids

__all__ = [
    "ANTHROPIC_ORG",
    "JSON",
    "ORG",
    "anthropic_error",
    "anthropic_headers",
    "json_response",
    "openai_error",
    "openai_headers",
    "retry_headers",
]

JSON = "application/json"
ORG = "lexibatch-emulator"
ANTHROPIC_ORG = "00000000-0000-4000-8000-00000000e1a7"


def openai_headers() -> dict[str, str]:
    """The headers every OpenAI answer carries."""
    return {
        "x-request-id": ids.openai_request_id(),
        "openai-version": "2020-10-01",
        "openai-organization": ORG,
        "openai-processing-ms": "1",
    }


def anthropic_headers(request_id: str | None = None) -> dict[str, str]:
    """The headers every Anthropic answer carries."""
    return {
        "request-id": request_id or ids.anthropic_id("req_"),
        "anthropic-organization-id": ANTHROPIC_ORG,
    }


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``data`` as a JSON answer."""
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def openai_error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error answer in OpenAI's shape."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(body, status, {**openai_headers(), **(headers or {})})


def anthropic_error(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An error answer in Anthropic's shape."""
    rid = ids.anthropic_id("req_")
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": rid}
    return json_response(body, status, {**anthropic_headers(rid), **(headers or {})})


def retry_headers(seconds: float) -> dict[str, str]:
    """``retry-after`` (seconds) and ``retry-after-ms``, as both APIs send on a 429."""
    text = f"{seconds:g}"
    return {"retry-after": text, "retry-after-ms": str(int(seconds * 1000))}
