"""The aiohttp application: OpenAI and Anthropic routes plus ``/_emulator/*`` controls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from hashlib import blake2b
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from providers.emulator import ids
from providers.emulator.answers import (
    anthropic_message,
    canonical,
    chat_completion,
    count_tokens,
    prompt_chars,
    responses_answer,
)
from providers.emulator.auth import anthropic_auth, openai_auth
from providers.emulator.batches import OPENAI_ENDPOINTS, BatchEngine, Conflict, NotFound, NotReady
from providers.emulator.config import EmulatorConfig, parse_markers
from providers.emulator.context import (
    anthropic_context_error,
    openai_context_error,
    over_context,
)
from providers.emulator.files import delete_file, list_files
from providers.emulator.jobs import validate_anthropic
from providers.emulator.limits import anthropic_too_large, openai_too_large
from providers.emulator.ratelimit import RateLimiter
from providers.emulator.replies import (
    JSON,
    ORG,
    anthropic_error,
    anthropic_headers,
    json_response,
    openai_error,
    openai_headers,
    retry_headers,
)
from providers.emulator.rng import body_seed, roll
from providers.emulator.state import State

__all__ = ["JSON", "EmulatorApp", "anthropic_error", "openai_error"]

_FRESH = ids.Fresh()
_TICK = 0.1
_FILE_PURPOSES = frozenset({"batch", "fine-tune", "assistants", "vision", "user_data", "evals"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(check: Callable[[web.Request], web.Response | None], handler: Handler) -> Handler:
    """``handler`` behind ``check``: a request ``check`` answers never reaches it."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        denied = check(request)
        if denied is not None:
            return denied
        return await handler(request)

    return wrapped


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class EmulatorApp:
    """The emulator's state, configuration and HTTP routes."""

    def __init__(self, config: EmulatorConfig, state_dir: Path | None) -> None:
        self.config = config
        self.state = State(state_dir)
        self.engine = BatchEngine(self.state, config)
        self.limiter = RateLimiter(window=config.rate_window)
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------- controls

    def configure(self, changes: dict[str, Any]) -> EmulatorConfig:
        """Apply ``changes`` to the configuration (validated as a whole)."""
        merged = {**self.config.model_dump(), **changes}
        self.config = EmulatorConfig.model_validate(merged)
        self.engine.config = self.config
        self.limiter.window = self.config.rate_window
        return self.config

    def create_rate_limited(self) -> bool:
        """Whether this batch create is answered with an ordinary 429 (uses one of
        ``batch_create_rate_limit``)."""
        if self.config.batch_create_rate_limit == 0:
            return False
        self.configure({"batch_create_rate_limit": self.config.batch_create_rate_limit - 1})
        return True

    def reset(self) -> None:
        """Forget all files, batches, billing and seen-counters."""
        self.state.reset()
        self.engine.forget()

    def billing(self) -> dict[str, Any]:
        """What the emulator billed."""
        return self.state.billing()

    def build(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=512 * 1024 * 1024, middlewares=[_client_gone])
        r = app.router
        r.add_post("/v1/chat/completions", self._openai(self.chat))
        r.add_post("/v1/responses", self._openai(self.responses))
        r.add_post("/v1/files", self._openai(self.upload))
        r.add_get("/v1/files", self._openai(self.file_list))
        r.add_get("/v1/files/{id}", self._openai(self.file_get))
        r.add_delete("/v1/files/{id}", self._openai(self.file_delete))
        r.add_get("/v1/files/{id}/content", self._openai(self.file_content))
        r.add_post("/v1/batches", self._openai(self.batch_create))
        r.add_get("/v1/batches", self._openai(self.batch_list))
        r.add_get("/v1/batches/{id}", self._openai(self.batch_get))
        r.add_post("/v1/batches/{id}/cancel", self._openai(self.batch_cancel))
        r.add_post("/v1/messages", self._anthropic(self.messages))
        r.add_post("/v1/messages/batches", self._anthropic(self.msgbatch_create))
        r.add_get("/v1/messages/batches", self._anthropic(self.msgbatch_list))
        r.add_get("/v1/messages/batches/{id}", self._anthropic(self.msgbatch_get))
        r.add_get("/v1/messages/batches/{id}/results", self._anthropic(self.msgbatch_results))
        r.add_post("/v1/messages/batches/{id}/cancel", self._anthropic(self.msgbatch_cancel))
        from providers.emulator import gemini, mistral

        gemini.add_routes(app, self)
        mistral.add_routes(app, self)
        r.add_get("/_emulator/billing", self.ctl_billing)
        r.add_get("/_emulator/config", self.ctl_config_get)
        r.add_post("/_emulator/config", self.ctl_config)
        r.add_post("/_emulator/reset", self.ctl_reset)
        r.add_get("/_emulator/health", self.ctl_health)
        app.on_startup.append(self._start_ticker)
        app.on_cleanup.append(self._stop_ticker)
        return app

    def _openai(self, handler: Handler) -> Handler:
        return _guarded(lambda r: openai_auth(r, self.config.api_keys), handler)

    def _anthropic(self, handler: Handler) -> Handler:
        return _guarded(lambda r: anthropic_auth(r, self.config.api_keys), handler)

    async def _start_ticker(self, app: web.Application) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _stop_ticker(self, app: web.Application) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.state.close()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            with contextlib.suppress(Exception):
                await self.engine.tick()

    async def ctl_billing(self, request: web.Request) -> web.Response:
        """``GET /_emulator/billing``."""
        return json_response(self.billing())

    async def ctl_config_get(self, request: web.Request) -> web.Response:
        """``GET /_emulator/config``."""
        return json_response(self.config.model_dump())

    async def ctl_config(self, request: web.Request) -> web.Response:
        """``POST /_emulator/config`` with a JSON object of changes."""
        try:
            changes = orjson.loads(await request.read() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            config = self.configure(changes)
        except (ValueError, ValidationError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(config.model_dump())

    async def ctl_reset(self, request: web.Request) -> web.Response:
        """``POST /_emulator/reset``."""
        self.reset()
        return json_response({"reset": True})

    async def ctl_health(self, request: web.Request) -> web.Response:
        """``GET /_emulator/health``."""
        return json_response({"ok": True})

    # ---------------------------------------------------------- immediate

    async def _immediate(self, request: web.Request, openai: bool, kind: str) -> web.Response:
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
        cfg = self.config
        too_long = over_context(cfg, body)
        if too_long is not None:
            if openai:
                error = openai_context_error(*too_long, responses=kind == "responses")
                return json_response({"error": error}, 400, openai_headers())
            inner = anthropic_context_error(*too_long)
            return anthropic_error(400, inner["type"], inner["message"])
        wait = self.limiter.admit(cfg.rpm_limit, cfg.tpm_limit, count_tokens(prompt_chars(body)))
        if wait is not None:
            return self._over_limit(openai, str(body["model"]), wait)
        canon = canonical(body)
        digest = blake2b(canon, digest_size=16).hexdigest()
        seen = self.state.seen_bodies.get(digest, 0)
        model = body["model"]
        markers = parse_markers(model)
        seed = cfg.seed
        if cfg.latency > 0:
            await asyncio.sleep(cfg.latency)
        if markers.wants("slow", seen) or (
            cfg.slow > 0 and roll(seed, "slow", digest, seen) < cfg.slow
        ):
            await asyncio.sleep(cfg.slow_seconds)
            if not cfg.bill_abandoned and (
                request.transport is None or request.transport.is_closing()
            ):
                # The client hung up while it waited: this provider forgets the call.
                return web.Response(status=499)
        if markers.wants("rate-limit", seen) or (
            cfg.rate_limit > 0 and roll(seed, "rate_limit", digest, seen) < cfg.rate_limit
        ):
            self.state.immediate_call(digest, False, 0, 0)
            retry = retry_headers(cfg.retry_after)
            if openai:
                return openai_error(
                    429,
                    f"Rate limit reached for {model} in organization {ORG} on requests per min "
                    f"(RPM): Limit 500, Used 500, Requested 1. Please try again in "
                    f"{int(cfg.retry_after * 1000)}ms.",
                    "requests",
                    code="rate_limit_exceeded",
                    headers=retry,
                )
            return anthropic_error(
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 requests "
                "per minute. Please reduce the prompt length or the maximum tokens requested, or "
                "try again later.",
                headers=retry,
            )
        if markers.wants("server-error", seen) or (
            cfg.server_error > 0 and roll(seed, "server_error", digest, seen) < cfg.server_error
        ):
            self.state.immediate_call(digest, False, 0, 0)
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
            cfg.schema_invalid > 0
            and roll(seed, "schema_invalid", digest, seen) < cfg.schema_invalid
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
        self.state.immediate_call(digest, True, answer.input_tokens, answer.output_tokens)
        self.limiter.spend(answer.input_tokens + answer.output_tokens)
        headers = openai_headers() if openai else anthropic_headers()
        return json_response(answer.body, 200, headers)

    def _over_limit(self, openai: bool, model: str, wait: float) -> web.Response:
        """The 429 of a call past the emulator's own rate limits."""
        cfg = self.config
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

    async def _inference(self, request: web.Request, openai: bool, kind: str) -> web.Response:
        # Every answer of an inference route, errors included, reports the rate limits.
        response = await self._immediate(request, openai, kind)
        cfg = self.config
        response.headers.update(self.limiter.headers(openai, cfg.rpm_limit, cfg.tpm_limit))
        return response

    async def chat(self, request: web.Request) -> web.Response:
        """``POST /v1/chat/completions``."""
        return await self._inference(request, True, "chat")

    async def responses(self, request: web.Request) -> web.Response:
        """``POST /v1/responses``."""
        return await self._inference(request, True, "responses")

    async def messages(self, request: web.Request) -> web.Response:
        """``POST /v1/messages``."""
        return await self._inference(request, False, "messages")

    async def _step_latency(self) -> None:
        if self.config.step_latency > 0:
            await asyncio.sleep(self.config.step_latency)

    # ---------------------------------------------------------------- files

    async def upload(self, request: web.Request) -> web.Response:
        """``POST /v1/files`` (multipart: ``purpose`` and ``file``)."""
        boundary = request.content_type.startswith("multipart/") and _boundary(request)
        if not boundary:
            return openai_error(400, "Expected a multipart/form-data body.", param="file")
        fields = _multipart(await request.read(), boundary)
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
        rec = await loop.run_in_executor(None, self.state.add_file, data, purpose, filename)
        await self._step_latency()
        return json_response(rec.obj(fresh_upload=True), 200, openai_headers())

    def _file(self, request: web.Request) -> Any:
        file_id = request.match_info["id"]
        rec = self.state.files.get(file_id)
        if rec is None or rec.purpose.startswith("anthropic_"):
            return openai_error(404, f"No such File object: {file_id}", param="id")
        return rec

    async def file_list(self, request: web.Request) -> web.Response:
        """``GET /v1/files``."""
        return list_files(self.state, request)

    async def file_delete(self, request: web.Request) -> web.Response:
        """``DELETE /v1/files/{id}``."""
        return delete_file(self.state, request)

    async def file_get(self, request: web.Request) -> web.Response:
        """``GET /v1/files/{id}``."""
        rec = self._file(request)
        if isinstance(rec, web.Response):
            return rec
        return json_response(rec.obj(), 200, openai_headers())

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/files/{id}/content`` (streamed)."""
        rec = self._file(request)
        if isinstance(rec, web.Response):
            return rec
        headers = {
            **openai_headers(),
            "Content-Type": "application/octet-stream",
            "content-disposition": f'attachment; filename="{rec.filename}"',
        }
        await self._step_latency()
        return await self._file_response(request, rec, headers)

    # -------------------------------------------------------- OpenAI batches

    async def batch_create(self, request: web.Request) -> web.Response:
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
        if self.create_rate_limited():
            return openai_error(
                429,
                f"Rate limit reached for batch creation in organization {ORG}: Limit 2000 "
                f"per 1h. Please try again in {int(self.config.retry_after * 1000)}ms.",
                "requests",
                code="rate_limit_exceeded",
                headers=retry_headers(self.config.retry_after),
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
        rec = self.state.files.get(body["input_file_id"])
        if rec is None or rec.purpose != "batch":
            return openai_error(
                400 if rec is not None else 404,
                f"No such File object: {body['input_file_id']}"
                if rec is None
                else "The input file must be uploaded with purpose 'batch'.",
                param="input_file_id",
            )
        too_large = openai_too_large(self.config, rec)
        if too_large is not None:
            return openai_error(400, too_large)
        obj = self.engine.create_openai(
            body["input_file_id"], body["endpoint"], "24h", body.get("metadata")
        )
        await self._step_latency()
        return json_response(obj, 200, openai_headers())

    async def batch_get(self, request: web.Request) -> web.Response:
        """``GET /v1/batches/{id}``."""
        batch_id = request.match_info["id"]
        try:
            obj = await self.engine.get_openai(batch_id)
        except NotFound:
            return openai_error(404, f"No batch found with id '{batch_id}'.")
        return json_response(obj, 200, openai_headers())

    async def batch_cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/batches/{id}/cancel``."""
        batch_id = request.match_info["id"]
        try:
            obj = await self.engine.cancel_openai(batch_id)
        except NotFound:
            return openai_error(404, f"No batch found with id '{batch_id}'.")
        except Conflict as exc:
            return openai_error(409, str(exc))
        return json_response(obj, 200, openai_headers())

    async def batch_list(self, request: web.Request) -> web.Response:
        """``GET /v1/batches?limit=&after=``."""
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return openai_error(400, "Invalid 'limit': expected an integer.", param="limit")
        if not 1 <= limit <= 100:
            return openai_error(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
        obj = await self.engine.list_openai(limit, request.query.get("after"))
        return json_response(obj, 200, openai_headers())

    # ----------------------------------------------------- Anthropic batches

    async def msgbatch_create(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batches`` with inline ``requests``."""
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if anthropic_too_large(self.config, raw):
            return anthropic_error(
                413, "request_too_large", "Request exceeds the maximum allowed number of bytes."
            )
        requests = body.get("requests") if isinstance(body, dict) else None
        problem = validate_anthropic(requests, self.config.anthropic_max_requests)
        if problem is not None:
            return anthropic_error(400, "invalid_request_error", problem)
        assert isinstance(requests, list)
        if self.create_rate_limited():
            return anthropic_error(
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 "
                "Message Batches API requests per minute. Please try again later.",
                headers=retry_headers(self.config.retry_after),
            )
        full = self.engine.anthropic_refusal(requests)
        if full is not None:
            self.state.queue_refusals += 1
            return anthropic_error(429, "rate_limit_error", full)
        obj = self.engine.create_anthropic(raw, requests, _origin(request))
        await self._step_latency()
        return json_response(obj, 200, anthropic_headers())

    async def msgbatch_get(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches/{id}``."""
        batch_id = request.match_info["id"]
        try:
            obj = await self.engine.get_anthropic(batch_id, _origin(request))
        except NotFound:
            return anthropic_error(404, "not_found_error", f"Message batch {batch_id} not found.")
        headers = anthropic_headers()
        if obj["processing_status"] != "ended" and self.config.poll_retry_after > 0:
            # As the real API: a batch in progress says when to ask again.
            headers["retry-after"] = f"{self.config.poll_retry_after:g}"
        return json_response(obj, 200, headers)

    async def msgbatch_cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/batches/{id}/cancel``."""
        batch_id = request.match_info["id"]
        try:
            obj = await self.engine.cancel_anthropic(batch_id, _origin(request))
        except NotFound:
            return anthropic_error(404, "not_found_error", f"Message batch {batch_id} not found.")
        except Conflict as exc:
            return anthropic_error(400, "invalid_request_error", str(exc))
        return json_response(obj, 200, anthropic_headers())

    async def msgbatch_list(self, request: web.Request) -> web.Response:
        """``GET /v1/messages/batches?limit=&after_id=&before_id=``."""
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return anthropic_error(
                400, "invalid_request_error", "limit: Input should be an integer"
            )
        if not 1 <= limit <= 1000:
            return anthropic_error(
                400, "invalid_request_error", "limit: must be between 1 and 1000"
            )
        obj = await self.engine.list_anthropic(
            limit, request.query.get("after_id"), request.query.get("before_id"), _origin(request)
        )
        return json_response(obj, 200, anthropic_headers())

    async def msgbatch_results(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/messages/batches/{id}/results`` (JSONL, 404 until the batch has ended)."""
        batch_id = request.match_info["id"]
        try:
            file_id = await self.engine.results_anthropic(batch_id)
        except NotFound:
            return anthropic_error(404, "not_found_error", f"Message batch {batch_id} not found.")
        except NotReady:
            return anthropic_error(
                404,
                "not_found_error",
                f"Message batch {batch_id} has not ended processing; its results are not "
                "available yet.",
            )
        rec = self.state.files[file_id]
        name = f"{batch_id}_results.jsonl"
        headers = {
            **anthropic_headers(),
            "Content-Type": "application/x-jsonl",
            "content-disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}",
        }
        await self._step_latency()
        return await self._file_response(request, rec, headers)

    async def _file_response(
        self, request: web.Request, rec: Any, headers: dict[str, str]
    ) -> web.StreamResponse:
        if self.config.download_cuts == 0:
            return _file_response(rec, headers)
        self.configure({"download_cuts": self.config.download_cuts - 1})
        return await _cut_response(request, rec.content(), headers)


@web.middleware
async def _client_gone(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A client that hung up mid-request is normal (an interrupted run), not a server error."""
    try:
        return await handler(request)
    except ConnectionResetError:
        # Nobody reads this answer; 499 is the conventional "client closed request".
        return web.Response(status=499)


def _boundary(request: web.Request) -> bytes | None:
    for piece in request.headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode()
    return None


def _multipart(body: bytes, boundary: bytes) -> dict[str, tuple[str, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, content)."""
    fields: dict[str, tuple[str, bytes]] = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = filename = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for piece in line.split(";")[1:]:
                    key, _, value = piece.strip().partition("=")
                    if key == "name":
                        name = value.strip('"')
                    elif key == "filename":
                        filename = value.strip('"')
        if name is not None:
            fields[name] = (filename or "upload", content)
    return fields


def _file_response(rec: Any, headers: dict[str, str]) -> web.StreamResponse:
    if rec.path is not None:
        return web.FileResponse(rec.path, headers=headers)
    return web.Response(body=rec.data, headers=headers)


async def _cut_response(
    request: web.Request, data: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Promise ``data`` whole, send its first line and a bit more, then hang up."""
    response = web.StreamResponse(headers=headers)
    response.content_length = len(data)
    await response.prepare(request)
    first = data.find(b"\n") + 1
    await response.write(data[: min(len(data) - 1, first + 10)])
    if request.transport is not None:
        request.transport.close()
    return response
