"""OpenAI's Files and Batches routes: ``/v1/files…`` and ``/v1/batches…``."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from providers.emulator.appcore import AppCore
from providers.emulator.batches import OPENAI_ENDPOINTS, Conflict, NotFound
from providers.emulator.files import delete_file, list_files
from providers.emulator.limits import openai_too_large
from providers.emulator.multipart import multipart_boundary, parse_multipart
from providers.emulator.replies import (
    ORG,
    json_response,
    openai_error,
    openai_headers,
    retry_headers,
)

__all__ = [
    "batch_cancel",
    "batch_create",
    "batch_get",
    "batch_list",
    "file_content",
    "file_delete",
    "file_get",
    "file_list",
    "upload",
]

_FILE_PURPOSES = frozenset({"batch", "fine-tune", "assistants", "vision", "user_data", "evals"})


async def upload(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/files`` (multipart: ``purpose`` and ``file``)."""
    boundary = request.content_type.startswith("multipart/") and multipart_boundary(request)
    if not boundary:
        return openai_error(400, "Expected a multipart/form-data body.", param="file")
    fields = parse_multipart(await request.read(), boundary)
    purpose_raw = fields.get("purpose")
    purpose = purpose_raw[1].decode() if purpose_raw else None
    got_file = "file" in fields
    filename, data = fields.get("file", ("upload", b""))
    if not got_file:
        return openai_error(400, "Missing required parameter: 'file'.", param="file")
    if purpose not in _FILE_PURPOSES:
        return openai_error(
            400,
            f"'{purpose}' is not one of {sorted(_FILE_PURPOSES)} - 'purpose'",
            param="purpose",
        )
    loop = asyncio.get_running_loop()
    rec = await loop.run_in_executor(None, app.state.add_file, data, purpose, filename)
    await app.step_latency()
    return json_response(rec.obj(fresh_upload=True), 200, openai_headers())


def _file(app: AppCore, request: web.Request) -> Any:
    file_id = request.match_info["id"]
    rec = app.state.files.get(file_id)
    if rec is None or rec.purpose.startswith("anthropic_"):
        return openai_error(404, f"No such File object: {file_id}", param="id")
    return rec


async def file_list(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/files``."""
    return list_files(app.state, request)


async def file_delete(app: AppCore, request: web.Request) -> web.Response:
    """``DELETE /v1/files/{id}``."""
    return delete_file(app.state, request)


async def file_get(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/files/{id}``."""
    rec = _file(app, request)
    if isinstance(rec, web.Response):
        return rec
    return json_response(rec.obj(), 200, openai_headers())


async def file_content(app: AppCore, request: web.Request) -> web.StreamResponse:
    """``GET /v1/files/{id}/content`` (streamed)."""
    rec = _file(app, request)
    if isinstance(rec, web.Response):
        return rec
    headers = {
        **openai_headers(),
        "Content-Type": "application/octet-stream",
        "content-disposition": f'attachment; filename="{rec.filename}"',
    }
    await app.step_latency()
    return await app.file_response(request, rec, headers)


# -------------------------------------------------------- OpenAI batches


async def batch_create(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/batches``."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return openai_error(400, "We could not parse the JSON body of your request.")
    for field in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(field), str):
            return openai_error(400, f"Missing required parameter: '{field}'.", param=field)
    if app.create_rate_limited():
        return openai_error(
            429,
            f"Rate limit reached for batch creation in organization {ORG}: Limit 2000 "
            f"per 1h. Please try again in {int(app.config.retry_after * 1000)}ms.",
            "requests",
            code="rate_limit_exceeded",
            headers=retry_headers(app.config.retry_after),
        )
    if body["endpoint"] not in OPENAI_ENDPOINTS:
        return openai_error(
            400,
            f"Invalid value: '{body['endpoint']}'. Supported values are: "
            + ", ".join(f"'{e}'" for e in OPENAI_ENDPOINTS)
            + ".",
            param="endpoint",
            code="invalid_value",
        )
    if body["completion_window"] != "24h":
        return openai_error(
            400,
            f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
            param="completion_window",
            code="invalid_value",
        )
    rec = app.state.files.get(body["input_file_id"])
    if rec is None or rec.purpose != "batch":
        return openai_error(
            400 if rec is not None else 404,
            f"No such File object: {body['input_file_id']}"
            if rec is None
            else "The input file must be uploaded with purpose 'batch'.",
            param="input_file_id",
        )
    too_large = openai_too_large(app.config, rec)
    if too_large is not None:
        return openai_error(400, too_large)
    obj = app.engine.create_openai(
        body["input_file_id"], body["endpoint"], "24h", body.get("metadata")
    )
    await app.step_latency()
    return json_response(obj, 200, openai_headers())


async def batch_get(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/batches/{id}``."""
    batch_id = request.match_info["id"]
    try:
        obj = await app.engine.get_openai(batch_id)
    except NotFound:
        return openai_error(404, f"No batch found with id '{batch_id}'.")
    return json_response(obj, 200, openai_headers())


async def batch_cancel(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/batches/{id}/cancel``."""
    batch_id = request.match_info["id"]
    try:
        obj = await app.engine.cancel_openai(batch_id)
    except NotFound:
        return openai_error(404, f"No batch found with id '{batch_id}'.")
    except Conflict as exc:
        return openai_error(409, str(exc))
    return json_response(obj, 200, openai_headers())


async def batch_list(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/batches?limit=&after=``."""
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return openai_error(400, "Invalid 'limit': expected an integer.", param="limit")
    if not 1 <= limit <= 100:
        return openai_error(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
    obj = await app.engine.list_openai(limit, request.query.get("after"))
    return json_response(obj, 200, openai_headers())
