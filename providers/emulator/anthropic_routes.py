"""Anthropic's Message Batches routes: ``/v1/messages/batches…``."""

from __future__ import annotations

import orjson
from aiohttp import web

from providers.emulator.appcore import AppCore, origin
from providers.emulator.batches import Conflict, NotFound, NotReady
from providers.emulator.jobs import validate_anthropic
from providers.emulator.limits import anthropic_too_large
from providers.emulator.replies import (
    anthropic_error,
    anthropic_headers,
    json_response,
    retry_headers,
)

__all__ = [
    "msgbatch_cancel",
    "msgbatch_create",
    "msgbatch_get",
    "msgbatch_list",
    "msgbatch_results",
]


async def msgbatch_create(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/messages/batches`` with inline ``requests``."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if anthropic_too_large(app.config, raw):
        return anthropic_error(
            413, "request_too_large", "Request exceeds the maximum allowed number of bytes."
        )
    requests = body.get("requests") if isinstance(body, dict) else None
    problem = validate_anthropic(requests, app.config.anthropic_max_requests)
    if problem is not None:
        return anthropic_error(400, "invalid_request_error", problem)
    assert isinstance(requests, list)
    if app.create_rate_limited():
        return anthropic_error(
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 "
            "Message Batches API requests per minute. Please try again later.",
            headers=retry_headers(app.config.retry_after),
        )
    full, tokens = app.engine.anthropic_refusal(requests)
    if full is not None:
        app.state.queue_refusals += 1
        return anthropic_error(429, "rate_limit_error", full)
    obj = app.engine.create_anthropic(raw, requests, origin(request), tokens)
    await app.step_latency()
    return json_response(obj, 200, anthropic_headers())


async def msgbatch_get(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/messages/batches/{id}``."""
    batch_id = request.match_info["id"]
    try:
        obj = await app.engine.get_anthropic(batch_id, origin(request))
    except NotFound:
        return anthropic_error(404, "not_found_error", f"Message batch {batch_id} not found.")
    headers = anthropic_headers()
    if obj["processing_status"] != "ended" and app.config.poll_retry_after > 0:
        # As the real API: a batch in progress says when to ask again.
        headers["retry-after"] = f"{app.config.poll_retry_after:g}"
    return json_response(obj, 200, headers)


async def msgbatch_cancel(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/messages/batches/{id}/cancel``."""
    batch_id = request.match_info["id"]
    try:
        obj = await app.engine.cancel_anthropic(batch_id, origin(request))
    except NotFound:
        return anthropic_error(404, "not_found_error", f"Message batch {batch_id} not found.")
    except Conflict as exc:
        return anthropic_error(400, "invalid_request_error", str(exc))
    return json_response(obj, 200, anthropic_headers())


async def msgbatch_list(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/messages/batches?limit=&after_id=&before_id=``."""
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return anthropic_error(400, "invalid_request_error", "limit: Input should be an integer")
    if not 1 <= limit <= 1000:
        return anthropic_error(400, "invalid_request_error", "limit: must be between 1 and 1000")
    obj = await app.engine.list_anthropic(
        limit, request.query.get("after_id"), request.query.get("before_id"), origin(request)
    )
    return json_response(obj, 200, anthropic_headers())


async def msgbatch_results(app: AppCore, request: web.Request) -> web.StreamResponse:
    """``GET /v1/messages/batches/{id}/results`` (JSONL, 404 until the batch has ended)."""
    batch_id = request.match_info["id"]
    try:
        file_id = await app.engine.results_anthropic(batch_id)
    except NotFound:
        return anthropic_error(404, "not_found_error", f"Message batch {batch_id} not found.")
    except NotReady:
        return anthropic_error(
            404,
            "not_found_error",
            f"Message batch {batch_id} has not ended processing; its results are not "
            "available yet.",
        )
    rec = app.state.files[file_id]
    name = f"{batch_id}_results.jsonl"
    headers = {
        **anthropic_headers(),
        "Content-Type": "application/x-jsonl",
        "content-disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}",
    }
    await app.step_latency()
    return await app.file_response(request, rec, headers)
