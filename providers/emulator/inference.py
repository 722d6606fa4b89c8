"""The immediate routes: OpenAI's chat completions and responses, Anthropic's messages.

Each call is checked (body, context window, the emulator's own rate limits),
may meet a configured fault (slow, 429, 5xx, schema-invalid content) and is
answered synthetically and billed; every answer reports the rate limits.
"""

from __future__ import annotations

import asyncio
import time
from hashlib import blake2b

import orjson
from aiohttp import web

from providers.emulator import ids
from providers.emulator.answers import (
    anthropic_message,
    canonical,
    chat_completion,
    count_tokens,
    prompt_chars,
    responses_answer,
)
from providers.emulator.appcore import AppCore
from providers.emulator.config import parse_markers
from providers.emulator.context import (
    anthropic_context_error,
    openai_context_error,
    over_context,
)
from providers.emulator.replies import (
    ORG,
    anthropic_error,
    anthropic_headers,
    json_response,
    openai_error,
    openai_headers,
    retry_headers,
)
from providers.emulator.rng import body_seed, roll

__all__ = ["chat", "inference", "messages", "responses"]

_FRESH = ids.Fresh()

#: The requests-per-minute limit a fault's 429 names as used up (message and headers).
_FAULT_RPM_OPENAI = 500
_FAULT_RPM_ANTHROPIC = 50


async def immediate(app: AppCore, request: web.Request, openai: bool, kind: str) -> web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        if openai:
            return openai_error(
                400,
                "We could not parse the JSON body of your request, or it has no 'model'.",
                param="model",
            )
        return anthropic_error(400, "invalid_request_error", "model: Field required")
    if body.get("stream"):
        message = "stream: the lexibatch emulator does not stream"
        if openai:
            return openai_error(400, message, param="stream")
        return anthropic_error(400, "invalid_request_error", message)
    if not openai:
        for key in ("max_tokens", "messages"):
            if key not in body:
                return anthropic_error(400, "invalid_request_error", f"{key}: Field required")
    cfg = app.config
    too_long = over_context(cfg, body)
    if too_long is not None:
        if openai:
            error = openai_context_error(*too_long, responses=kind == "responses")
            return json_response({"error": error}, 400, openai_headers())
        inner = anthropic_context_error(*too_long)
        return anthropic_error(400, inner["type"], inner["message"])
    wait = app.limiter.admit(cfg.rpm_limit, cfg.tpm_limit, count_tokens(prompt_chars(body)))
    if wait is not None:
        return over_limit(app, openai, str(body["model"]), wait)
    canon = canonical(body)
    digest = blake2b(canon, digest_size=16).hexdigest()
    seen = app.state.seen_bodies.get(digest, 0)
    model = body["model"]
    markers = parse_markers(model)
    seed = cfg.seed
    if cfg.latency > 0:
        await asyncio.sleep(cfg.latency)
    if markers.wants("slow", seen) or (
        cfg.slow > 0 and roll(seed, "slow", digest, seen) < cfg.slow
    ):
        await asyncio.sleep(cfg.slow_seconds)
        if not cfg.bill_abandoned and (request.transport is None or request.transport.is_closing()):
            # The client hung up while it waited: this provider forgets the call.
            return web.Response(status=499)
    if markers.wants("rate-limit", seen) or (
        cfg.rate_limit > 0 and roll(seed, "rate_limit", digest, seen) < cfg.rate_limit
    ):
        app.state.immediate_call(digest, False, 0, 0)
        # The headers tell the same story as the message: that limit is used up until retry-after.
        shown = _FAULT_RPM_OPENAI if openai else _FAULT_RPM_ANTHROPIC
        retry = {
            **retry_headers(cfg.retry_after),
            **app.limiter.exhausted_headers(openai, shown, cfg.tpm_limit, cfg.retry_after),
        }
        if openai:
            return openai_error(
                429,
                f"Rate limit reached for {model} in organization {ORG} on requests per min "
                f"(RPM): Limit {shown}, Used {shown}, Requested 1. Please try again in "
                f"{int(cfg.retry_after * 1000)}ms.",
                "requests",
                code="rate_limit_exceeded",
                headers=retry,
            )
        return anthropic_error(
            429,
            "rate_limit_error",
            f"This request would exceed the rate limit for your organization of {shown} "
            "requests per minute. Please reduce the prompt length or the maximum tokens "
            "requested, or try again later.",
            headers=retry,
        )
    if markers.wants("server-error", seen) or (
        cfg.server_error > 0 and roll(seed, "server_error", digest, seen) < cfg.server_error
    ):
        app.state.immediate_call(digest, False, 0, 0)
        second = roll(seed, "server_error_kind", digest, seen) < 0.5
        if openai:
            if second:
                return openai_error(
                    503,
                    "The engine is currently overloaded, please try again later",
                    "server_error",
                )
            return openai_error(
                500,
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
            )
        if second:
            return anthropic_error(529, "overloaded_error", "Overloaded")
        return anthropic_error(500, "api_error", "Internal server error")
    invalid = markers.wants("schema-invalid", seen) or (
        cfg.schema_invalid > 0 and roll(seed, "schema_invalid", digest, seen) < cfg.schema_invalid
    )
    answer_seed = body_seed(seed, canon)
    created = int(time.time())
    if kind == "chat":
        answer = chat_completion(
            body,
            answer_seed,
            invalid=invalid,
            ids=_FRESH,
            index=0,
            created=created,
            batch=False,
        )
    elif kind == "responses":
        answer = responses_answer(
            body,
            answer_seed,
            invalid=invalid,
            ids=_FRESH,
            index=0,
            created=created,
            batch=False,
        )
    else:
        answer = anthropic_message(
            body, answer_seed, invalid=invalid, ids=_FRESH, index=0, batch=False
        )
    app.state.immediate_call(digest, True, answer.input_tokens, answer.output_tokens)
    app.limiter.spend(answer.input_tokens + answer.output_tokens)
    headers = openai_headers() if openai else anthropic_headers()
    return json_response(answer.body, 200, headers)


def over_limit(app: AppCore, openai: bool, model: str, wait: float) -> web.Response:
    """The 429 of a call past the emulator's own rate limits."""
    cfg = app.config
    retry = retry_headers(round(wait, 3))
    if openai:
        return openai_error(
            429,
            f"Rate limit reached for {model} in organization {ORG} on requests per min "
            f"(RPM): Limit {cfg.rpm_limit}. Please try again in {int(wait * 1000)}ms.",
            "requests",
            code="rate_limit_exceeded",
            headers=retry,
        )
    return anthropic_error(
        429,
        "rate_limit_error",
        f"This request would exceed the rate limit for your organization of "
        f"{cfg.rpm_limit} requests per minute. Please try again later.",
        headers=retry,
    )


async def inference(app: AppCore, request: web.Request, openai: bool, kind: str) -> web.Response:
    # Every answer of an inference route, errors included, reports the rate limits.
    response = await immediate(app, request, openai, kind)
    cfg = app.config
    for name, value in app.limiter.headers(openai, cfg.rpm_limit, cfg.tpm_limit).items():
        # A fault's 429 has already written the limit it reports.
        response.headers.setdefault(name, value)
    return response


async def chat(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/chat/completions``."""
    return await inference(app, request, True, "chat")


async def responses(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/responses``."""
    return await inference(app, request, True, "responses")


async def messages(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/messages``."""
    return await inference(app, request, False, "messages")
