"""The aiohttp application: every provider's routes plus the ``/_emulator/*`` controls.

The routes live with their API — :mod:`~providers.emulator.inference`
(immediate calls), :mod:`~providers.emulator.openai_routes`,
:mod:`~providers.emulator.anthropic_routes`, :mod:`~providers.emulator.gemini`,
:mod:`~providers.emulator.mistral` — as functions of the
:class:`~providers.emulator.appcore.AppCore` this application is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from providers.emulator import anthropic_routes, gemini, inference, mistral, openai_routes
from providers.emulator.appcore import AppCore, Handler, guarded
from providers.emulator.auth import anthropic_auth, openai_auth
from providers.emulator.replies import JSON, anthropic_error, json_response, openai_error

__all__ = ["JSON", "EmulatorApp", "anthropic_error", "openai_error"]

_TICK = 0.1

# (method, path, handler) of OpenAI's and Anthropic's routes.
_OPENAI_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/v1/chat/completions", inference.chat),
    ("POST", "/v1/responses", inference.responses),
    ("POST", "/v1/files", openai_routes.upload),
    ("GET", "/v1/files", openai_routes.file_list),
    ("GET", "/v1/files/{id}", openai_routes.file_get),
    ("DELETE", "/v1/files/{id}", openai_routes.file_delete),
    ("GET", "/v1/files/{id}/content", openai_routes.file_content),
    ("POST", "/v1/batches", openai_routes.batch_create),
    ("GET", "/v1/batches", openai_routes.batch_list),
    ("GET", "/v1/batches/{id}", openai_routes.batch_get),
    ("POST", "/v1/batches/{id}/cancel", openai_routes.batch_cancel),
)
_ANTHROPIC_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/v1/messages", inference.messages),
    ("POST", "/v1/messages/batches", anthropic_routes.msgbatch_create),
    ("GET", "/v1/messages/batches", anthropic_routes.msgbatch_list),
    ("GET", "/v1/messages/batches/{id}", anthropic_routes.msgbatch_get),
    ("GET", "/v1/messages/batches/{id}/results", anthropic_routes.msgbatch_results),
    ("POST", "/v1/messages/batches/{id}/cancel", anthropic_routes.msgbatch_cancel),
)


class EmulatorApp(AppCore):
    """The emulator's state, configuration and HTTP routes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ticker: asyncio.Task[None] | None = None

    def build(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=512 * 1024 * 1024, middlewares=[_client_gone])
        r = app.router
        for method, path, handler in _OPENAI_ROUTES:
            r.add_route(method, path, self._openai(functools.partial(handler, self)))
        for method, path, handler in _ANTHROPIC_ROUTES:
            r.add_route(method, path, self._anthropic(functools.partial(handler, self)))
        gemini.add_routes(app, self)
        mistral.add_routes(app, self)
        r.add_get("/_emulator/billing", self.ctl_billing)
        r.add_get("/_emulator/config", self.ctl_config_get)
        r.add_post("/_emulator/config", self.ctl_config)
        r.add_post("/_emulator/reset", self.ctl_reset)
        r.add_get("/_emulator/health", self.ctl_health)
        r.add_get("/_emulator/batches/{id}/tokens", self.ctl_batch_tokens)
        app.on_startup.append(self._start_ticker)
        app.on_cleanup.append(self._stop_ticker)
        return app

    def _openai(self, handler: Handler) -> Handler:
        return guarded(lambda r: self._counted(openai_auth(r, self.config.api_keys)), handler)

    def _anthropic(self, handler: Handler) -> Handler:
        return guarded(lambda r: self._counted(anthropic_auth(r, self.config.api_keys)), handler)

    def _counted(self, refused: web.Response | None) -> web.Response | None:
        # Counted for the billing report: a refused key is never billed, but it is a call.
        if refused is not None:
            self.state.key_refusals += 1
        return refused

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

    # ------------------------------------------------------------- controls

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

    async def ctl_batch_tokens(self, request: web.Request) -> web.Response:
        """``GET /_emulator/batches/{id}/tokens``: a batch's enqueued tokens by model."""
        rec = self.state.batches.get(request.match_info["id"])
        if rec is None:
            return json_response({"error": f"no batch {request.match_info['id']}"}, 404)
        return json_response({"id": rec["id"], "tokens": dict(self.engine.batch_tokens(rec))})

    async def ctl_health(self, request: web.Request) -> web.Response:
        """``GET /_emulator/health``."""
        return json_response({"ok": True})


@web.middleware
async def _client_gone(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A client that hung up mid-request is normal (an interrupted run), not a server error."""
    try:
        return await handler(request)
    except ConnectionResetError:
        # Nobody reads this answer; 499 is the conventional "client closed request".
        return web.Response(status=499)
