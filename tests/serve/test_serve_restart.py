"""Batch jobs survive a ``kill -9`` of the server: the restarted server finishes them, billed once.

The emulator runs as a process of its own with a state folder (it is the
provider: it outlives the server). The server is a real ``lexibatch serve``
process; it is killed while its first batch is out at the provider.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import free_port, wait_for_job

WORDS = ("anchor", "lantern", "meadow")


class Process:
    """A child process whose first stderr line carries its URL."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        self.url = ""
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            lines.append(line)
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}"
                return
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise AssertionError(f"did not start: {''.join(lines)!r}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Process]:
    config = json.dumps({"batch_seconds": 3.0})
    emu = Process(
        [
            sys.executable,
            "-m",
            "providers.emulator",
            "--port",
            "0",
            "--state",
            str(tmp_path / "emulator-state"),
            "--config",
            config,
        ],
        cwd=tmp_path,
        env=dict(os.environ),
    )
    try:
        yield emu
    finally:
        emu.kill()


def _serve(work: Path) -> Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "OPENAI_API_KEY": "sk-serve-test"})
    return Process(
        [
            sys.executable,
            "-m",
            "synthesis.cli",
            "serve",
            "--port",
            str(free_port()),
            "--components",
            "synonyms,examples,pronunciation",
        ],
        cwd=work,
        env=env,
    )


def _billing(emu: Process) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(emu.url + "/_emulator/billing", timeout=10).json()
    return body


def test_a_killed_server_finishes_its_batch_jobs_after_a_restart_billed_once(
    tmp_path: Path, emulator: Process
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "lexibatch.toml").write_text(
        "[connector]\n"
        'provider = "openai"\n'
        "[providers.openai]\n"
        f'base_url = "{emulator.url}/v1"\n'
        "[batch]\n"
        "linger = 0.3\n"
        "poll_interval = 0.1\n"
        "max_poll_interval = 0.2\n"
    )
    server = _serve(work)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            jobs = {
                word: client.post(f"/lookup/{word}", params={"batch": "true"}).json()["url"]
                for word in WORDS
            }
            # Killed while the first round's batch is out at the provider.
            deadline = time.monotonic() + 30
            while not any(b["batch_id"] for b in client.get("/batches").json()["batches"]):
                assert time.monotonic() < deadline, "no batch was submitted"
                time.sleep(0.05)
            assert {client.get(url).json()["status"] for url in jobs.values()} == {"running"}
    finally:
        server.kill()
    assert _billing(emulator)["batch"]["requests"] == 0, "the batch ended before the kill"

    server = _serve(work)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for word, url in jobs.items():
                report = wait_for_job(client, url, timeout=120)
                assert report["status"] == "done", report
                assert report["entry"]["word"] == word
    finally:
        server.kill()
    billing = _billing(emulator)
    assert billing["immediate"]["requests"] == 0
    assert billing["batch"]["requests"] > 0
    assert billing["duplicates"] == 0
    assert set(billing["by_key"]["batch"].values()) == {1}
