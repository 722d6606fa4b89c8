"""What the Gemini and Mistral emulations share: fault verdicts and batches on the OpenAI engine.

Both APIs are served by translating at their edge. An immediate call is
answered by the chat-completion builder and reshaped; a batch becomes an
internal OpenAI-format input file run by :class:`~providers.emulator.batchviews.BatchEngine`,
so timing, faults, cancellation, persistence (``--state``) and billing are
the engine's, and only the objects and result lines on the wire are the
vendor's own. A batch record carries ``wire`` (``gemini`` or ``mistral``),
which keeps it out of OpenAI's list and away from OpenAI's routes. The
engine's limits apply to them as to OpenAI's batches: ``openai_max_requests``
fails a batch with more requests, ``openai_max_bytes`` refuses a bigger one
at create. ``enqueued_token_limit`` is counted per API and model; a batch
past it is refused at create with each API's 429 (see :func:`queue_refusal`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

import orjson

from providers.emulator.answers import canonical, chat_completion
from providers.emulator.config import parse_markers
from providers.emulator.ids import Fresh
from providers.emulator.queuecap import chat_tokens, wire_refusal
from providers.emulator.rng import body_seed, roll

if TYPE_CHECKING:
    from aiohttp import web

    from providers.emulator.appcore import AppCore

__all__ = [
    "CHAT_ENDPOINT",
    "Verdict",
    "answer_chat",
    "create_batch",
    "immediate_verdict",
    "queue_refusal",
    "result_lines",
    "wire_batch",
]

#: The internal endpoint every translated batch runs as.
CHAT_ENDPOINT = "/v1/chat/completions"

_FRESH = Fresh()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an immediate call gets: ``ok``, ``rate_limit``, ``server_error`` or ``abandoned``
    (its client hung up while a slow answer was made, and ``bill_abandoned`` is off).

    Attributes:
        kind: the outcome.
        digest: the body's hash (the billing key).
        invalid: the answer's content must not fit its schema.
        other: for ``server_error``, the second kind of failure (503 / overloaded).
    """

    kind: str
    digest: str
    invalid: bool = False
    other: bool = False


async def immediate_verdict(
    app: AppCore, body: dict[str, Any], model: str, request: web.Request | None = None
) -> Verdict:
    """Decide (and wait out) the faults of one immediate call, as the OpenAI routes do.

    A refused call is recorded as seen but not billed; the caller bills an
    answered one with :meth:`State.immediate_call`. A slow call whose client
    (``request``) hung up while it waited is ``abandoned`` when the config's
    ``bill_abandoned`` is off: the caller answers nothing and bills nothing.
    """
    cfg = app.config
    digest = blake2b(canonical(body), digest_size=16).hexdigest()
    seen = app.state.seen_bodies.get(digest, 0)
    markers = parse_markers(model)
    if cfg.latency > 0:
        await asyncio.sleep(cfg.latency)
    if markers.wants("slow", seen) or (
        cfg.slow > 0 and roll(cfg.seed, "slow", digest, seen) < cfg.slow
    ):
        await asyncio.sleep(cfg.slow_seconds)
        gone = request is not None and (request.transport is None or request.transport.is_closing())
        if not cfg.bill_abandoned and gone:
            return Verdict("abandoned", digest)
    if markers.wants("rate-limit", seen) or (
        cfg.rate_limit > 0 and roll(cfg.seed, "rate_limit", digest, seen) < cfg.rate_limit
    ):
        app.state.immediate_call(digest, False, 0, 0)
        return Verdict("rate_limit", digest)
    if markers.wants("server-error", seen) or (
        cfg.server_error > 0 and roll(cfg.seed, "server_error", digest, seen) < cfg.server_error
    ):
        app.state.immediate_call(digest, False, 0, 0)
        other = roll(cfg.seed, "server_error_kind", digest, seen) < 0.5
        return Verdict("server_error", digest, other=other)
    invalid = markers.wants("schema-invalid", seen) or (
        cfg.schema_invalid > 0
        and roll(cfg.seed, "schema_invalid", digest, seen) < cfg.schema_invalid
    )
    return Verdict("ok", digest, invalid=invalid)


def answer_chat(app: AppCore, chat_body: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    """The chat completion answering ``chat_body`` (billed), for the caller to reshape."""
    answer = chat_completion(
        chat_body,
        body_seed(app.config.seed, canonical(chat_body)),
        invalid=verdict.invalid,
        ids=_FRESH,
        index=0,
        created=int(time.time()),
        batch=False,
    )
    app.state.immediate_call(verdict.digest, True, answer.input_tokens, answer.output_tokens)
    return answer.body


def create_batch(
    app: AppCore,
    *,
    batch_id: str,
    wire: str,
    items: list[tuple[str, dict[str, Any]]],
    metadata: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start a batch of ``(custom_id, chat body)`` items on the engine; its record.

    The items become an internal input file in OpenAI's line format; the
    engine works them out off the event loop like any OpenAI batch.
    """
    lines = [
        orjson.dumps({"custom_id": cid, "method": "POST", "url": CHAT_ENDPOINT, "body": body})
        for cid, body in items
    ]
    data = b"\n".join(lines) + b"\n" if lines else b""
    rec = app.state.add_file(data, f"{wire}_batch_input", f"{batch_id}_input.jsonl")
    app.engine.create_openai(
        rec.id,
        CHAT_ENDPOINT,
        "24h",
        metadata,
        batch_id=batch_id,
        extra={"wire": wire, **(extra or {})},
    )
    return app.state.batches[batch_id]


def queue_refusal(app: AppCore, wire: str, items: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Why a ``wire`` batch of ``items`` is refused (a 429) for the enqueued-token limit."""
    limit = app.config.enqueued_token_limit
    if limit is None:
        return None  # nothing is counted while no limit is set
    refusal = wire_refusal(
        app.state.batches.values(), wire, chat_tokens(items), limit, app.engine.batch_tokens
    )
    if refusal is not None:
        app.state.queue_refusals += 1
    return refusal


def wire_batch(app: AppCore, batch_id: str, wire: str) -> dict[str, Any] | None:
    """The record of ``wire``'s batch ``batch_id`` (``None``: no such batch of that API)."""
    rec = app.state.batches.get(batch_id)
    if rec is None or rec.get("wire") != wire:
        return None
    return rec


def result_lines(app: AppCore, rec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The internal result lines (OpenAI format) of an ended batch: output, then errors."""
    final = rec.get("final") or {}
    for key in ("output_file_id", "error_file_id"):
        file_id = final.get(key)
        if not file_id or file_id not in app.state.files:
            continue
        for raw in app.state.files[file_id].content().split(b"\n"):
            if raw.strip():
                yield orjson.loads(raw)
