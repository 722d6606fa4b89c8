"""Anthropic's wire format: Messages bodies, answers, batch objects and result lines.

Pure functions over JSON, no I/O: :mod:`providers.anthropic` sends what
these build and reads what they parse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson

from providers.errors import (
    BatchCancelledError,
    BatchExpiredError,
    ProviderError,
    error_from_status,
)
from providers.types import (
    BatchInfo,
    BatchState,
    Completion,
    ItemResult,
    Request,
    Usage,
)

StructuredOutput = Literal["json_schema", "tool"]

_JSON_HEADERS = {"content-type": "application/json"}
_RESULTS_HEADERS = {"accept": "application/binary"}

# The inner ``error.type`` of an Anthropic error, and the HTTP status it
# stands for; batch ``errored`` results carry only the type.
_ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_TOOL_DESCRIPTION = "Record the answer. Its input is the complete structured answer."


# --------------------------------------------------------------------------- bodies


def _tool_name(name: str | None) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in (name or "response"))
    return cleaned[:64] or "response"


class _SchemaCache:
    """The SDK's Anthropic-ready rewrite of each schema, computed once per schema object.

    Anthropic's structured output refuses some JSON-schema constraints
    (``minimum``, ``maxLength``, ...); the SDK's ``transform_schema`` moves
    them into the description, which is what its own typed helper sends.
    """

    _MAX = 1024

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}

    def get(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        entry = self._entries.get(id(schema))
        # The identity check guards against an id reused by a new object.
        if entry is not None and entry[0] is schema:
            return entry[1]
        transformed = _transform_schema(dict(schema))
        if len(self._entries) >= self._MAX:
            self._entries.clear()
        self._entries[id(schema)] = (schema, transformed)
        return transformed


def _transform_schema(schema: dict[str, Any]) -> dict[str, Any]:
    from anthropic.lib._parse._transform import transform_schema

    return transform_schema(schema)


_SCHEMAS = _SchemaCache()


def build_body(
    request: Request,
    *,
    structured_output: StructuredOutput = "json_schema",
    default_max_tokens: int = 1024,
) -> dict[str, Any]:
    """The Messages API body for ``request`` (shared by immediate calls and batch lines).

    System messages are joined into the top-level ``system``; ``max_tokens``,
    which Anthropic requires, falls back to ``default_max_tokens``;
    ``request.extras`` are merged in last, unchanged.
    """
    system: list[str] = []
    messages: list[dict[str, str]] = []
    for m in request.messages:
        if m.role == "system":
            system.append(m.content)
        else:
            messages.append({"role": m.role, "content": m.content})
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    schema = request.json_schema
    if schema is not None:
        if structured_output == "tool":
            name = _tool_name(request.schema_name)
            body["tools"] = [
                {"name": name, "description": _TOOL_DESCRIPTION, "input_schema": schema}
            ]
            body["tool_choice"] = {"type": "tool", "name": name}
        else:
            body["output_config"] = {
                "format": {"type": "json_schema", "schema": _SCHEMAS.get(schema)}
            }
    if request.extras:
        body.update(request.extras)
    return body


# --------------------------------------------------------------------------- answers


def _usage(data: Mapping[str, Any] | None) -> Usage:
    """Anthropic's usage in lexibatch's terms.

    Anthropic's ``input_tokens`` are only the tokens after the last cache
    breakpoint; cache reads and writes are counted apart. They are added in
    here, so that ``input_tokens`` is the whole prompt as for every provider.
    The ``cache_creation`` breakdown tells five-minute from one-hour writes.
    """
    if not data:
        return Usage()
    read = data.get("cache_read_input_tokens") or 0
    split = data.get("cache_creation") or {}
    hour = split.get("ephemeral_1h_input_tokens") or 0
    written = data.get("cache_creation_input_tokens")
    if written is None:
        written = hour + (split.get("ephemeral_5m_input_tokens") or 0)
    counts = ((data.get("input_tokens") or 0) + read + written, data.get("output_tokens") or 0)
    key = (*counts, read, written, hour)
    try:
        usage = _USAGES.get(key)
    except TypeError:  # a count of an unhashable type: made as it came, as ever
        usage = None
    if usage is None:
        usage = Usage(
            input_tokens=counts[0],
            output_tokens=counts[1],
            cached_tokens=read,
            cache_creation_tokens=written,
            cache_creation_1h_tokens=hour,
        )
        if len(_USAGES) >= _USAGES_MAX:
            _USAGES.clear()
        with contextlib.suppress(TypeError):
            _USAGES[key] = usage
    return usage


# Usage values already made, by their token counts: a batch's answers repeat a
# few thousand distinct counts at most, and answers sharing one Usage are
# priced once (plugins.ledger.Pricer). Shared instances are safe: Usage is immutable.
_USAGES: dict[tuple[Any, ...], Usage] = {}
_USAGES_MAX = 8192


def completion_from_message(
    message: Mapping[str, Any], *, request_id: str | None = None, provider: str = "anthropic"
) -> Completion:
    """A :class:`Completion` from a Messages API ``message`` object (parsed JSON).

    The content is the input of the first ``tool_use`` block as JSON when there
    is one (forced tool use), otherwise the text blocks joined (``thinking``
    blocks are skipped). A refusal is a completion too, with ``refusal`` set
    (its text, or what the stop reason says): it is billed, so its usage
    reaches the ledger before the request fails as refused.
    """
    blocks = message.get("content") or ()
    content: str | None = None
    texts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use" and content is None:
            content = orjson.dumps(block.get("input") or {}).decode()
    if content is None:
        content = texts[0] if len(texts) == 1 else "".join(texts)
    stop = message.get("stop_reason")
    return Completion(
        content=content,
        usage=_usage(message.get("usage")),
        model=message.get("model") or "",
        request_id=request_id or message.get("id"),
        finish_reason=stop,
        refusal=(content[:200] or "stop reason 'refusal'") if stop == "refusal" else None,
    )


def error_from_anthropic_error(
    error: Mapping[str, Any] | None, *, provider: str = "anthropic"
) -> ProviderError:
    """Map an Anthropic error object to the project's error tree.

    Accepts the envelope ``{"type": "error", "error": {"type", "message"}}``
    (what an ``errored`` batch result carries) or the inner object.
    """
    error = error or {}
    inner = error.get("error")
    if isinstance(inner, Mapping):
        error = inner
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or kind)
    status = _ERROR_TYPE_STATUS.get(kind, 500 if "overloaded" in kind else 400)
    return error_from_status(status, message, provider=provider, body=dict(error), code=kind)


def item_result_from_line(line: bytes | str, *, provider: str = "anthropic") -> ItemResult:
    """One results-JSONL line of a message batch, as an :class:`ItemResult`.

    Raises:
        ValueError: the line is not such a JSON object.
    """
    data = orjson.loads(line)
    if not isinstance(data, dict) or not isinstance(data.get("result") or {}, dict):
        raise ValueError(f"not a message batch result line: {line[:80]!r}")
    custom_id = str(data.get("custom_id"))
    result = data.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        completion = completion_from_message(result.get("message") or {}, provider=provider)
        return ItemResult(custom_id, completion=completion)
    error: ProviderError
    if kind == "errored":
        error = error_from_anthropic_error(result.get("error"), provider=provider)
    elif kind == "canceled":
        error = BatchCancelledError(
            "the batch was cancelled before this request ran", provider=provider, code="canceled"
        )
    elif kind == "expired":
        error = BatchExpiredError(
            "the batch expired before this request ran", provider=provider, code="expired"
        )
    else:
        error = ProviderError(
            f"unknown batch result type {kind!r}", provider=provider, body=dict(result)
        )
    return ItemResult(custom_id, error=error)


# --------------------------------------------------------------------------- batches


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def results_path(batch: BatchInfo) -> str:
    """Where to read ``batch``'s results, relative to the configured base URL.

    Anthropic's ``results_url`` is absolute (``https://api.anthropic.com/v1/
    messages/batches/…/results``): followed as it is, it would bypass a
    proxy or gateway given as ``base_url``, and send the key there. Only its
    path (and query) is kept; the client puts its own base URL before it.
    """
    url = batch.raw.get("results_url")
    if not url:
        return f"/v1/messages/batches/{batch.id}/results"
    parts = urlsplit(str(url))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def batch_info_from_dict(data: Mapping[str, Any], *, retry_after: float | None = None) -> BatchInfo:
    """A :class:`BatchInfo` from a ``message_batch`` object.

    ``ended`` maps to ``CANCELLED`` when a cancel was initiated, to ``EXPIRED``
    when any request expired, and to ``COMPLETED`` otherwise.
    """
    counts = data.get("request_counts") or {}
    processing = counts.get("processing") or 0
    succeeded = counts.get("succeeded") or 0
    errored = counts.get("errored") or 0
    canceled = counts.get("canceled") or 0
    expired = counts.get("expired") or 0
    status = data.get("processing_status")
    if status == "ended":
        if data.get("cancel_initiated_at"):
            state = BatchState.CANCELLED
        elif expired > 0 and processing == 0:
            state = BatchState.EXPIRED
        else:
            state = BatchState.COMPLETED
    elif status == "canceling":
        state = BatchState.CANCELLING
    else:
        state = BatchState.IN_PROGRESS
    return BatchInfo(
        id=str(data.get("id")),
        state=state,
        total=processing + succeeded + errored + canceled + expired,
        succeeded=succeeded,
        failed=errored + canceled + expired,
        results_ready=status == "ended" and bool(data.get("results_url")),
        raw=dict(data),
        retry_after=retry_after,
    )


def _request_body(path: Path) -> bytes:
    """The ``{"requests": [...]}`` body from the JSONL shard at ``path``.

    The lines are already encoded entries, so they are joined as bytes rather
    than parsed and serialized again.
    """
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    return b'{"requests":[' + b",".join(lines) + b"]}"
