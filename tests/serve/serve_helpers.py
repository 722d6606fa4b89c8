"""Reading a live server: JSON calls and waiting for a job."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """A serving app: its URL, and its store's path for reading what it left."""

    url: str
    db: Path
    emulator: Any
    thread: threading.Thread
    server: Any = None
    error: list[BaseException] = field(default_factory=list)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_for_job(client: httpx.Client, url: str, timeout: float = 60) -> dict[str, Any]:
    """Poll a job until it is ``done`` or ``failed``; returns its last report."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(url).json()
        if body["status"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, f"job still {body['status']}: {body}"
        time.sleep(0.1)
