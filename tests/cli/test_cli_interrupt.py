"""Ctrl-C during an immediate run: the calls already sent land and are stored, nothing new goes.

A provider bills an answer it made whether or not the client reads it (the
emulator does too: ``bill_abandoned``). So the first Ctrl-C lets the calls
in flight finish and stores their answers, and the run that follows pays
only for the rest; a second Ctrl-C stops at once and says what it gave up.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from providers.emulator import Emulator, EmulatorConfig

PROMPTS = 12
IN_FLIGHT = 4
INTERRUPTED = (
    "lexibatch: interrupted — everything paid for is stored; run the same command again to continue"
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "OPENAI_API_KEY": "sk-interrupt-test"})
    return env


def _sigint_default() -> None:
    # As a terminal's Ctrl-C finds it, even when the tests run in a background job
    # (or under nohup, for SIGHUP).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _setup(work: Path, emu: Any) -> list[str]:
    (work / "lexibatch.toml").write_text(
        '[connector]\nprovider = "openai"\n'
        f'[providers.openai]\nbase_url = "{emu.base_url}/v1"\nmax_concurrency = {IN_FLIGHT}\n'
    )
    lines = [json.dumps({"id": str(i), "prompt": f"interrupted {i}"}) for i in range(PROMPTS)]
    (work / "requests.jsonl").write_text("\n".join(lines) + "\n")
    return [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "out.jsonl"]


def _interrupt(
    work: Path, emu: Any, command: list[str], signals: int, sig: int = signal.SIGINT
) -> tuple[int, str]:
    """Start ``command``; send ``sig`` ``signals`` times once its first calls are out."""
    run = subprocess.Popen(
        command,
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_default,
    )
    try:
        deadline = time.monotonic() + 60
        # Sent, not answered yet (each answer takes the emulator's latency).
        while emu.app.limiter.admitted < IN_FLIGHT:
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.01)
        for _ in range(signals):
            run.send_signal(sig)
            time.sleep(0.2)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    return run.returncode, stderr


def _ledger(work: Path) -> int:
    with sqlite3.connect(work / ".lexibatch" / "lexibatch.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


@pytest.mark.parametrize(
    ("sig", "status", "last"),
    [
        (signal.SIGINT, 130, INTERRUPTED),
        # What timeout, docker stop, systemd and job schedulers send: stopped as Ctrl-C stops.
        (signal.SIGTERM, 143, INTERRUPTED.replace("interrupted", "stopped by SIGTERM")),
        # The terminal closed.
        (signal.SIGHUP, 129, INTERRUPTED.replace("interrupted", "stopped by SIGHUP")),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_the_calls_in_flight_land_and_are_stored_and_the_rerun_pays_for_the_rest(
    tmp_path: Path, sig: int, status: int, last: str
) -> None:
    with Emulator(EmulatorConfig(latency=1.5)) as emu:
        command = _setup(tmp_path, emu)
        ended, stderr = _interrupt(tmp_path, emu, command, signals=1, sig=sig)
        assert ended == status, stderr
        assert "Traceback" not in stderr
        assert f"waiting for the {IN_FLIGHT} calls already sent" in stderr, stderr
        assert stderr.splitlines()[-1] == last
        billed = emu.billing()["immediate"]["requests"]
        # Every call the provider answered (and billed) is in the ledger, its answer stored.
        assert billed == IN_FLIGHT and _ledger(tmp_path) == IN_FLIGHT
        assert not (tmp_path / "out.jsonl").exists()
        again = subprocess.run(
            command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
        assert f"{IN_FLIGHT} from cache" in again.stderr, again.stderr
        billing = emu.billing()
    assert billing["immediate"]["requests"] == PROMPTS and billing["duplicates"] == 0


def test_an_interrupted_run_says_the_results_file_there_is_an_earlier_runs(
    tmp_path: Path,
) -> None:
    with Emulator(EmulatorConfig(latency=1.5)) as emu:
        command = _setup(tmp_path, emu)
        (tmp_path / "out.jsonl").write_text('{"id": "from an earlier run"}\n')
        ended, stderr = _interrupt(tmp_path, emu, command, signals=1)
    assert ended == 130, stderr
    assert stderr.splitlines()[-1] == (
        "lexibatch: interrupted — everything paid for is stored; out.jsonl still holds an "
        "earlier run's results; run the same command again to continue"
    )
    # Left as it was: the new results go to a temporary file renamed over it at the end.
    assert (tmp_path / "out.jsonl").read_text() == '{"id": "from an earlier run"}\n'


def test_a_second_sigterm_stops_at_once_and_says_what_it_gave_up(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(latency=3.0)) as emu:
        command = _setup(tmp_path, emu)
        status, stderr = _interrupt(tmp_path, emu, command, signals=2, sig=signal.SIGTERM)
    assert status == 143, stderr
    assert "Traceback" not in stderr
    assert "(SIGTERM again to stop now" in stderr, stderr
    last = stderr.splitlines()[-1]
    assert last.startswith(
        f"lexibatch: stopped by SIGTERM again — {IN_FLIGHT} calls already sent were given up"
    ), last


def test_a_second_ctrl_c_stops_at_once_and_says_what_it_gave_up(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(latency=3.0)) as emu:
        command = _setup(tmp_path, emu)
        started = time.monotonic()
        status, stderr = _interrupt(tmp_path, emu, command, signals=2)
        stopped = time.monotonic() - started
    assert status == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.splitlines()[-1]
    assert last.startswith(f"lexibatch: interrupted again — {IN_FLIGHT} calls already sent were")
    assert "not stored" in last and "run the same command again" in last
    assert stopped < 3.0 + 10  # did not wait for the calls (3 s each) to land


@pytest.mark.parametrize("after", [0.15, 0.3, 0.6])
def test_ctrl_c_while_the_program_starts_is_one_line_and_exit_130(
    tmp_path: Path, after: float
) -> None:
    # The console script, as a user starts it: Ctrl-C may land while it imports
    # (not in the interpreter's own first milliseconds, before any of ours runs).
    script = Path(sys.executable).with_name("lexibatch")
    lines = [json.dumps({"id": str(i), "prompt": f"early {i}"}) for i in range(3000)]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEXIBATCH_")}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    run = subprocess.Popen(
        [str(script), "run", "requests.jsonl", "--out", "out.jsonl"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_default,
    )
    time.sleep(after)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr and "Panic" not in stderr, stderr
    assert stderr.splitlines()[-1].startswith("lexibatch: interrupted"), stderr


def test_a_sent_call_that_needs_a_retry_during_the_wait_does_not_hold_the_stop(
    tmp_path: Path,
) -> None:
    # Every call fails with a 500: the call in flight when Ctrl-C comes would
    # be retried, in the one concurrency slot, which unsent calls also want.
    with Emulator(EmulatorConfig(latency=1.0, server_error=1.0)) as emu:
        (tmp_path / "lexibatch.toml").write_text(
            '[connector]\nprovider = "openai"\n'
            f'[providers.openai]\nbase_url = "{emu.base_url}/v1"\nmax_concurrency = 1\n'
            "[retry]\nbackoff_initial = 0.1\nbackoff_max = 0.2\n"
        )
        lines = [json.dumps({"id": str(i), "prompt": f"failing {i}"}) for i in range(3)]
        (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
        run = subprocess.Popen(
            [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "o.jsonl"],
            cwd=tmp_path,
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_sigint_default,
        )
        try:
            deadline = time.monotonic() + 60
            while emu.app.limiter.admitted < 1:
                assert run.poll() is None and time.monotonic() < deadline, run.communicate()
                time.sleep(0.01)
            run.send_signal(signal.SIGINT)
            _, stderr = run.communicate(timeout=20)  # not held by the retry
        finally:
            if run.poll() is None:
                run.kill()
        admitted = emu.app.limiter.admitted
    assert run.returncode == 130, stderr
    assert "waiting for the 1 calls already sent" in stderr, stderr
    assert stderr.splitlines()[-1] == INTERRUPTED
    assert admitted == 1  # the retry was never sent
