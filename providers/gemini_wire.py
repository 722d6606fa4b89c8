"""Gemini's wire format: request bodies, answers, batch objects and their states.

One body builder serves the immediate ``generateContent`` call, the inline
batch entry and the batch file line alike; answers and batch objects are
read from the documented REST JSON (the SDK's typed ``BatchJob`` leaves out
the ``batchStats`` counts). :mod:`providers.gemini` sends and receives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from providers.errors import ProviderError, UnusableAnswerError, error_from_status
from providers.types import BatchInfo, BatchState, Completion, ItemResult, Request, Usage

__all__ = [
    "DISPLAY_PREFIX",
    "batch_info",
    "build_body",
    "completion_from_response",
    "item_result",
    "shard_of",
    "take_inline",
    "timestamp",
]

#: Prefix of the display name of every batch lexibatch creates (then the shard id).
DISPLAY_PREFIX = "lexibatch-"

_STATES: dict[str, BatchState] = {
    "BATCH_STATE_PENDING": BatchState.VALIDATING,
    "BATCH_STATE_RUNNING": BatchState.IN_PROGRESS,
    "BATCH_STATE_SUCCEEDED": BatchState.COMPLETED,
    "BATCH_STATE_FAILED": BatchState.FAILED,
    "BATCH_STATE_CANCELLED": BatchState.CANCELLED,
    "BATCH_STATE_EXPIRED": BatchState.EXPIRED,
}
# Finish reasons that mean the model declined: no answer to validate.
_REFUSALS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)


# ---------------------------------------------------------------- bodies


def build_body(request: Request) -> dict[str, Any]:
    """The ``GenerateContentRequest`` JSON for ``request`` (immediate call and batch line alike).

    System messages become ``systemInstruction``; assistant turns have the
    role ``model``; ``request.extras`` are merged in last, unchanged, but for a
    ``generationConfig``, merged into the request's own (whose settings win).
    """
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "system":
            system.append(m.content)
        else:
            role = "model" if m.role == "assistant" else "user"
            contents.append({"role": role, "parts": [{"text": m.content}]})
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {}
    if request.json_schema is not None:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = request.json_schema
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if config:
        body["generationConfig"] = config
    if request.extras:
        extras = dict(request.extras)
        given = extras.pop("generationConfig", None)
        if isinstance(given, dict) and config:
            # Merged into the request's own: a topP given there keeps the schema's settings.
            extras["generationConfig"] = {**given, **config}
        elif given is not None:
            extras["generationConfig"] = given
        body.update(extras)
    return body


# --------------------------------------------------------------- answers


def _int(value: Any) -> int:
    # Counts come as numbers in answers and as strings in batchStats.
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def completion_from_response(
    response: Mapping[str, Any], *, provider: str = "gemini"
) -> Completion:
    """A :class:`Completion` from a ``GenerateContentResponse`` (REST JSON).

    Thinking tokens are output tokens (they are billed as such) and are also
    counted as reasoning tokens. A candidate stopped for safety, recitation
    and the like, or a prompt blocked outright, is a refusal.
    """
    candidates = response.get("candidates") or ()
    candidate = candidates[0] if candidates else {}
    parts = (candidate.get("content") or {}).get("parts") or ()
    text = "".join(
        str(p.get("text") or "") for p in parts if isinstance(p, Mapping) and not p.get("thought")
    )
    usage = response.get("usageMetadata") or {}
    thoughts = _int(usage.get("thoughtsTokenCount"))
    finish = candidate.get("finishReason")
    refusal = None
    blocked = (response.get("promptFeedback") or {}).get("blockReason")
    if blocked:
        refusal = f"the prompt was blocked ({blocked})"
    elif finish in _REFUSALS:
        refusal = f"the answer was stopped ({finish})"
    return Completion(
        text,
        Usage(
            _int(usage.get("promptTokenCount")),
            _int(usage.get("candidatesTokenCount")) + thoughts,
            _int(usage.get("cachedContentTokenCount")),
            thoughts,
        ),
        str(response.get("modelVersion") or ""),
        response.get("responseId"),
        "length" if finish == "MAX_TOKENS" else ("stop" if finish == "STOP" else finish),
        refusal,
    )


def _status_error(error: Mapping[str, Any], provider: str) -> ProviderError:
    """A ``google.rpc.Status`` (an item's or an answer's ``error``) in the error tree."""
    code = _int(error.get("code"))
    # Item errors carry an HTTP code; an operation's error may carry a gRPC one.
    status = code if code >= 400 else (400 if code in (3, 5, 9) else 500)
    message = str(error.get("message") or error.get("status") or "the request failed")
    return error_from_status(
        status, message, provider=provider, body=dict(error), code=error.get("status")
    )


def item_result(key: str, item: Mapping[str, Any], *, provider: str = "gemini") -> ItemResult:
    """One answer of a batch (a results-file line or an inline response), as an item result.

    An answer that cannot be read ends its request unretried (it may be paid
    for): it is never the end of reading the others.
    """
    try:
        response = item.get("response")
        if isinstance(response, Mapping):
            return ItemResult(key, completion=completion_from_response(response, provider=provider))
        error = item.get("error")
        if isinstance(error, Mapping):
            return ItemResult(key, error=_status_error(error, provider))
    except Exception as exc:
        what = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        return ItemResult(
            key,
            error=UnusableAnswerError(
                f"its answer could not be read ({what}); not sent again, as it may be paid "
                "for (run it again to pay again)",
                provider=provider,
            ),
        )
    return ItemResult(
        key, error=ProviderError("batch answer has neither response nor error", provider=provider)
    )


# --------------------------------------------------------------- batches


def timestamp(value: Any) -> float:
    if not isinstance(value, str):
        return float("inf")
    text = value.replace("Z", "+00:00")
    # Nanoseconds do not parse: keep six digits of the fraction.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return float("inf")


def batch_info(raw: Mapping[str, Any]) -> BatchInfo:
    """A :class:`BatchInfo` from a batch operation (``{"name", "metadata", "done", ...}``).

    A batch is ready once its state is terminal; a succeeded (or cancelled)
    one names its results file (``output.responsesFile``) or carries its
    answers inline. An expired batch has no results: its requests end by its fate.
    """
    meta = raw.get("metadata") or {}
    state = _STATES.get(str(meta.get("state")), BatchState.IN_PROGRESS)
    stats = meta.get("batchStats") or {}
    output = meta.get("output") or raw.get("response") or {}
    error = raw.get("error")
    errors: tuple[str, ...] = ()
    if isinstance(error, Mapping):
        errors = (str(error.get("message") or error.get("code") or "failed"),)
    total = _int(stats.get("requestCount"))
    succeeded = _int(stats.get("successfulRequestCount"))
    failed = _int(stats.get("failedRequestCount"))
    if state.terminal:
        # Requests an ended batch never ran (expired, cancelled) failed too.
        failed = max(failed, total - succeeded)
    return BatchInfo(
        id=str(raw.get("name") or meta.get("name")),
        state=state,
        total=total,
        succeeded=succeeded,
        failed=failed,
        input_file_id=(meta.get("inputConfig") or {}).get("fileName"),
        output_file_id=output.get("responsesFile"),
        results_ready=state.terminal,
        errors=errors,
        raw=raw,
    )


def take_inline(raw: dict[str, Any]) -> list[Any] | None:
    """Remove a finished inline batch's answers from ``raw`` (counted in its place); them."""
    found: list[Any] | None = None
    for holder in ((raw.get("metadata") or {}).get("output"), raw.get("response")):
        if isinstance(holder, dict) and isinstance(holder.get("inlinedResponses"), dict):
            answers = holder.pop("inlinedResponses").get("inlinedResponses")
            if isinstance(answers, list):
                found = answers
    if found is not None:
        raw["inlinedResponseCount"] = len(found)
    return found


def shard_of(display_name: Any) -> str | None:
    if isinstance(display_name, str) and display_name.startswith(DISPLAY_PREFIX):
        return display_name[len(DISPLAY_PREFIX) :]
    return None
