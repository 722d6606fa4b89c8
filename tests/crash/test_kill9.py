"""``kill -9`` of a real ``lexibatch run`` at each lifecycle phase, then the same command again.

The emulator runs as a separate process with ``--state``; its ``step_latency``
holds every side effect (upload, batch creation, results download) open for a
moment after it happened, so the run can be killed exactly in the window
where the provider has acted and the client has not heard back. After the
re-run, every result is present and the emulator billed each request once.

It runs for OpenAI, for Gemini (every shard through an uploaded file) and
for Mistral: neither Gemini's nor Mistral's create is idempotent, so a kill
while a batch is being created is survived only by finding it again (by its
display name, by its metadata) instead of creating and paying for it twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

N = 120
PHASES = ["queued", "written", "submitting", "created", "ended"]


@dataclass(frozen=True)
class Wire:
    """How one provider is configured for the run and how its batches are counted."""

    name: str
    base: str
    key_env: str
    model: str
    extra: str = ""

    def batches(self, emu: EmulatorProcess) -> list[Any]:
        """Every batch the emulator holds for this provider."""
        if self.name == "gemini":
            batches = emu.call("/v1beta/batches?pageSize=100", google=True)
            return list(batches.get("operations") or [])
        if self.name == "mistral":
            return list(emu.call("/mistral/v1/batch/jobs?page_size=100")["data"])
        return list(emu.call("/v1/batches?limit=100")["data"])


WIRES = {
    "openai": Wire("openai", "/v1", "OPENAI_API_KEY", "gpt-4o-mini"),
    "gemini": Wire("gemini", "", "GEMINI_API_KEY", "gemini-2.5-flash", "inline_max_bytes = 0\n"),
    "mistral": Wire("mistral", "/mistral", "MISTRAL_API_KEY", "mistral-small-latest"),
}


class EmulatorProcess:
    """``python -m providers.emulator`` with a state folder, restartable on the same port."""

    def __init__(self, state: Path, config: dict[str, Any]) -> None:
        self.state = state
        self.config = config
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "providers.emulator",
                "--port",
                str(self.port),
                "--state",
                str(self.state),
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, path: str, body: dict[str, Any] | None = None, *, google: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", "Bearer sk-crash-test")
        if google:
            req.add_header("x-goog-api-key", "sk-crash-test")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(tmp_path / "emulator-state", {"batch_seconds": 2.0, "step_latency": 1.5})
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def _workdir(tmp_path: Path, emu: EmulatorProcess, wire: Wire = WIRES["openai"]) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "lexibatch.toml").write_text(
        "[connector]\n"
        f'provider = "{wire.name}"\n'
        f'model = "{wire.model}"\n'
        'mode = "batch"\n'
        f"[providers.{wire.name}]\n"
        f'base_url = "{emu.url}{wire.base}"\n'
        f"{wire.extra}"
        "[batch]\n"
        "linger = 1.0\n"
        "poll_interval = 0.1\n"
        "max_poll_interval = 0.2\n"
        "max_requests = 50\n"
    )
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    lines = [
        json.dumps({"id": str(i), "prompt": f"crash question {i}", "schema": schema})
        for i in range(N)
    ]
    (work / "requests.jsonl").write_text("\n".join(lines) + "\n")
    return work


def _start_run(work: Path, wire: Wire = WIRES["openai"]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", wire.key_env: "sk-crash-test"})
    return subprocess.Popen(
        [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "out.jsonl"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _shard_states(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return [row[0] for row in conn.execute("SELECT state FROM shards")]
    except sqlite3.OperationalError:
        return []


def _wait_for_phase(run: subprocess.Popen[str], db: Path, phase: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert run.poll() is None, f"run ended before phase {phase}: {run.communicate()}"
        if phase == "queued":
            # The journal is open and requests are being queued: nothing has
            # reached the provider yet (checked by the caller).
            if db.exists():
                return
        elif phase in _shard_states(db):
            return
        time.sleep(0.02)
    raise AssertionError(f"phase {phase} not reached: {_shard_states(db)}")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("provider", list(WIRES))
def test_kill9_at_each_phase_then_rerun_pays_once(
    emulator_process: EmulatorProcess, tmp_path: Path, phase: str, provider: str
) -> None:
    wire = WIRES[provider]
    work = _workdir(tmp_path, emulator_process, wire)
    db = work / ".lexibatch" / "lexibatch.db"
    run = _start_run(work, wire)
    try:
        _wait_for_phase(run, db, phase)
        if phase == "submitting":
            # Killed once the provider has made the batch, before the run hears back
            # (step_latency holds the answer): only find() can spare a second one.
            deadline = time.monotonic() + 10
            while not wire.batches(emulator_process) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert wire.batches(emulator_process), "the batch was never created"
            assert "submitting" in _shard_states(db)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    assert not (work / "out.jsonl").exists()
    if phase == "queued":
        assert wire.batches(emulator_process) == []

    if phase == "created":
        # The provider side restarts too: batches and files survive in --state.
        emulator_process.stop()
        emulator_process.start()
    emulator_process.call("/_emulator/config", {"step_latency": 0.0})

    rerun = _start_run(work, wire)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    results = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [str(i) for i in range(N)]
    assert all(r["status"] == "succeeded" for r in results)

    billing = emulator_process.call("/_emulator/billing")
    assert billing["batch"]["requests"] == N
    assert billing["duplicates"] == 0
    assert all(count == 1 for count in billing["by_key"]["batch"].values())
    assert billing["immediate"]["requests"] == 0
    # No shard was submitted twice: one provider batch per shard of 50.
    assert len(wire.batches(emulator_process)) == -(-N // 50)
