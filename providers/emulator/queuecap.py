"""The enqueued-token limit: how many tokens one model may have in batches still in progress.

Enabled by ``enqueued_token_limit`` (see
:class:`~providers.emulator.config.EmulatorConfig`). The real APIs cap what an
organisation may have waiting per model; the emulator counts it the same way
for every provider:

- a request's enqueued tokens are its prompt, counted as the emulator counts
  every prompt (about one token per four bytes of the request body as sent,
  schema included), plus the output it may produce (``max_tokens``,
  ``max_completion_tokens`` or ``max_output_tokens``; nothing when it sets none);
- a model's enqueued tokens are the sum over its batches that have not ended
  (neither completed, failed, expired nor cancelled);
- the count is per API (OpenAI, Anthropic, Gemini, Mistral) and model;
- a batch that would take its model past the limit is refused as the real APIs
  refuse it: OpenAI accepts the create, then the batch goes ``validating`` →
  ``failed`` with ``errors.data[0].code = "token_limit_exceeded"``; Anthropic
  answers the create with a 429 ``rate_limit_error``, Gemini with a 429
  ``RESOURCE_EXHAUSTED``, Mistral with a 429 ``rate_limited``. A refused batch
  holds no room, bills nothing and counts as never seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from providers.emulator.answers import count_tokens

__all__ = [
    "anthropic_refusal",
    "anthropic_tokens",
    "chat_tokens",
    "enqueued",
    "openai_refusal",
    "openai_tokens",
    "request_tokens",
    "wire_refusal",
]

#: The organisation named in the refusals (as in the emulator's rate-limit messages).
ORG = "org-lexibatch-emulator"

_OUTPUT_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def request_tokens(body: Mapping[str, Any], size: int) -> int:
    """The enqueued tokens of one request: its ``size``-byte body plus its maximum output."""
    output = 0
    for key in _OUTPUT_KEYS:
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            output = value
            break
    return count_tokens(size) + output


def openai_tokens(data: bytes) -> dict[str, int]:
    """Enqueued tokens by model of an OpenAI batch input file (unreadable lines count 0)."""
    tokens: dict[str, int] = {}
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            body = orjson.loads(line)["body"]
            model = str(body["model"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(body, dict):
            tokens[model] = tokens.get(model, 0) + request_tokens(body, len(orjson.dumps(body)))
    return tokens


def anthropic_tokens(requests: Iterable[Any]) -> dict[str, int]:
    """Enqueued tokens by model of a message batch's ``requests``."""
    tokens: dict[str, int] = {}
    for request in requests:
        params = request.get("params") if isinstance(request, dict) else None
        if not isinstance(params, dict):
            continue
        model = str(params.get("model"))
        tokens[model] = tokens.get(model, 0) + request_tokens(params, len(orjson.dumps(params)))
    return tokens


def chat_tokens(items: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    """Enqueued tokens by model of ``(custom_id, chat body)`` items (Gemini, Mistral)."""
    tokens: dict[str, int] = {}
    for _, body in items:
        model = str(body.get("model"))
        tokens[model] = tokens.get(model, 0) + request_tokens(body, len(orjson.dumps(body)))
    return tokens


def _api(rec: Mapping[str, Any]) -> str:
    # Gemini and Mistral batches run on the OpenAI engine, named by their wire.
    return str(rec.get("wire") or rec["provider"])


def enqueued(batches: Iterable[Mapping[str, Any]], api: str, model: str) -> int:
    """Tokens ``model`` has in ``api``'s batches that have not ended."""
    return sum(
        int((rec.get("tokens") or {}).get(model, 0))
        for rec in batches
        if _api(rec) == api and rec["final"] is None and not rec.get("refused")
    )


def _over(
    batches: Iterable[Mapping[str, Any]], api: str, tokens: Mapping[str, int], limit: int
) -> str | None:
    """The first model of ``tokens`` that the new batch would take past ``limit``."""
    recs = list(batches)
    for model, count in tokens.items():
        if enqueued(recs, api, model) + count > limit:
            return model
    return None


def openai_refusal(
    batches: Iterable[Mapping[str, Any]], tokens: Mapping[str, int], limit: int | None
) -> dict[str, Any] | None:
    """The ``errors.data`` entry of an OpenAI batch over the limit, or ``None``."""
    if limit is None:
        return None
    model = _over(batches, "openai", tokens, limit)
    if model is None:
        return None
    return {
        "code": "token_limit_exceeded",
        "message": f"Enqueued token limit reached for {model} in organization {ORG}. "
        f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches "
        "have been completed.",
        "param": None,
        "line": None,
    }


def anthropic_refusal(
    batches: Iterable[Mapping[str, Any]], tokens: Mapping[str, int], limit: int | None
) -> str | None:
    """The message of the 429 refusing a message batch over the limit, or ``None``."""
    if limit is None:
        return None
    model = _over(batches, "anthropic", tokens, limit)
    if model is None:
        return None
    return (
        f"Your organization has reached its limit of {limit:,} enqueued tokens for {model} "
        "in message batches being processed. Please try again once some batches have ended."
    )


def wire_refusal(
    batches: Iterable[Mapping[str, Any]], wire: str, tokens: Mapping[str, int], limit: int | None
) -> str | None:
    """The message of the 429 refusing a Gemini or Mistral batch over the limit, or ``None``."""
    if limit is None:
        return None
    model = _over(batches, wire, tokens, limit)
    if model is None:
        return None
    return (
        f"Enqueued token limit of {limit:,} reached for {model} batches. "
        "Please try again once some batches have ended."
    )
