"""What the command-line fault tests share: an emulator process, a run, a requests file."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}


class EmulatorProcess:
    """``python -m providers.emulator`` in a process of its own (its billing is the truth)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "providers.emulator",
                "--port",
                "0",
                "--config",
                json.dumps(self.config),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, f"emulator did not start: {line!r}"
        self.port = int(match.group(1))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def billing(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_emulator/billing", timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data


def dead_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def workdir(path: Path, base_url: str, n: int, *, extra: str = "") -> Path:
    """A folder with a ``lexibatch.toml`` for ``openai`` at ``base_url`` and ``requests.jsonl``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "lexibatch.toml").write_text(
        "[connector]\n"
        'provider = "openai"\n'
        "[providers.openai]\n"
        f'base_url = "{base_url}"\n'
        "[batch]\n"
        "linger = 0.2\n"
        "poll_interval = 0.1\n"
        "max_poll_interval = 0.2\n" + extra
    )
    lines = [
        json.dumps({"id": str(i), "prompt": f"question {i}", "schema": SCHEMA}) for i in range(n)
    ]
    (path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    return path


def env() -> dict[str, str]:
    """The environment of a run: a dummy key, no plugins, no stray settings."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEXIBATCH_", "OPENAI_", "ANTHROPIC_"))
    }
    clean.update({"LEXIBATCH_LOAD_PLUGINS": "", "OPENAI_API_KEY": "sk-test-dummy"})
    return clean


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
