"""The Gemini Developer API, as the ``google-genai`` SDK calls it.

Routes (the SDK's base URL is the emulator's root):

* ``POST /v1beta/models/{model}:generateContent``
* ``POST /v1beta/models/{model}:batchGenerateContent`` (``inputConfig.fileName`` or
  ``inputConfig.requests.requests``), ``GET /v1beta/batches`` (``pageSize``,
  ``pageToken``), ``GET /v1beta/batches/{id}``, ``POST /v1beta/batches/{id}:cancel``,
  ``DELETE /v1beta/batches/{id}``
* the resumable upload ``POST /upload/v1beta/files`` (``x-goog-upload-command:
  start`` answers ``x-goog-upload-url``; ``upload, finalize`` answers the file),
  ``GET /v1beta/files``, ``GET /v1beta/files/{id}``, ``DELETE /v1beta/files/{id}``,
  and the download ``GET /v1beta/files/{id}:download?alt=media``

The same routes answer under ``/v1`` (google-genai 3 calls that version by
default); there ``/v1/batches`` and ``/v1/files`` are OpenAI's paths too, and
a request carrying a Google key (``x-goog-api-key`` or ``?key=``) is Gemini's.

Objects follow the real ones: a batch is an operation named
``batches/<36 lowercase alphanumerics>`` whose ``metadata`` says
``BATCH_STATE_PENDING`` → ``RUNNING`` → ``SUCCEEDED`` / ``FAILED`` /
``CANCELLED`` / ``EXPIRED``, with ``batchStats`` counts written as strings;
a finished file batch names its results file ``files/batch-<id>``, whose lines
are ``{"response": …, "key": …}`` or ``{"error": {code, message, status}, "key": …}``;
an inline batch carries ``inlinedResponses`` in order. An expired batch has
no results. Requests are authenticated by ``x-goog-api-key`` (or ``?key=``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from providers.emulator.gemini_wire import (
    B64URL,
    LOWER,
    STATUS_NAMES,
    id_rng,
    last_segment,
    wire_error,
    wire_ok,
    wire_time,
)
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

__all__ = ["add_routes", "chat_body", "gemini_response"]

WIRE = "gemini"
_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
_STATES = {
    "validating": "BATCH_STATE_PENDING",
    "in_progress": "BATCH_STATE_RUNNING",
    "finalizing": "BATCH_STATE_RUNNING",
    "cancelling": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
}


def _authorized(request: web.Request) -> bool:
    return bool(request.headers.get("x-goog-api-key", "").strip() or request.query.get("key"))


# ------------------------------------------------------------------ answers


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return "".join(
            str(p.get("text", "")) for p in content.get("parts") or () if isinstance(p, dict)
        )
    return ""


def chat_body(model: str, request: dict[str, Any]) -> dict[str, Any]:
    """The chat-completion body a ``GenerateContentRequest`` stands for (to answer it)."""
    messages: list[dict[str, str]] = []
    system = request.get("systemInstruction") or request.get("system_instruction")
    if system:
        messages.append({"role": "system", "content": _text(system)})
    for content in request.get("contents") or ():
        role = (
            "assistant" if isinstance(content, dict) and content.get("role") == "model" else "user"
        )
        messages.append({"role": role, "content": _text(content)})
    config = request.get("generationConfig") or request.get("generation_config") or {}
    body: dict[str, Any] = {"model": model, "messages": messages}
    schema = config.get("responseJsonSchema", config.get("response_json_schema"))
    if schema is None:
        schema = config.get("responseSchema", config.get("response_schema"))
    mime = config.get("responseMimeType", config.get("response_mime_type"))
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
    elif mime == "application/json":
        body["response_format"] = {"type": "json_object"}
    limit = config.get("maxOutputTokens", config.get("max_output_tokens"))
    if isinstance(limit, int):
        body["max_completion_tokens"] = limit
    return body


def _response_id() -> str:
    return "".join(id_rng.choices(B64URL, k=23))


def gemini_response(chat: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``GenerateContentResponse`` from the chat completion that answered its request."""
    choice = (chat.get("choices") or [{}])[0]
    usage = chat.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    out = int(usage.get("completion_tokens") or 0)
    finish = "MAX_TOKENS" if choice.get("finish_reason") == "length" else "STOP"
    return {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": (choice.get("message") or {}).get("content") or ""}],
                    "role": "model",
                },
                "finishReason": finish,
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": out,
            "totalTokenCount": prompt + out,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": out}],
        },
        "modelVersion": model.split("@", 1)[0],
        "responseId": _response_id(),
    }


#: Gemini's own words for the failures the engine's error lines (OpenAI's words) stand for.
_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


def _item_error(line: dict[str, Any]) -> dict[str, Any] | None:
    """The ``google.rpc.Status`` of an internal error line; ``None`` for an item never run."""
    response = line.get("response")
    if isinstance(response, dict):
        status = int(response.get("status_code") or 500)
        err = (response.get("body") or {}).get("error") or {}
        message = _MESSAGES.get(status) or str(err.get("message") or "Internal error encountered.")
        return {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    code = (line.get("error") or {}).get("code")
    if code == "request_timeout":
        return {
            "code": 504,
            "message": "Deadline expired before operation could complete.",
            "status": "DEADLINE_EXCEEDED",
        }
    return None


# ------------------------------------------------------------------ batches


def _name(rec: dict[str, Any]) -> str:
    return f"batches/{rec['id']}"


def _results(app: AppCore, rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(key, {"response"|"error": …})`` of every item the ended batch ran."""
    model = rec["gemini_model"]
    out: list[tuple[str, dict[str, Any]]] = []
    for line in result_lines(app, rec):
        response = line.get("response")
        if isinstance(response, dict) and response.get("status_code") == 200:
            out.append((line["custom_id"], {"response": gemini_response(response["body"], model)}))
            continue
        error = _item_error(line)
        if error is not None:
            out.append((line["custom_id"], {"error": error}))
    return out


def _output(app: AppCore, rec: dict[str, Any]) -> dict[str, Any]:
    """The batch's ``output``: its results file (made once) or its inline responses."""
    if rec.get("inline"):
        keys = rec.get("inline_keys") or []
        by_key = dict(_results(app, rec))
        responses = []
        for i, key in enumerate(keys):
            item = dict(by_key.get(key) or {})
            if not item:
                continue
            meta = (rec.get("inline_metadata") or [None] * len(keys))[i]
            if meta is not None:
                item["metadata"] = meta
            responses.append(item)
        return {"inlinedResponses": {"inlinedResponses": responses}}
    file_id = f"batch-{rec['id']}"
    if not rec.get("gemini_results_made"):
        if file_id not in app.state.files:
            lines = [orjson.dumps({**item, "key": key}) for key, item in _results(app, rec)]
            data = b"\n".join(lines) + b"\n" if lines else b""
            app.state.add_file(
                data, "gemini:application/jsonl", f"{file_id}.jsonl", file_id=file_id
            )
        # Made once: a results file the user deleted stays deleted (the batch still names it).
        rec["gemini_results_made"] = True
        app.state.save_batch(rec)
    return {"responsesFile": f"files/{file_id}"}


async def _operation(app: AppCore, rec: dict[str, Any], *, poll: bool) -> dict[str, Any]:
    """The batch as an operation, as a ``GET`` sees it now.

    A list sees it without polling and, as the real list, without the
    answers of an inline batch (a file batch's results file it names).
    """
    inline = bool(rec.get("inline"))
    if poll:
        view = await app.engine.get_openai(rec["id"])
    else:
        view = await app.engine._openai_view(rec, time.time(), poll=False)
    status = view["status"]
    final = rec.get("final")
    n = int(rec["n"])
    counts = view.get("request_counts") or {}
    done, failed = int(counts.get("completed") or 0), int(counts.get("failed") or 0)
    stats: dict[str, str] = {"requestCount": str(n)}
    if final is None:
        pending = n - done - failed
        if pending:
            stats["pendingRequestCount"] = str(pending)
        if done:
            stats["successfulRequestCount"] = str(done)
    else:
        # Counted once per batch: a list of many ended batches reads no result files.
        if "gemini_counts" not in rec:
            results = _results(app, rec) if status != "failed" else []
            answered = sum(1 for _, item in results if "response" in item)
            rec["gemini_counts"] = [answered, len(results) - answered]
            app.state.save_batch(rec)
        ok, bad = rec["gemini_counts"]
        if ok:
            stats["successfulRequestCount"] = str(ok)
        if bad:
            stats["failedRequestCount"] = str(bad)
        # An ended batch has nothing pending, even the requests it never ran (as the real one).
    created = float(rec["created"])
    meta: dict[str, Any] = {"@type": _BATCH_TYPE, "model": f"models/{rec['gemini_model']}"}
    if rec.get("display_name"):
        meta["displayName"] = rec["display_name"]
    if not rec.get("inline"):
        meta["inputConfig"] = {"fileName": rec["gemini_file"]}
    op: dict[str, Any] = {"name": _name(rec), "metadata": meta}
    if final is not None and status in ("completed", "cancelled") and (poll or not inline):
        meta["output"] = _output(app, rec)
    meta["createTime"] = wire_time(created)
    if final is not None:
        meta["endTime"] = wire_time(float(final["when"]))
    meta["updateTime"] = wire_time(float(final["when"]) if final is not None else created)
    meta["batchStats"] = stats
    meta["state"] = _STATES.get(status, "BATCH_STATE_PENDING")
    meta["name"] = _name(rec)
    if final is not None:
        op["done"] = True
        if status == "failed":
            reasons = "; ".join(
                f"{e.get('code')}: {e.get('message')}" for e in final.get("errors") or ()
            )
            op["error"] = {"code": 3, "message": reasons or "The batch failed."}
        elif "output" in meta:
            op["response"] = {"@type": _OUTPUT_TYPE, **meta["output"]}
    return op


def _file_items(app: AppCore, batch_id: str, data: bytes, model: str) -> list[Any] | str:
    """``(key, chat body)`` of each ``{"key", "request"}`` line, or why the file is refused."""
    items: list[tuple[str, dict[str, Any]]] = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return f"Invalid JSON in the input file at line {n}."
        if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
            return f"Line {n} of the input file has no 'request' object."
        key = line.get("key")
        items.append(
            (str(key) if key is not None else f"{batch_id}-{n}", chat_body(model, line["request"]))
        )
    return items


async def batch_create(app: AppCore, request: web.Request, model: str) -> web.Response:
    """``POST /v1beta/models/{model}:batchGenerateContent``."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return wire_error(400, "Invalid JSON payload received.")
    batch = body.get("batch") if isinstance(body, dict) else None
    config = batch.get("inputConfig") if isinstance(batch, dict) else None
    if not isinstance(config, dict):
        return wire_error(
            400, "* BatchGenerateContentRequest.batch.input_config: input_config is required"
        )
    assert isinstance(batch, dict)
    batch_id = "".join(id_rng.choices(LOWER, k=36))
    # An expired Gemini batch has no results: none of its items is run or billed.
    extra: dict[str, Any] = {
        "gemini_model": model,
        "display_name": batch.get("displayName"),
        "expired_done": 0.0,
    }
    limit = app.config.openai_max_bytes  # the engine's byte limit, as OpenAI's batches
    if "fileName" in config:
        name = str(config["fileName"])
        source = app.state.files.get(name.removeprefix("files/"))
        if source is None or not source.purpose.startswith("gemini:"):
            return wire_error(404, f"File {name} not found.")
        if limit is not None and source.size > limit:
            return wire_error(400, f"Request payload size exceeds the limit: {limit} bytes.")
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(
            None, _file_items, app, batch_id, source.content(), model
        )
        if isinstance(items, str):
            return wire_error(400, items)
        extra["gemini_file"] = name
    else:
        if limit is not None and request.content_length and request.content_length > limit:
            return wire_error(400, f"Request payload size exceeds the limit: {limit} bytes.")
        inline = (config.get("requests") or {}).get("requests")
        if not isinstance(inline, list) or not inline:
            return wire_error(
                400, "* BatchGenerateContentRequest.batch.input_config.requests: empty"
            )
        items = []
        metadata: list[Any] = []
        for i, entry in enumerate(inline):
            req = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(req, dict) or not req.get("contents"):
                return wire_error(
                    400, f"* requests[{i}].request.contents: contents is not specified"
                )
            # The key in an entry's metadata names its item, as a file line's key does.
            meta = entry.get("metadata")
            key = meta.get("key") if isinstance(meta, dict) else None
            items.append(
                (str(key) if key is not None else f"{batch_id}-{i}", chat_body(model, req))
            )
            metadata.append(meta)
        if len({cid for cid, _ in items}) < len(items):
            return wire_error(400, "* requests: the keys in the requests' metadata must be unique")
        extra.update(inline=True, inline_keys=[c for c, _ in items], inline_metadata=metadata)
    if app.create_rate_limited():
        return wire_error(
            429,
            "Quota exceeded for metric: generativelanguage.googleapis.com/"
            "batch_requests_per_minute. Please retry later.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{app.config.retry_after:g}s",
                }
            ],
        )
    full = queue_refusal(app, WIRE, items)
    if full is not None:
        return wire_error(429, full)
    rec = create_batch(app, batch_id=batch_id, wire=WIRE, items=items, extra=extra)
    op = await _operation(app, rec, poll=False)
    if app.config.step_latency > 0:
        await asyncio.sleep(app.config.step_latency)
    return wire_ok(op)


async def batch_get(app: AppCore, request: web.Request) -> web.StreamResponse:
    """``GET /v1beta/batches/{id}``, ``POST …:cancel``, ``DELETE``."""
    tail = last_segment(request)
    batch_id, _, verb = tail.partition(":")
    rec = wire_batch(app, batch_id, WIRE)
    if rec is None or rec.get("deleted"):
        # A deleted batch is gone for every call, a second delete too.
        return wire_error(404, f"Requested entity was not found. batches/{batch_id}")
    if request.method == "POST" and verb == "cancel":
        if rec.get("final") is None:
            await app.engine.cancel_openai(batch_id)
        return wire_ok({})
    if request.method == "DELETE":
        # The batch's record and answers go; its results file stays (deleted on its own).
        rec["deleted"] = True
        app.state.save_batch(rec)
        return wire_ok({})
    return wire_ok(await _operation(app, rec, poll=True))


async def batch_list(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1beta/batches?pageSize=&pageToken=`` newest first (no inline responses)."""
    size = int(request.query.get("pageSize") or 50)
    start = int(request.query.get("pageToken") or 0)
    recs = sorted(
        (r for r in app.state.batches.values() if r.get("wire") == WIRE and not r.get("deleted")),
        key=lambda r: r["created"],
        reverse=True,
    )
    ops = []
    for rec in recs[start : start + size]:
        ops.append(await _operation(app, rec, poll=False))
    page: dict[str, Any] = {"operations": ops}
    if start + size < len(recs):
        page["nextPageToken"] = str(start + size)
    return wire_ok(page)


# ------------------------------------------------------------------ routes


async def generate(app: AppCore, request: web.Request, model: str) -> web.Response:
    """``POST /v1beta/models/{model}:generateContent``."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return wire_error(400, "Invalid JSON payload received.")
    if not body.get("contents"):
        return wire_error(400, "* GenerateContentRequest.contents: contents is not specified")
    verdict = await immediate_verdict(app, {"model": model, **body}, model, request)
    if verdict.kind == "abandoned":
        return web.Response(status=499)  # the client hung up: nothing answered or billed
    if verdict.kind == "rate_limit":
        delay = f"{app.config.retry_after:g}s"
        return wire_error(
            429,
            _MESSAGES[429],
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}],
        )
    if verdict.kind == "server_error":
        status = 503 if verdict.other else 500
        return wire_error(status, _MESSAGES[status])
    chat = answer_chat(app, chat_body(model, body), verdict)
    return wire_ok(gemini_response(chat, model))


def add_routes(app: web.Application, emulator: AppCore) -> None:
    """Serve the Gemini API from ``emulator`` on ``app``."""
    from providers.emulator.gemini_files import Uploads, file_delete, file_get, file_list, upload

    uploads = Uploads()

    async def file_one(request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            return await file_delete(emulator, request)
        if request.method == "GET":
            return await file_get(emulator, request)
        return wire_error(404, f"Method {request.method} not found for files.")

    def guarded(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            # A chunk of a resumable upload is authorised by its upload_id.
            chunk = "upload_id" in request.query
            valid = emulator.config.api_keys
            key = request.headers.get("x-goog-api-key", "").strip() or request.query.get("key")
            if valid is not None and key and key not in valid and not chunk:
                emulator.state.key_refusals += 1
                return wire_error(
                    400,
                    "API key not valid. Please pass a valid API key.",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }
                    ],
                )
            if not _authorized(request) and not chunk:
                return wire_error(
                    403,
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to "
                    "call this API.",
                )
            response: web.StreamResponse = await handler(request)
            return response

        return wrapped

    async def models(request: web.Request) -> web.StreamResponse:
        model, _, verb = last_segment(request).rpartition(":")
        if verb == "generateContent":
            return await generate(emulator, request, model)
        if verb == "batchGenerateContent":
            return await batch_create(emulator, request, model)
        return wire_error(404, f"Method {verb} not found for models/{model}.")

    routes: dict[tuple[str, bool], Any] = {
        ("batches", False): guarded(lambda q: batch_list(emulator, q)),
        ("batches", True): guarded(lambda q: batch_get(emulator, q)),
        ("files", False): guarded(lambda q: file_list(emulator, q)),
        ("files", True): guarded(file_one),
    }
    r = app.router
    for version in ("v1beta", "v1"):
        r.add_post(f"/{version}/models/{{tail}}", guarded(models))
        r.add_post(f"/upload/{version}/files", guarded(lambda q: upload(emulator, uploads, q)))
    r.add_get("/v1beta/batches", routes["batches", False])
    r.add_route("*", "/v1beta/batches/{tail}", routes["batches", True])
    r.add_get("/v1beta/files", routes["files", False])
    r.add_route("*", "/v1beta/files/{tail}", routes["files", True])

    @web.middleware
    async def v1(request: web.Request, handler: Any) -> web.StreamResponse:
        # google-genai 3 calls the v1 API by default, whose /v1/batches and
        # /v1/files are OpenAI's paths too: a request with a Google key (and no
        # bearer token, which OpenAI clients send) is Gemini's.
        parts = request.path.split("/")
        google = request.headers.get("x-goog-api-key") or "key" in request.query
        gemini = google and "Authorization" not in request.headers
        if gemini and len(parts) in (3, 4) and parts[1] == "v1":
            route = routes.get((parts[2], len(parts) == 4))
            if route is not None and (len(parts) == 4 or request.method == "GET"):
                response: web.StreamResponse = await route(request)
                return response
        answer: web.StreamResponse = await handler(request)
        return answer

    app.middlewares.append(v1)
