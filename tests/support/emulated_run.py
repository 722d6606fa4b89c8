"""An emulator in a process of its own, and a work folder for ``lexibatch`` commands against it.

Shared by the command-line tests, the crash tests and the benchmarks; the
benchmarks run without pytest, so nothing here imports it.

- :class:`EmulatorProcess`: ``python -m providers.emulator`` on a loopback
  port, optionally with a state folder (``--state``: its files and batches
  survive a restart, which reuses the port).
- :func:`work_folder`: a folder with a ``lexibatch.toml`` pointing one
  provider at the emulator and a ``requests.jsonl`` for ``lexibatch run``.
- :func:`shard_states`: the shards a run has journaled, read from outside.
- :func:`paid_calls`: the calls a store's ledger holds, to set beside the emulator's billing.
- :func:`run_env`: the environment of a ``lexibatch`` process (dummy keys,
  no entry-point plugins, nothing of the caller's own settings).
"""

from __future__ import annotations

import collections
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "SCHEMA",
    "EmulatorProcess",
    "paid_calls",
    "run_env",
    "shard_states",
    "work_folder",
    "write_config",
    "write_requests",
]

#: The checkout the tests belong to (the emulator and ``lexibatch`` run from it).
ROOT = Path(__file__).resolve().parents[2]

#: The schema of every request a work folder holds.
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"answer": {"type": "string"}}}

# Environment variables of the caller a run must not see: its own lexibatch
# settings and real provider keys.
_FOREIGN = ("LEXIBATCH_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "MISTRAL_")

# How much of the emulator's log is kept for a failure's message.
_LOG_LINES = 50


class EmulatorProcess:
    """``python -m providers.emulator`` in a process of its own (its billing is the truth).

    Usable as a context manager, or through :meth:`start` and :meth:`stop`
    (started again, it listens on the same port and, with ``state``, finds
    its files and batches again).

    Args:
        config: :class:`~providers.emulator.EmulatorConfig` fields, as JSON.
        state: the emulator's state folder (``None``: it keeps state in memory).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, state: Path | None = None):
        self.config = dict(config or {})
        self.state = state
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=_LOG_LINES)
        self._drain: threading.Thread | None = None

    def start(self) -> None:
        """Start the process and wait until it listens.

        Raises:
            RuntimeError: it did not start (its first line of output is given).
        """
        argv = [sys.executable, "-m", "providers.emulator", "--port", str(self.port)]
        if self.state is not None:
            argv += ["--state", str(self.state)]
        argv += ["--config", json.dumps(self.config)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if match is None:
            self.proc.kill()
            self.proc.wait()
            rest = self.proc.stderr.read()
            self.proc.stderr.close()
            self.proc = None
            raise RuntimeError(f"the emulator did not start: {(line + rest).strip()[-2000:]!r}")
        self.port = int(match.group(1))
        # Its log is read on, so that a full pipe never blocks the emulator.
        self._drain = threading.Thread(target=self._read_log, args=(self.proc.stderr,), daemon=True)
        self._drain.start()

    def _read_log(self, stream: Any) -> None:
        for line in stream:
            self._log.append(line)

    def stop(self) -> None:
        """End the process (killed if it does not stop within 10 s); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._drain is not None:
            self._drain.join(timeout=5)
            self._drain = None
        if proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The emulator's root URL (OpenAI's API is under ``/v1``, Mistral's under ``/mistral``)."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        """The last lines the emulator logged (for a failure's message)."""
        return "".join(self._log)

    def call(
        self, path: str, body: Mapping[str, Any] | None = None, *, google: bool = False
    ) -> Any:
        """``GET path`` (``POST`` with a JSON ``body``) with a dummy key; the JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", "Bearer sk-test-dummy")
        if google:
            req.add_header("x-goog-api-key", "sk-test-dummy")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def billing(self) -> dict[str, Any]:
        """What the emulator billed (``GET /_emulator/billing``)."""
        data: dict[str, Any] = self.call("/_emulator/billing")
        return data

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its children so far (Linux ``/proc``)."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return 0.0
        # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the name.
        fields = stat.rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / tick


def shard_states(db: Path) -> list[str]:
    """The state of each shard journaled in the store ``db`` so far (none while it is made)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return [row[0] for row in conn.execute("SELECT state FROM shards")]
    except sqlite3.OperationalError:
        return []


def paid_calls(db: Path, mode: str = "batch") -> int:
    """How many calls in ``mode`` the ledger of the store ``db`` holds (one row a paid answer)."""
    with sqlite3.connect(db, timeout=5) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM calls WHERE mode = ?", (mode,)).fetchone()
    return int(count)


def run_env(**keys: str) -> dict[str, str]:
    """The environment of a ``lexibatch`` process: ``keys`` (e.g. ``OPENAI_API_KEY="sk-…"``),
    no entry-point plugins, none of the caller's lexibatch settings or provider keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    env.update(keys)
    return env


def write_config(folder: Path, tables: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``folder/lexibatch.toml`` from its tables (``"providers.openai"`` names a sub-table).

    Values are strings, numbers or booleans.
    """
    lines: list[str] = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
    path = folder / "lexibatch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def write_requests(
    path: Path, prompts: Iterable[str], schema: Mapping[str, Any] | None = None
) -> Path:
    """Write ``lexibatch run``'s input: one request a prompt, ids ``0``, ``1``, …"""
    lines = [
        json.dumps({"id": str(i), "prompt": p, "schema": dict(schema or SCHEMA)})
        for i, p in enumerate(prompts)
    ]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def work_folder(
    path: Path,
    base_url: str,
    *,
    provider: str = "openai",
    connector: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    batch: Mapping[str, Any] | None = None,
    more: Mapping[str, Mapping[str, Any]] | None = None,
    prompts: Iterable[str] = (),
) -> Path:
    """A folder for ``lexibatch`` commands against an emulator; returns ``path``.

    Its ``lexibatch.toml`` names ``provider`` (with ``connector`` keys such
    as ``model`` or ``mode``) at ``base_url`` (plus its ``options``), with
    quick batch polling (``batch`` overrides it) and any ``more`` tables;
    its ``requests.jsonl`` holds one request per prompt.
    """
    path.mkdir(parents=True, exist_ok=True)
    tables: dict[str, Mapping[str, Any]] = {
        "connector": {"provider": provider, **(connector or {})},
        f"providers.{provider}": {"base_url": base_url, **(options or {})},
        "batch": {"linger": 0.2, "poll_interval": 0.1, "max_poll_interval": 0.2, **(batch or {})},
        **(more or {}),
    }
    write_config(path, tables)
    write_requests(path / "requests.jsonl", prompts)
    return path
