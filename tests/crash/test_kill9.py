"""``kill -9`` of a real ``lexibatch run`` at each lifecycle phase, then the same command again.

The emulator runs as a separate process with ``--state``; its ``step_latency``
holds every side effect (upload, batch creation, results download) open for a
moment after it happened, so the run can be killed exactly in the window
where the provider has acted and the client has not heard back. After the
re-run, every result is present and the emulator billed each request once.
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
from pathlib import Path
from typing import Any

import pytest

N = 120
PHASES = ["queued", "written", "submitting", "created", "ended"]


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

    def call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", "Bearer sk-crash-test")
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


def _workdir(tmp_path: Path, emu: EmulatorProcess) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "lexibatch.toml").write_text(
        "[connector]\n"
        'provider = "openai"\n'
        'mode = "batch"\n'
        "[providers.openai]\n"
        f'base_url = "{emu.url}/v1"\n'
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


def _start_run(work: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "OPENAI_API_KEY": "sk-crash-test"})
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
def test_kill9_at_each_phase_then_rerun_pays_once(
    emulator_process: EmulatorProcess, tmp_path: Path, phase: str
) -> None:
    work = _workdir(tmp_path, emulator_process)
    db = work / ".lexibatch" / "lexibatch.db"
    run = _start_run(work)
    try:
        _wait_for_phase(run, db, phase)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    assert not (work / "out.jsonl").exists()
    if phase == "queued":
        assert emulator_process.call("/v1/batches")["data"] == []

    if phase == "created":
        # The provider side restarts too: batches and files survive in --state.
        emulator_process.stop()
        emulator_process.start()
    emulator_process.call("/_emulator/config", {"step_latency": 0.0})

    rerun = _start_run(work)
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
    batches = emulator_process.call("/v1/batches?limit=100")["data"]
    assert len(batches) == -(-N // 50)
