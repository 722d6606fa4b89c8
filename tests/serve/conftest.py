"""A live ``lexibatch serve`` app on a free loopback port, over a real connector and emulator.

The server runs in a thread of its own with its own event loop: connector,
strategies and store are opened, served and closed on that loop, as the
``serve`` command does. Tests talk to it over HTTP like any client.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The test modules share helpers from serve_helpers.py beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from serve_helpers import LiveServer, free_port

#: A few components keep each entry at a handful of calls.
COMPONENTS = ("synonyms", "examples", "pronunciation")


@pytest.fixture
def start_server(
    fresh_emulator: Any, make_settings: Any, tmp_path: Path, gcide: Any
) -> Iterator[Callable[..., LiveServer]]:
    """Start servers (``token=``, ``batch=`` settings); all are stopped after the test."""
    started: list[LiveServer] = []

    def start(
        *,
        token: str | None = None,
        has_batch: bool = True,
        notice: str | None = None,
        linger: float = 0.05,
    ) -> LiveServer:
        import uvicorn

        from plugins.factory import open_connector
        from plugins.jsonreport import batches_json, cost_json
        from synthesis.serve import ServeContext, create_app

        settings = make_settings(fresh_emulator, batch={"linger": linger})
        port = free_port()
        live = LiveServer(
            url=f"http://127.0.0.1:{port}",
            db=Path(settings.connector.db),
            emulator=fresh_emulator,
            thread=threading.Thread(daemon=True),
        )
        ready = threading.Event()

        async def main() -> None:
            connector = open_connector(settings)
            try:
                context = ServeContext(
                    connector=connector,
                    documents=connector.store,
                    sources=gcide,
                    components=COMPONENTS,
                    model_for=settings.model_for,
                    has_batch=has_batch,
                    batches=lambda: batches_json(connector.store),
                    cost=lambda: cost_json(connector.store),
                    token=token,
                    notice=notice,
                    release_batches=connector.release_batches,
                )
                config = uvicorn.Config(
                    create_app(context), host="127.0.0.1", port=port, log_level="warning"
                )
                live.server = uvicorn.Server(config)
                ready.set()
                await live.server.serve()
            finally:
                await connector.aclose()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                live.error.append(exc)
                ready.set()

        live.thread = threading.Thread(target=run, daemon=True)
        live.thread.start()
        ready.wait(30)
        deadline = time.monotonic() + 30
        while not (live.server is not None and live.server.started):
            assert not live.error, live.error
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


@pytest.fixture(scope="session")
def gcide() -> Any:
    """One GCIDE source for the session (its letter files load once)."""
    from synthesis.sources import GcideSource

    return GcideSource()
