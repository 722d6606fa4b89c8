"""Stopping ``lexibatch serve``: the calls already sent land and are stored, nothing new goes.

A lookup makes several rounds of calls. On the first Ctrl-C (or SIGTERM) the
server takes no new connection and sends no new call — a lookup that needs
one fails at once (503) — and ends once the calls already sent have landed,
their answers stored (the emulator bills every answer it made, read or not:
``bill_abandoned``). A second Ctrl-C stops at once and says what it gave up.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.emulator import Emulator, EmulatorConfig
from tests.serve.serve_helpers import free_port

WORDS = ["lantern", "kettle", "harbour", "walnut", "meadow", "pebble"]


def _serve(work: Path, emu: Any, *extra: str) -> tuple[subprocess.Popen[str], str]:
    (work / "lexibatch.toml").write_text(
        f'[connector]\nprovider = "openai"\n[providers.openai]\nbase_url = "{emu.base_url}/v1"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "OPENAI_API_KEY": "sk-serve-stop-test"})
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "synthesis.cli", "serve", "--port", str(port), *extra],
        cwd=work,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal's Ctrl-C finds it, even when the tests run in a background job.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert server.stderr is not None
    while "serving http://" not in (line := server.stderr.readline()):
        assert line, "the server ended before it served"
    return server, f"http://127.0.0.1:{port}"


def _look_up(url: str, answers: list[int]) -> list[threading.Thread]:
    def one(word: str) -> None:
        try:
            answers.append(httpx.post(f"{url}/lookup/{word}", timeout=120).status_code)
        except httpx.TransportError:
            answers.append(0)

    threads = [threading.Thread(target=one, args=(w,)) for w in WORDS]
    for thread in threads:
        thread.start()
    return threads


def _ledger(work: Path) -> int:
    with sqlite3.connect(work / ".lexibatch" / "lexibatch.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


def _stop(emu: Any, server: subprocess.Popen[str], sig: signal.Signals, times: int) -> str:
    deadline = time.monotonic() + 60
    while emu.app.limiter.admitted < len(WORDS):  # every lookup has a call out
        assert server.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(times):
        server.send_signal(sig)
        time.sleep(0.3)
    _, stderr = server.communicate(timeout=60)
    return stderr


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_lands_the_calls_sent_stores_their_answers_and_sends_nothing_new(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    answers: list[int] = []
    with Emulator(EmulatorConfig(latency=1.5, bill_abandoned=True)) as emu:
        server, url = _serve(tmp_path, emu)
        try:
            threads = _look_up(url, answers)
            stderr = _stop(emu, server, sig, times=1)
        finally:
            if server.poll() is None:
                server.kill()
        for thread in threads:
            thread.join(timeout=30)
        sent = emu.app.limiter.admitted
        billed = emu.billing()["immediate"]["requests"]
    assert server.returncode == status, stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
    found = re.search(r"lexibatch: stopping — waiting for the (\d+) calls already sent", stderr)
    assert found is not None, stderr
    last = stderr.strip().splitlines()[-1]
    word = "interrupted" if sig is signal.SIGINT else "stopped"
    assert last == (
        f"lexibatch: {word} — every answer paid for is stored; batch lookups under way "
        "resume when the server starts again"
    )
    # Every call sent was answered, billed and stored, and none went out after the
    # stop: no call lands before it (1.5 s each), so all were in flight then, and the
    # lookups' later rounds were never sent.
    assert billed == sent == _ledger(tmp_path) == int(found.group(1))
    assert sorted(set(answers)) == [503], answers


def test_a_second_ctrl_c_stops_at_once_and_says_what_it_gave_up(tmp_path: Path) -> None:
    answers: list[int] = []
    with Emulator(EmulatorConfig(latency=4.0)) as emu:
        server, url = _serve(tmp_path, emu)
        started = time.monotonic()
        try:
            threads = _look_up(url, answers)
            stderr = _stop(emu, server, signal.SIGINT, times=2)
        finally:
            if server.poll() is None:
                server.kill()
        stopped = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=30)
    assert server.returncode == 130, stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
    found = re.search(r"lexibatch: stopping — waiting for the (\d+) calls already sent", stderr)
    assert found is not None, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"lexibatch: interrupted again — {found.group(1)} calls already sent")
    assert "not stored" in last and int(found.group(1)) >= len(WORDS)
    assert stopped < 4.0  # did not wait for the calls to land


@pytest.mark.parametrize(
    ("token", "said"),
    [
        ("", "is empty — give a token, or unset it to serve without one"),
        ("   ", "is empty — give a token, or unset it to serve without one"),
        (" s3cret ", "must be printable ASCII without spaces"),
        ("sécret", "must be printable ASCII without spaces"),
    ],
)
def test_a_token_no_client_could_send_or_an_empty_one_is_refused(
    tmp_path: Path, token: str, said: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "LEXIBATCH_SERVE_TOKEN": token})
    done = subprocess.run(
        [sys.executable, "-m", "synthesis.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("lexibatch: error: the serve token (--token or LEXIBATCH_SERVE_TOKEN)")
    assert said in line
