"""What the command-line fault tests share: an emulator process, a run, a requests file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.emulated_run import SCHEMA, EmulatorProcess, run_env, work_folder

__all__ = [
    "SCHEMA",
    "EmulatorProcess",
    "command",
    "dead_port",
    "env",
    "lexibatch",
    "results",
    "workdir",
]


def dead_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def workdir(path: Path, base_url: str, n: int, *, extra: str = "") -> Path:
    """A folder with a ``lexibatch.toml`` for ``openai`` at ``base_url`` and ``requests.jsonl``.

    ``extra``: TOML appended to the file, in its ``[batch]`` table (or tables of its own).
    """
    work_folder(path, base_url, prompts=(f"question {i}" for i in range(n)))
    if extra:
        with (path / "lexibatch.toml").open("a") as config:
            config.write(extra)
    return path


def env() -> dict[str, str]:
    """The environment of a run: a dummy key, no plugins, no stray settings."""
    return run_env(OPENAI_API_KEY="sk-test-dummy")


def command(*args: str) -> list[str]:
    """``lexibatch ARGS`` as this interpreter runs it."""
    return [sys.executable, "-m", "synthesis.cli", *args]


def lexibatch(
    *args: str, cwd: Path, script: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``lexibatch ARGS`` in ``cwd`` (through ``script`` when given: ``python -c``)."""
    argv = [sys.executable, "-c", script, *args] if script else command(*args)
    return subprocess.run(argv, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
