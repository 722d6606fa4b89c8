"""OpenAI's wire format: request bodies, completions, batch objects and result lines.

Pure functions over JSON, no I/O: :mod:`providers.openai` sends what these
build and reads what they parse (LiteLLM's OpenAI-shaped batches too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec
import orjson

from providers.errors import (
    BatchCancelledError,
    BatchExpiredError,
    ProviderError,
    ProviderTimeoutError,
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

Api = Literal["chat", "responses"]

_STATES: dict[str, BatchState] = {state.value: state for state in BatchState}

# Cached response formats are keyed by id(schema); the dict also holds the
# schema itself, so an id cannot be reused while its entry lives.
_FORMAT_CACHE_MAX = 4096


class BodyBuilder:
    """Builds the request body of one API (``chat`` or ``responses``).

    The structured-output part of a body is made once per schema and shared
    by every request that asks for it. LiteLLM's OpenAI-compatible bodies
    come from here too.
    """

    __slots__ = ("_api", "_formats", "_jsons", "_serialized")

    def __init__(self, api: Api) -> None:
        self._api = api
        self._formats: dict[tuple[int, str | None], tuple[object, dict[str, Any]]] = {}
        # id(format) -> (the format made here, kept so its id is not reused; its JSON)
        self._serialized: dict[int, tuple[object, orjson.Fragment]] = {}
        # (id(schema), name) -> (the schema, kept so its id is not reused; its format's JSON)
        self._jsons: dict[tuple[int, str | None], tuple[object, orjson.Fragment]] = {}

    def _format(self, schema: Mapping[str, Any], name: str | None) -> dict[str, Any]:
        key = (id(schema), name)
        hit = self._formats.get(key)
        if hit is not None and hit[0] is schema:
            return hit[1]
        if self._api == "chat":
            fmt: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": name or "response", "schema": schema, "strict": True},
            }
        else:
            fmt = {
                "format": {
                    "type": "json_schema",
                    "name": name or "response",
                    "schema": schema,
                    "strict": True,
                }
            }
        if len(self._formats) >= _FORMAT_CACHE_MAX:
            self._formats.clear()
            self._serialized.clear()
            self._jsons.clear()
        self._formats[key] = (schema, fmt)
        return fmt

    def serialized(self, body: dict[str, Any]) -> bytes:
        """``orjson.dumps(body)`` of a body :meth:`build` made, its schema serialized once.

        The structured-output field of a body is the same object for every
        request of a schema: its JSON is kept and spliced in unchanged.
        """
        field = "response_format" if self._api == "chat" else "text"
        fmt = body.get(field)
        fragment = None if fmt is None else self._fragment(fmt)
        if fragment is None:
            return orjson.dumps(body)
        return orjson.dumps({**body, field: fragment})

    def line(self, request: Request, custom_id: str, url: str) -> bytes:
        """One batch input line, ``{"custom_id", "method": "POST", "url", "body"}``, serialized.

        The bytes of ``orjson.dumps`` of that line with the body :meth:`build`
        makes, in one call: the body's structured-output field goes in as
        its JSON, made once per schema.
        """
        body = self._body(request, request.model, self._format_json)
        return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})

    def _format_json(self, schema: Mapping[str, Any], name: str | None) -> orjson.Fragment:
        """The JSON of :meth:`_format`'s field for ``schema`` and ``name``, made once."""
        hit = self._jsons.get((id(schema), name))
        if hit is None or hit[0] is not schema:
            fragment = orjson.Fragment(orjson.dumps(self._format(schema, name)))
            hit = self._jsons[(id(schema), name)] = (schema, fragment)
        return hit[1]

    def _fragment(self, fmt: object) -> orjson.Fragment | None:
        """The JSON of a structured-output field made here; ``None`` for one that is not
        (an extra replaced it)."""
        hit = self._serialized.get(id(fmt))
        if hit is None or hit[0] is not fmt:
            if not any(fmt is made for _, made in self._formats.values()):
                return None
            hit = (fmt, orjson.Fragment(orjson.dumps(fmt)))
            self._serialized[id(fmt)] = hit
        return hit[1]

    def response_format(self, request: Request) -> dict[str, Any] | None:
        """The structured-output field of ``request``'s body; ``None`` without a schema."""
        if request.json_schema is None:
            return None
        return self._format(request.json_schema, request.schema_name)

    def build(self, request: Request, *, model: str | None = None) -> dict[str, Any]:
        """The JSON body for ``request`` (shared, never mutated afterwards).

        ``model`` replaces the request's model name (e.g. without a routing prefix).
        """
        return self._body(request, model or request.model, self._format)

    def _body(
        self,
        request: Request,
        model: str,
        field_of: Callable[[Mapping[str, Any], str | None], object],
    ) -> dict[str, Any]:
        """The body :meth:`build` makes, its structured-output field ``field_of(schema, name)``."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if self._api == "chat":
            body: dict[str, Any] = {"model": model, "messages": messages}
            if request.json_schema is not None:
                body["response_format"] = field_of(request.json_schema, request.schema_name)
            if request.max_tokens is not None:
                body["max_completion_tokens"] = request.max_tokens
        else:
            body = {"model": model, "input": messages}
            if request.json_schema is not None:
                body["text"] = field_of(request.json_schema, request.schema_name)
            if request.max_tokens is not None:
                body["max_output_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.extras:
            body.update(request.extras)
        return body


# ---------------------------------------------------------------- answers


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


# Usage values already made, by their token counts: a batch's answers repeat a
# few thousand distinct counts at most, and a frozen Usage costs five
# attribute writes to make. Shared instances are safe: Usage is immutable.
_USAGES: dict[tuple[int, int, int, int, int], Usage] = {}
_USAGES_MAX = 8192


def _usage(counts: tuple[int, int, int, int, int]) -> Usage:
    """The :class:`Usage` of ``counts`` (input, output, cached, reasoning, cache writes)."""
    try:
        usage = _USAGES.get(counts)
    except TypeError:  # a count of an unhashable type: made as it came, as ever
        return Usage(*counts)
    if usage is None:
        if len(_USAGES) >= _USAGES_MAX:
            _USAGES.clear()
        usage = _USAGES[counts] = Usage(*counts)
    return usage


def _chat_completion(body: Mapping[str, Any], request_id: str | None) -> Completion:
    # Positional construction and inline lookups: this runs once per result line.
    choices = body.get("choices")
    choice = choices[0] if choices else {}
    message = choice.get("message") or {}
    usage = body.get("usage") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Completion(
        message.get("content") or "",
        _usage(
            (
                usage.get("prompt_tokens") or 0,
                usage.get("completion_tokens") or 0,
                prompt_details.get("cached_tokens") or 0,
                completion_details.get("reasoning_tokens") or 0,
                prompt_details.get("cache_write_tokens") or 0,
            )
        ),
        body.get("model") or "",
        request_id or body.get("id"),
        choice.get("finish_reason"),
        message.get("refusal"),
    )


def _responses_completion(body: Mapping[str, Any], request_id: str | None) -> Completion:
    texts: list[str] = []
    refusals: list[str] = []
    for item in body.get("output") or ():
        if item.get("type") != "message":
            continue
        for part in item.get("content") or ():
            kind = part.get("type")
            if kind == "output_text":
                texts.append(part.get("text") or "")
            elif kind == "refusal":
                refusals.append(part.get("refusal") or "")
    usage = body.get("usage") or {}
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    # The raw stop reason: the status, or why the response is incomplete
    # (``max_output_tokens``, ``content_filter``).
    finish = body.get("status")
    if finish == "incomplete":
        finish = (body.get("incomplete_details") or {}).get("reason") or finish
    return Completion(
        content="".join(texts),
        usage=Usage(
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cached_tokens=_int(input_details.get("cached_tokens")),
            reasoning_tokens=_int(output_details.get("reasoning_tokens")),
            cache_creation_tokens=_int(input_details.get("cache_write_tokens")),
        ),
        model=body.get("model") or "",
        request_id=request_id or body.get("id"),
        finish_reason=finish,
        refusal="".join(refusals) or None,
    )


def _completion(body: Mapping[str, Any], request_id: str | None) -> Completion:
    if body.get("object") == "response" or "output" in body:
        return _responses_completion(body, request_id)
    return _chat_completion(body, request_id)


def _error_message(body: Any, fallback: str) -> tuple[str, str | None]:
    """The provider's error message and code from an error body."""
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            message = err.get("message") or fallback
            code = err.get("code") or err.get("type")
            return str(message), (str(code) if code is not None else None)
        if isinstance(err, str) and err:
            return err, None
    elif isinstance(body, str) and body.strip():
        return body.strip()[:500], None
    return fallback, None


def _item_error(code: str | None, message: str, provider: str) -> ProviderError:
    if code == "batch_expired":
        return BatchExpiredError(message, provider=provider, code=code)
    if code == "batch_cancelled":
        return BatchCancelledError(message, provider=provider, code=code)
    if code == "request_timeout":
        return ProviderTimeoutError(message, provider=provider, code=code)
    return ProviderError(message, provider=provider, code=code)


# The common line of an output file, a chat completion answered with HTTP 200,
# decoded straight into these types: only the fields read are made, where a
# JSON parser makes a dict for every object of the line. Fields are optional,
# as the general parser reads them; a line of any other shape or type fails
# to decode and is read by the general parser. gc=False: they hold no cycles.


class _Details(msgspec.Struct, gc=False):
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None


class _Message(msgspec.Struct, gc=False):
    content: str | None = None
    refusal: str | None = None


class _Choice(msgspec.Struct, gc=False):
    message: _Message | None = None
    finish_reason: str | None = None


class _Body(msgspec.Struct, gc=False):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    model: str | None = None
    id: str | None = None
    object: str | None = None
    # Present in a Responses API body, which the general parser reads.
    output: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class _Response(msgspec.Struct, gc=False):
    status_code: int | None = None
    request_id: str | None = None
    body: _Body | None = None


class _Line(msgspec.Struct, gc=False):
    custom_id: str
    response: _Response | None = None


_decode_line = msgspec.json.Decoder(_Line).decode


def parse_result_line(line: bytes | str, provider: str = "openai") -> ItemResult:
    """One line of a batch output or error file, as an :class:`ItemResult`.

    Output lines carry ``response: {status_code, request_id, body}``; error-file
    lines either a non-200 ``response`` with ``body.error`` or ``response: null``
    and ``error: {code, message}`` (``batch_expired``, ``batch_cancelled``,
    ``request_timeout``, ...). A chat completion answered with HTTP 200 is
    decoded typed (see ``_Line``), any other line as JSON; both read it the
    same way.

    Raises:
        ValueError: the line is not a JSON object with a ``custom_id``.
    """
    try:
        parsed = _decode_line(line)
    except msgspec.DecodeError:  # its ValidationError too: another shape, read below
        return _parse_any_line(line, provider)
    response = parsed.response
    if response is None or response.status_code != 200:
        return _parse_any_line(line, provider)
    body = response.body
    if body is None or body.object == "response" or body.output is not msgspec.UNSET:
        return _parse_any_line(line, provider)
    choices = body.choices
    choice = choices[0] if choices else None
    message = None if choice is None else choice.message
    usage = body.usage
    if usage is None:
        counts = (0, 0, 0, 0, 0)
    else:
        prompt = usage.prompt_tokens_details
        output = usage.completion_tokens_details
        counts = (
            usage.prompt_tokens or 0,
            usage.completion_tokens or 0,
            (prompt.cached_tokens or 0) if prompt is not None else 0,
            (output.reasoning_tokens or 0) if output is not None else 0,
            (prompt.cache_write_tokens or 0) if prompt is not None else 0,
        )
    return ItemResult(
        parsed.custom_id,
        Completion(
            (message.content or "") if message is not None else "",
            _usage(counts),
            body.model or "",
            response.request_id or body.id,
            None if choice is None else choice.finish_reason,
            None if message is None else message.refusal,
        ),
    )


def _parse_any_line(line: bytes | str, provider: str) -> ItemResult:
    """Any line of a batch output or error file (see :func:`parse_result_line`).

    Output lines carry ``response: {status_code, request_id, body}``; error-file
    lines either a non-200 ``response`` with ``body.error`` or ``response: null``
    and ``error: {code, message}`` (``batch_expired``, ``batch_cancelled``,
    ``request_timeout``, ...).
    """
    data = orjson.loads(line)
    if not isinstance(data, dict) or "custom_id" not in data:
        raise ValueError("batch result line without custom_id")
    custom_id = str(data["custom_id"])
    response = data.get("response")
    if isinstance(response, dict):
        status = response.get("status_code")
        body = response.get("body")
        if status == 200 and isinstance(body, dict):
            return ItemResult(custom_id, completion=_completion(body, response.get("request_id")))
        message, code = _error_message(body, f"batch item failed with HTTP {status}")
        return ItemResult(
            custom_id,
            error=error_from_status(
                status if isinstance(status, int) else None,
                message,
                provider=provider,
                body=body,
                code=code,
            ),
        )
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or code or "batch item failed")
        return ItemResult(custom_id, error=_item_error(code, message, provider))
    return ItemResult(
        custom_id,
        error=ProviderError("batch line has neither response nor error", provider=provider),
    )


# ---------------------------------------------------------------- batches


def _batch_errors(raw: Mapping[str, Any]) -> tuple[str, ...]:
    errors = raw.get("errors")
    items = errors.get("data") if isinstance(errors, Mapping) else errors
    if not isinstance(items, list):
        return ()
    out: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            out.append(str(item))
            continue
        text = f"{item.get('code') or 'error'}: {item.get('message') or ''}".rstrip(": ")
        if item.get("line") is not None:
            text += f" (line {item['line']})"
        out.append(text)
    return tuple(out)


def batch_info(raw: Mapping[str, Any]) -> BatchInfo:
    """A :class:`BatchInfo` from an OpenAI Batch object.

    ``results_ready`` is true once the batch is terminal and every file its
    counts imply is there (an output file when items completed, an error file
    when items failed); see :mod:`providers.filegrace` for a file that stays
    missing.
    """
    state = _STATES.get(str(raw.get("status")), BatchState.IN_PROGRESS)
    counts = raw.get("request_counts") or {}
    total = _int(counts.get("total"))
    succeeded = _int(counts.get("completed"))
    failed = _int(counts.get("failed"))
    output_file_id = raw.get("output_file_id") or None
    error_file_id = raw.get("error_file_id") or None
    ready = False
    if state.terminal:
        ready = (succeeded == 0 or output_file_id is not None) and (
            failed == 0 or error_file_id is not None
        )
    model = raw.get("model")
    return BatchInfo(
        id=str(raw.get("id")),
        state=state,
        total=total,
        succeeded=succeeded,
        failed=failed,
        input_file_id=raw.get("input_file_id") or None,
        output_file_id=output_file_id,
        error_file_id=error_file_id,
        results_ready=ready,
        errors=_batch_errors(raw),
        raw=raw,
        model=model if isinstance(model, str) and model else None,
        usage=_batch_usage(raw.get("usage")),
    )


def _batch_usage(usage: Any) -> Usage | None:
    """The token totals of a batch object (OpenAI, batches made since September 2025)."""
    if not isinstance(usage, Mapping):
        return None
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cached_tokens=_int(input_details.get("cached_tokens")),
        reasoning_tokens=_int(output_details.get("reasoning_tokens")),
        cache_creation_tokens=_int(input_details.get("cache_write_tokens")),
    )
