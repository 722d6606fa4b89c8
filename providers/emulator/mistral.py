"""The Mistral API (chat completions, files, batch jobs), as the ``mistralai`` SDK calls it.

Mistral's paths (``/v1/chat/completions``, ``/v1/files``) are OpenAI's too, so
the emulator serves Mistral under ``/mistral``: the SDK's ``server_url`` is
``<emulator root>/mistral`` and every path below is relative to it.

* ``POST /v1/chat/completions`` (``response_format`` ``json_schema``), counted against
  the emulator's rate limits and reporting them in Mistral's ``x-ratelimit-*`` headers
  (see :mod:`providers.emulator.ratelimit`)
* ``POST /v1/files`` (multipart ``file`` + ``purpose``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}`` (``{"id", "object":
  "file", "deleted": true}``; a job's output and error files too)
* ``POST /v1/batch/jobs`` (``input_files``, ``endpoint``, ``model``, ``metadata``),
  ``GET /v1/batch/jobs`` (``page``, ``page_size``, ``metadata``, ``created_after``),
  ``GET /v1/batch/jobs/{id}``, ``POST /v1/batch/jobs/{id}/cancel``

Ids are UUIDs (a completion's is 32 hex digits); a job goes ``QUEUED`` →
``RUNNING`` → ``SUCCESS`` / ``FAILED`` / ``TIMEOUT_EXCEEDED`` /
``CANCELLATION_REQUESTED`` → ``CANCELLED``; its output file holds
``{"id", "custom_id", "response": {"status_code", "body"}, "error"}`` lines and
its error file the lines of items that failed. Requests are authenticated by
``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from providers.emulator.answers import count_tokens, prompt_chars
from providers.emulator.multipart import multipart_boundary, parse_multipart
from providers.emulator.translated import (
    answer_chat,
    create_batch,
    immediate_verdict,
    queue_refusal,
    result_lines,
    wire_batch,
)

if TYPE_CHECKING:
    from providers.emulator.appcore import AppCore

__all__ = ["PREFIX", "add_routes", "mistral_completion"]

#: Where the Mistral API is mounted on the emulator.
PREFIX = "/mistral"
WIRE = "mistral"
_ENDPOINTS = ("/v1/chat/completions", "/v1/fim/completions", "/v1/embeddings", "/v1/moderations")
_STATES = {
    "validating": "QUEUED",
    "in_progress": "RUNNING",
    "finalizing": "RUNNING",
    "cancelling": "CANCELLATION_REQUESTED",
    "completed": "SUCCESS",
    "failed": "FAILED",
    "expired": "TIMEOUT_EXCEEDED",
    "cancelled": "CANCELLED",
}
_PURPOSES = ("batch", "fine-tune", "ocr")
_LIST_PARAMS = frozenset(
    {
        "page",
        "page_size",
        "model",
        "agent_id",
        "created_after",
        "created_by_me",
        "status",
        "order_by",
    }
)


def _headers() -> dict[str, str]:
    rid = str(uuid.uuid4())
    return {"mistral-correlation-id": rid, "x-kong-request-id": rid}


def _ok(data: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), content_type="application/json", headers=_headers()
    )


def _error(
    status: int, message: str, type_: str = "invalid_request_error", code: str | None = None
) -> web.Response:
    body = {"object": "error", "message": message, "type": type_, "param": None, "code": code}
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=_headers()
    )


def mistral_completion(chat: dict[str, Any]) -> dict[str, Any]:
    """A Mistral ``chat.completion`` from the (OpenAI-shaped) completion that answered it."""
    usage = chat.get("usage") or {}
    choices = [
        {
            "index": c.get("index", 0),
            "finish_reason": c.get("finish_reason") or "stop",
            "message": {
                "role": "assistant",
                "tool_calls": None,
                "content": (c.get("message") or {}).get("content") or "",
            },
        }
        for c in chat.get("choices") or ()
    ]
    return {
        "id": uuid.uuid4().hex,
        "created": chat.get("created") or int(time.time()),
        "model": chat.get("model") or "",
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
        },
        "object": "chat.completion",
        "choices": choices,
    }


def _file_obj(rec: Any) -> dict[str, Any]:
    sample_type = rec.purpose.removeprefix("mistral_")
    data = rec.content()
    return {
        "id": rec.id,
        "object": "file",
        "bytes": rec.size,
        "created_at": rec.created_at,
        "filename": rec.filename,
        "purpose": "batch" if sample_type.startswith("batch") else "fine-tune",
        "sample_type": sample_type,
        "num_lines": data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1),
        "mimetype": "application/jsonl",
        "source": "mistral" if sample_type in ("batch_result", "batch_error") else "upload",
        "signature": None,
    }


# ----------------------------------------------------------------- batches


def _result_files(app: AppCore, rec: dict[str, Any]) -> tuple[str | None, str | None, int, int]:
    """The job's output and error files (made once), with its succeeded and failed counts."""
    made = rec.get("mistral_files")
    if made is None:
        good: list[bytes] = []
        bad: list[bytes] = []
        for line in result_lines(app, rec):
            cid = line["custom_id"]
            line_id = f"{cid}-{uuid.uuid4()}"
            response = line.get("response")
            if isinstance(response, dict):
                body = response.get("body") or {}
                status = response.get("status_code")
                if status == 200:
                    body = mistral_completion(body)
                else:
                    err = body.get("error") or {}
                    body = {
                        "object": "error",
                        "message": err.get("message"),
                        "type": err.get("type"),
                        "param": None,
                        "code": err.get("code"),
                    }
                out = {
                    "id": line_id,
                    "custom_id": cid,
                    "response": {"status_code": status, "body": body},
                    "error": None,
                }
                (good if status == 200 else bad).append(orjson.dumps(out))
            elif (line.get("error") or {}).get("code") == "request_timeout":
                err = line["error"]
                bad.append(
                    orjson.dumps(
                        {
                            "id": line_id,
                            "custom_id": cid,
                            "response": None,
                            "error": {"message": err.get("message"), "code": "request_timeout"},
                        }
                    )
                )
        ids: list[str | None] = []
        for lines, kind in ((good, "batch_result"), (bad, "batch_error")):
            if not lines:
                ids.append(None)
                continue
            file_id = str(uuid.uuid4())
            name = f"{rec['id']}_{'output' if kind == 'batch_result' else 'error'}.jsonl"
            app.state.add_file(b"\n".join(lines) + b"\n", f"mistral_{kind}", name, file_id)
            ids.append(file_id)
        made = rec["mistral_files"] = [ids[0], ids[1], len(good), len(bad)]
        app.state.save_batch(rec)
    return made[0], made[1], int(made[2]), int(made[3])


async def _job(app: AppCore, rec: dict[str, Any], *, poll: bool) -> dict[str, Any]:
    view = (
        await app.engine.get_openai(rec["id"])
        if poll
        else await app.engine._openai_view(rec, time.time(), poll=False)
    )
    status = view["status"]
    final = rec.get("final")
    counts = view.get("request_counts") or {}
    output_file = error_file = None
    errors: list[dict[str, Any]] = []
    if final is not None and status != "failed":
        output_file, error_file, ok, bad = _result_files(app, rec)
    else:
        ok, bad = int(counts.get("completed") or 0), int(counts.get("failed") or 0)
    if final is not None and status == "failed":
        errors = [
            {"message": f"{e.get('code')}: {e.get('message')}", "count": 1}
            for e in final.get("errors") or ()
        ]
    total = 0 if status == "validating" else int(rec["n"])
    started = view.get("in_progress_at")
    return {
        "id": rec["id"],
        "object": "batch",
        "input_files": rec["mistral_inputs"],
        "metadata": rec.get("metadata"),
        "endpoint": rec["mistral_endpoint"],
        "model": rec.get("mistral_model"),
        "agent_id": None,
        "output_file": output_file,
        "error_file": error_file,
        "errors": errors,
        "outputs": None,
        "status": _STATES.get(status, "QUEUED"),
        "created_at": int(rec["created"]),
        "total_requests": total,
        "completed_requests": ok + bad,
        "succeeded_requests": ok,
        "failed_requests": bad,
        "started_at": started,
        "completed_at": int(final["when"]) if final is not None else None,
    }


async def job_create(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/batch/jobs``."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return _error(422, "Invalid JSON body")
    endpoint = body.get("endpoint")
    if endpoint not in _ENDPOINTS:
        return _error(422, f"Input should be {', '.join(repr(e) for e in _ENDPOINTS)}")
    inputs = body.get("input_files")
    if not isinstance(inputs, list) or not inputs:
        return _error(422, "input_files: a list of file ids is required")
    model = body.get("model")
    limit = app.config.openai_max_bytes  # the engine's byte limit, as OpenAI's batches
    size = sum(f.size for i in inputs if (f := app.state.files.get(str(i))) is not None)
    if limit is not None and size > limit:
        return _error(
            400, f"Batch input files are too large: {size} bytes, more than the {limit} allowed"
        )
    items: list[tuple[str, dict[str, Any]]] = []
    for file_id in inputs:
        source = app.state.files.get(str(file_id))
        if source is None or source.purpose != "mistral_batch_request":
            return _error(404, f"File {file_id} not found", code="3310")
        for n, raw in enumerate(source.content().split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return _error(422, f"Line {n} of file {file_id} is not valid JSON")
            if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
                return _error(422, f"Line {n} of file {file_id} has no 'body'")
            item_model = line["body"].get("model") or model
            if not isinstance(item_model, str):
                return _error(422, "model: a model is required (on the job or in each body)")
            items.append((str(line.get("custom_id", n)), {**line["body"], "model": item_model}))
    if app.create_rate_limited():
        limited = _error(429, "Requests rate limit exceeded", "rate_limited", "1300")
        limited.headers["retry-after"] = f"{app.config.retry_after:g}"
        return limited
    full = queue_refusal(app, WIRE, items)
    if full is not None:
        return _error(429, full, "rate_limited")
    job_id = str(uuid.uuid4())
    rec = create_batch(
        app,
        batch_id=job_id,
        wire=WIRE,
        items=items,
        metadata=body.get("metadata"),
        extra={"mistral_inputs": inputs, "mistral_endpoint": endpoint, "mistral_model": model},
    )
    job = await _job(app, rec, poll=False)
    if app.config.step_latency > 0:
        await asyncio.sleep(app.config.step_latency)
    return _ok(job)


async def job_get(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/batch/jobs/{id}``."""
    rec = wire_batch(app, request.match_info["id"], WIRE)
    if rec is None:
        return _error(404, "Batch job not found", code="3331")
    return _ok(await _job(app, rec, poll=True))


async def job_cancel(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/batch/jobs/{id}/cancel``: ``CANCELLATION_REQUESTED``, later ``CANCELLED``."""
    rec = wire_batch(app, request.match_info["id"], WIRE)
    if rec is None:
        return _error(404, "Batch job not found", code="3331")
    if rec.get("final") is not None:
        return _error(400, f"Batch job {rec['id']} has already ended and cannot be cancelled")
    await app.engine.cancel_openai(rec["id"])
    return _ok(await _job(app, rec, poll=False))


async def job_list(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/batch/jobs?page=&page_size=&metadata=&created_after=``, newest first."""
    try:
        page = int(request.query.get("page", "0"))
        size = int(request.query.get("page_size", "100"))
    except ValueError:
        return _error(422, "page, page_size: integers")
    # The SDK sends the metadata filter exploded: each key is a query parameter.
    wanted = {k: v for k, v in request.query.items() if k not in _LIST_PARAMS}
    after = request.query.get("created_after")
    since = datetime.fromisoformat(after.replace("Z", "+00:00")).timestamp() if after else None
    recs = [
        r
        for r in app.state.batches.values()
        if r.get("wire") == WIRE
        and (since is None or r["created"] >= since)
        and all(str((r.get("metadata") or {}).get(k)) == v for k, v in wanted.items())
    ]
    recs.sort(key=lambda r: r["created"], reverse=True)
    data = [await _job(app, r, poll=False) for r in recs[page * size : (page + 1) * size]]
    return _ok({"data": data, "object": "list", "total": len(recs)})


# ------------------------------------------------------------------- files


async def upload(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/files`` (multipart: ``file`` and ``purpose``)."""
    boundary = request.content_type.startswith("multipart/") and multipart_boundary(request)
    if not boundary:
        return _error(422, "Expected a multipart/form-data body")
    fields = parse_multipart(await request.read(), boundary)
    if "file" not in fields:
        return _error(422, "file: Field required")
    purpose = fields["purpose"][1].decode() if "purpose" in fields else "fine-tune"
    if purpose not in _PURPOSES:
        return _error(422, f"purpose: Input should be {', '.join(repr(p) for p in _PURPOSES)}")
    filename, data = fields["file"]
    kind = "batch_request" if purpose == "batch" else "instruct"
    loop = asyncio.get_running_loop()
    rec = await loop.run_in_executor(
        None, app.state.add_file, data, f"mistral_{kind}", filename, str(uuid.uuid4())
    )
    if app.config.step_latency > 0:
        await asyncio.sleep(app.config.step_latency)
    return _ok(_file_obj(rec))


def _file(app: AppCore, request: web.Request) -> Any:
    rec = app.state.files.get(request.match_info["id"])
    if rec is None or not rec.purpose.startswith("mistral_"):
        return None
    return rec


async def file_get(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1/files/{id}``."""
    rec = _file(app, request)
    if rec is None:
        return _error(404, "File not found", code="3310")
    return _ok(_file_obj(rec))


async def file_content(app: AppCore, request: web.Request) -> web.StreamResponse:
    """``GET /v1/files/{id}/content`` (octet-stream)."""
    rec = _file(app, request)
    if rec is None:
        return _error(404, "File not found", code="3310")
    if app.config.step_latency > 0:
        await asyncio.sleep(app.config.step_latency)
    headers = {**_headers(), "Content-Type": "application/octet-stream"}
    return await app.file_response(request, rec, headers)


async def file_delete(app: AppCore, request: web.Request) -> web.Response:
    """``DELETE /v1/files/{id}``: ``{"id", "object": "file", "deleted": true}``.

    A job keeps naming its output and error files once they are deleted, as
    the real API's jobs do; downloading one is then a 404.
    """
    rec = _file(app, request)
    if rec is None:
        return _error(404, "File not found", code="3310")
    await asyncio.get_running_loop().run_in_executor(None, app.state.delete_file, rec.id)
    return _ok({"id": rec.id, "object": "file", "deleted": True})


# -------------------------------------------------------------- immediate


async def chat(app: AppCore, request: web.Request) -> web.Response:
    """``POST /v1/chat/completions``."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _error(422, "model: Field required")
    if not body.get("messages"):
        return _error(422, "messages: Field required")
    if body.get("stream"):
        return _error(400, "stream: the lexibatch emulator does not stream")
    cfg = app.config
    # Counted against the emulator's own limits, which every answer from here on reports.
    wait = app.limiter.admit(cfg.rpm_limit, cfg.tpm_limit, count_tokens(prompt_chars(body)))
    if wait is not None:
        response = _error(429, "Requests rate limit exceeded", "rate_limited", "1300")
        response.headers["retry-after"] = f"{round(wait, 3):g}"
        return _reporting_limits(app, response, 0)
    verdict = await immediate_verdict(app, body, body["model"], request)
    if verdict.kind == "abandoned":
        return web.Response(status=499)  # the client hung up: nothing answered or billed
    if verdict.kind == "rate_limit":
        response = _error(429, "Requests rate limit exceeded", "rate_limited", "1300")
        response.headers["retry-after"] = f"{cfg.retry_after:g}"
        return _reporting_limits(app, response, 0, exhausted=True)
    if verdict.kind == "server_error":
        if verdict.other:
            response = _error(503, "Service unavailable", "service_unavailable", "3505")
        else:
            response = _error(500, "Internal server error", "internal_server_error", "3000")
        return _reporting_limits(app, response, 0)
    answer = mistral_completion(answer_chat(app, body, verdict))
    cost = int(answer["usage"]["total_tokens"])
    app.limiter.spend(cost)
    return _reporting_limits(app, _ok(answer), cost)


def _reporting_limits(
    app: AppCore, response: web.Response, cost: int, *, exhausted: bool = False
) -> web.Response:
    """``response`` with Mistral's rate-limit headers for a call that used ``cost`` tokens."""
    cfg = app.config
    headers = app.limiter.mistral_headers(cfg.rpm_limit, cfg.tpm_limit, cost, exhausted=exhausted)
    response.headers.update(headers)
    return response


def add_routes(app: web.Application, emulator: AppCore) -> None:
    """Serve the Mistral API from ``emulator`` on ``app`` under :data:`PREFIX`."""

    def guarded(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            auth = request.headers.get("Authorization", "")
            valid = emulator.config.api_keys
            if (
                not auth.startswith("Bearer ")
                or not auth[7:].strip()
                or (valid is not None and auth[7:].strip() not in valid)
            ):
                body = {"message": "Unauthorized", "request_id": uuid.uuid4().hex}
                return web.Response(
                    body=orjson.dumps(body), status=401, content_type="application/json"
                )
            response: web.StreamResponse = await handler(emulator, request)
            return response

        return wrapped

    r = app.router
    r.add_post(f"{PREFIX}/v1/chat/completions", guarded(chat))
    r.add_post(f"{PREFIX}/v1/files", guarded(upload))
    r.add_get(f"{PREFIX}/v1/files/{{id}}", guarded(file_get))
    r.add_get(f"{PREFIX}/v1/files/{{id}}/content", guarded(file_content))
    r.add_delete(f"{PREFIX}/v1/files/{{id}}", guarded(file_delete))
    r.add_post(f"{PREFIX}/v1/batch/jobs", guarded(job_create))
    r.add_get(f"{PREFIX}/v1/batch/jobs", guarded(job_list))
    r.add_get(f"{PREFIX}/v1/batch/jobs/{{id}}", guarded(job_get))
    r.add_post(f"{PREFIX}/v1/batch/jobs/{{id}}/cancel", guarded(job_cancel))
