"""What every route of the emulator shares: configuration, state, batch engine, rate limiter.

The route modules (:mod:`~providers.emulator.inference`,
:mod:`~providers.emulator.openai_routes`, :mod:`~providers.emulator.anthropic_routes`,
:mod:`~providers.emulator.gemini`, :mod:`~providers.emulator.mistral`) are
functions of an :class:`AppCore`; :class:`~providers.emulator.server.EmulatorApp`
is the one that serves them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from providers.emulator.batchviews import BatchEngine
from providers.emulator.config import EmulatorConfig
from providers.emulator.ratelimit import RateLimiter
from providers.emulator.state import State

__all__ = ["AppCore", "Handler", "guarded", "origin"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AppCore:
    """The emulator's configuration, state, batch engine and rate limiter."""

    def __init__(self, config: EmulatorConfig, state_dir: Path | None) -> None:
        self.config = config
        self.state = State(state_dir)
        self.engine = BatchEngine(self.state, config)
        self.limiter = RateLimiter(window=config.rate_window)

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

    async def step_latency(self) -> None:
        """Wait ``step_latency`` seconds, as a provider's batch step takes time."""
        if self.config.step_latency > 0:
            await asyncio.sleep(self.config.step_latency)

    async def file_response(
        self, request: web.Request, rec: Any, headers: dict[str, str]
    ) -> web.StreamResponse:
        """A stored file's content; cut short while ``download_cuts`` lasts."""
        if self.config.download_cuts == 0:
            return _whole_file(rec, headers)
        self.configure({"download_cuts": self.config.download_cuts - 1})
        return await _cut_response(request, rec.content(), headers)


def guarded(check: Callable[[web.Request], web.Response | None], handler: Handler) -> Handler:
    """``handler`` behind ``check``: a request ``check`` answers never reaches it."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        denied = check(request)
        if denied is not None:
            return denied
        return await handler(request)

    return wrapped


def origin(request: web.Request) -> str:
    """The scheme and host the client called, for URLs in answers."""
    return f"{request.scheme}://{request.host}"


def _whole_file(rec: Any, headers: dict[str, str]) -> web.StreamResponse:
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
