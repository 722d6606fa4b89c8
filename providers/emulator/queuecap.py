"""The enqueued-token limit: how many tokens one model may have in batches still in progress.

Enabled by ``enqueued_token_limit`` (see
:class:`~providers.emulator.config.EmulatorConfig`). The real APIs cap what an
organisation may have waiting per model; the emulator counts it the same way
for every provider:

- a request's enqueued tokens are its input (prompt) tokens, as the real APIs
  count them for their queues ("enqueued prompt tokens"; what a request may
  output does not count): each message's text and role with the chat framing
  (three tokens a message, three for the reply), and the JSON schema it asks
  for or its tools' parameters, as sent — counted with a real tokenizer
  (tiktoken's encoding of the model, ``o200k_base`` for models it does not
  know; characters / 4 where no encoding is on disk), the count
  :func:`providers.tokens.count_tokens` makes;
- a model's enqueued tokens are the sum over its batches that have not ended
  (neither completed, failed, expired nor cancelled);
- the count is per API (OpenAI, Anthropic, Gemini, Mistral) and model;
- a batch that would take its model past the limit is refused as the real APIs
  refuse it: OpenAI accepts the create, then the batch goes ``validating`` →
  ``failed`` with ``errors.data[0].code = "token_limit_exceeded"``; Anthropic
  answers the create with a 429 ``rate_limit_error``, Gemini with a 429
  ``RESOURCE_EXHAUSTED``, Mistral with a 429 ``rate_limited``. A refused batch
  holds no room, bills nothing and counts as never seen.

Counting a batch's tokens costs a tokenizer pass over every prompt, so a
batch is counted when its count is first needed, not when it is created: at
its create while a limit is set, at the first create under a limit set later
(every batch not ended is counted then), before its input file is deleted
while it has not ended, and when ``GET /_emulator/batches/{id}/tokens`` asks.
The sums, and so every refusal, are the same as counting each batch at its
create.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson

from providers.emulator.promptschema import content_texts
from providers.tokens import count_tokens

__all__ = [
    "TokensOf",
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

# Chat framing: per message (its role counted as one more), and for the reply's start.
_PER_MESSAGE = 3
_PER_REPLY = 3

#: A batch record's enqueued tokens by model (counted when first asked for).
TokensOf = Callable[[Mapping[str, Any]], Mapping[str, int]]


def _stored(rec: Mapping[str, Any]) -> Mapping[str, int]:
    tokens: Mapping[str, int] = rec.get("tokens") or {}
    return tokens


def _schemas(body: Mapping[str, Any]) -> list[Any]:
    """The JSON schemas a body sends: its response format's, and its tools' parameters."""
    found: list[Any] = []
    fmt = body.get("response_format")  # OpenAI chat, Mistral (and Gemini's, translated)
    if isinstance(fmt, Mapping) and isinstance(fmt.get("json_schema"), Mapping):
        found.append(fmt["json_schema"].get("schema"))
    for holder, key in ((body.get("output_config"), "format"), (body, "output_format")):
        fmt = holder.get(key) if isinstance(holder, Mapping) else None  # Anthropic
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            found.append(fmt.get("schema"))
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, Mapping):
            fn = tool.get("function")
            found.append(fn.get("parameters") if isinstance(fn, Mapping) else None)
            found.append(tool.get("input_schema"))
    return [schema for schema in found if schema is not None]


def request_tokens(body: Mapping[str, Any]) -> int:
    """The enqueued tokens of one request body: its prompt's tokens, framing and schema included."""
    model = str(body.get("model") or "")
    tokens = _PER_REPLY
    system = body.get("system")  # Anthropic's, beside the messages
    if system:
        tokens += _PER_MESSAGE + 1 + sum(count_tokens(t, model) for t in content_texts(system))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, Mapping):
            texts = content_texts(message.get("content"))
            tokens += _PER_MESSAGE + 1 + sum(count_tokens(t, model) for t in texts)
    for schema in _schemas(body):
        tokens += _schema_tokens(orjson.dumps(schema).decode(), model)
    return tokens


@lru_cache(maxsize=256)
def _schema_tokens(schema_json: str, model: str) -> int:
    # A batch's requests share a handful of schemas: each is counted once.
    return count_tokens(schema_json, model)


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
            tokens[model] = tokens.get(model, 0) + request_tokens(body)
    return tokens


def anthropic_tokens(requests: Iterable[Any]) -> dict[str, int]:
    """Enqueued tokens by model of a message batch's ``requests``."""
    tokens: dict[str, int] = {}
    for request in requests:
        params = request.get("params") if isinstance(request, dict) else None
        if not isinstance(params, dict):
            continue
        model = str(params.get("model"))
        tokens[model] = tokens.get(model, 0) + request_tokens(params)
    return tokens


def chat_tokens(items: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    """Enqueued tokens by model of ``(custom_id, chat body)`` items (Gemini, Mistral)."""
    tokens: dict[str, int] = {}
    for _, body in items:
        model = str(body.get("model"))
        tokens[model] = tokens.get(model, 0) + request_tokens(body)
    return tokens


def _api(rec: Mapping[str, Any]) -> str:
    # Gemini and Mistral batches run on the OpenAI engine, named by their wire.
    return str(rec.get("wire") or rec["provider"])


def enqueued(
    batches: Iterable[Mapping[str, Any]], api: str, model: str, tokens_of: TokensOf = _stored
) -> int:
    """Tokens ``model`` has in ``api``'s batches that have not ended.

    ``tokens_of`` gives a batch's count (by default the record's own ``tokens``);
    it is asked only for the batches that count.
    """
    return sum(
        int(tokens_of(rec).get(model, 0))
        for rec in batches
        if _api(rec) == api and rec["final"] is None and not rec.get("refused")
    )


def _over(
    batches: Iterable[Mapping[str, Any]],
    api: str,
    tokens: Mapping[str, int],
    limit: int,
    tokens_of: TokensOf,
) -> str | None:
    """The first model of ``tokens`` that the new batch would take past ``limit``."""
    recs = list(batches)
    for model, count in tokens.items():
        if enqueued(recs, api, model, tokens_of) + count > limit:
            return model
    return None


def openai_refusal(
    batches: Iterable[Mapping[str, Any]],
    tokens: Mapping[str, int],
    limit: int | None,
    tokens_of: TokensOf = _stored,
) -> dict[str, Any] | None:
    """The ``errors.data`` entry of an OpenAI batch over the limit, or ``None``."""
    if limit is None:
        return None
    model = _over(batches, "openai", tokens, limit, tokens_of)
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
    batches: Iterable[Mapping[str, Any]],
    tokens: Mapping[str, int],
    limit: int | None,
    tokens_of: TokensOf = _stored,
) -> str | None:
    """The message of the 429 refusing a message batch over the limit, or ``None``."""
    if limit is None:
        return None
    model = _over(batches, "anthropic", tokens, limit, tokens_of)
    if model is None:
        return None
    return (
        f"Your organization has reached its limit of {limit:,} enqueued tokens for {model} "
        "in message batches being processed. Please try again once some batches have ended."
    )


def wire_refusal(
    batches: Iterable[Mapping[str, Any]],
    wire: str,
    tokens: Mapping[str, int],
    limit: int | None,
    tokens_of: TokensOf = _stored,
) -> str | None:
    """The message of the 429 refusing a Gemini or Mistral batch over the limit, or ``None``."""
    if limit is None:
        return None
    model = _over(batches, wire, tokens, limit, tokens_of)
    if model is None:
        return None
    return (
        f"Enqueued token limit of {limit:,} reached for {model} batches. "
        "Please try again once some batches have ended."
    )
