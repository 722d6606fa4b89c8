"""Running the emulator: in a background thread (:class:`Emulator`) or blocking (:func:`serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from providers.emulator.config import EmulatorConfig
from providers.emulator.server import EmulatorApp

__all__ = ["Emulator", "serve"]

T = TypeVar("T")


async def _listen(app: EmulatorApp, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app.build(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)


class Emulator:
    """The emulator on a loopback port, served from a background thread with its own loop.

    ``Emulator(config, state_dir=None, host="127.0.0.1", port=0)``; ``port=0``
    picks a free port. Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        state_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.host = host
        self.port = port
        self.app: EmulatorApp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (the OpenAI SDK wants ``base_url + "/v1"``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Emulator:
        """Start serving; returns once the port is listening."""
        if self._thread is not None:
            return self
        ready: Future[int] = Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self.app = EmulatorApp(self.config, self.state_dir)
                self._runner, port = loop.run_until_complete(
                    _listen(self.app, self.host, self.port)
                )
            except BaseException as exc:
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(port)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="lexibatch-emulator", daemon=True)
        self._thread.start()
        self.port = ready.result(timeout=30)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._loop = None

    def _call(self, fn: Any, *args: Any) -> Any:
        if self._loop is None or self.app is None:
            raise RuntimeError("the emulator is not running")

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=30)

    def billing(self) -> dict[str, Any]:
        """What the emulator billed (same as ``GET /_emulator/billing``)."""
        assert self.app is not None
        return dict(self._call(self.app.billing))

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change the configuration at run time (same as ``POST /_emulator/config``)."""
        assert self.app is not None
        config: EmulatorConfig = self._call(self.app.configure, changes)
        self.config = config
        return config

    def reset(self) -> None:
        """Forget everything (same as ``POST /_emulator/reset``)."""
        assert self.app is not None
        self._call(self.app.reset)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    state_dir: Path | None,
    config: EmulatorConfig,
    *,
    ready: Callable[[str], object],
) -> int:
    """Serve until SIGINT or SIGTERM; ``ready(line)`` once listening (the line names the URL).

    The command line that called it shows the line: this module prints nothing.

    Returns:
        The signal that stopped it.

    Raises:
        OSError: it cannot listen there, or ``state_dir`` cannot be written.
    """
    stopped_by = [int(signal.SIGINT)]

    async def main() -> None:
        app = EmulatorApp(config, state_dir)
        runner, bound = await _listen(app, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on(sig: int) -> None:
            stopped_by[0] = sig
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on, int(sig))
        ready(f"lexibatch emulator listening on http://{host}:{bound}")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return stopped_by[0]
