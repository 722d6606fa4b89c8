"""Gemini's wire basics: its error body, its JSON answers, its timestamps and ids."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "B64URL",
    "LOWER",
    "STATUS_NAMES",
    "id_rng",
    "last_segment",
    "wire_error",
    "wire_ok",
    "wire_time",
]

#: The characters of Gemini's ids: lower-case (batches, files) and base64url (uploads, answers).
LOWER = string.ascii_lowercase + string.digits
B64URL = string.ascii_letters + string.digits + "-_"

#: The names of Gemini's error statuses.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: Ids need not be reproducible: one generator for them all.
id_rng = random.Random()


def wire_time(t: float) -> str:
    """``t`` as Gemini writes a time (RFC 3339, UTC, microseconds)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def wire_error(status: int, message: str, details: list[Any] | None = None) -> web.Response:
    """Gemini's error body (``code``, ``message``, ``status``) with ``status``."""
    body: dict[str, Any] = {
        "error": {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }
    if details:
        body["error"]["details"] = details
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def wire_ok(data: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A 200 with ``data`` as JSON."""
    return web.Response(
        body=orjson.dumps(data), content_type="application/json", charset="UTF-8", headers=headers
    )


def last_segment(request: web.Request) -> str:
    """The path's last segment: ``{id}``, ``{id}:verb`` or ``{model}:verb``."""
    return request.path.rsplit("/", 1)[-1]
