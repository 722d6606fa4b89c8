"""``kill -9`` of a batch run while an immediate run on the same store waits for its batch.

An immediate run does not send a request that a live batch run of another
process holds: it waits for that batch's answer. Here the batch run is
killed while the immediate run waits — once its batch was created at the
provider, and while the create was in flight (the provider made the batch,
the run never heard back). The immediate run must neither send those
requests itself nor hang: it collects the orphaned batch (finding it at the
provider when its creation was never heard back), delivers every answer,
and the emulator bills each request once across both runs and the batch
run's own re-run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.emulated_run import (
    EmulatorProcess,
    paid_calls,
    run_env,
    shard_states,
    work_folder,
)

N = 30
WAITING = "wait for its answers instead of being paid for again"
ADOPTING = "collected here instead of being paid for again"


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    # Batches stay in progress for a while, and each upload and create
    # answers late: the immediate run is waiting well before the kill.
    config = {"batch_seconds": 4.0, "step_latency": 2.5}
    with EmulatorProcess(config, state=tmp_path / "emulator-state") as emu:
        yield emu


def _workdir(tmp_path: Path, emu: EmulatorProcess) -> Path:
    return work_folder(
        tmp_path / "work",
        f"{emu.url}/v1",
        connector={"model": "gpt-4o-mini"},
        batch={"linger": 0.3},
        prompts=(f"cross-mode question {i}" for i in range(N)),
    )


def _start(work: Path, mode: str, out: str, stderr: IO[str] | int) -> subprocess.Popen[str]:
    command = ["run", "requests.jsonl", "--mode", mode, "--out", out]
    return subprocess.Popen(
        [sys.executable, "-m", "synthesis.cli", *command],
        cwd=work,
        env=run_env(OPENAI_API_KEY="sk-crash-test"),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


def _until(what: str, ready: Any, *alive: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in alive:
            assert proc.poll() is None, f"a run ended before {what}"
        if ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not reached in {timeout} s")


def _results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("phase", ["submitting", "created"])
def test_an_immediate_run_collects_the_batch_of_a_killed_batch_run_and_pays_once(
    emulator_process: EmulatorProcess, tmp_path: Path, phase: str
) -> None:
    work = _workdir(tmp_path, emulator_process)
    db = work / ".lexibatch" / "lexibatch.db"
    batches = lambda: emulator_process.call("/v1/batches?limit=100")["data"]  # noqa: E731
    batch_run = _start(work, "batch", "batch.jsonl", subprocess.DEVNULL)
    log_path = tmp_path / "immediate.err"
    # Every request is journaled (submitted, with its sealed shard) before
    # the immediate run looks at it: it waits for the batch run.
    _until("the batch run's shard", lambda: "written" in shard_states(db), batch_run)
    with log_path.open("w") as log:
        immediate = _start(work, "immediate", "now.jsonl", log)
        try:
            _until("the immediate run waiting", lambda: WAITING in log_path.read_text(), immediate)
            if phase == "submitting":
                # The provider made the batch; the run has not heard back yet.
                _until("the batch created", batches, batch_run)
                assert "submitting" in shard_states(db)
            else:
                _until("the batch created", lambda: "created" in shard_states(db), batch_run)
            billing = emulator_process.call("/_emulator/billing")
            assert billing["immediate"]["requests"] == 0
        finally:
            batch_run.send_signal(signal.SIGKILL)
            batch_run.wait(timeout=10)
        emulator_process.call("/_emulator/config", {"step_latency": 0.0})
        try:
            immediate.wait(timeout=120)
        finally:
            if immediate.poll() is None:
                immediate.kill()
    err = log_path.read_text()
    assert immediate.returncode == 0, err
    # Not one request sent immediately: each was answered by the batch, once.
    billing = emulator_process.call("/_emulator/billing")
    assert billing["immediate"]["requests"] == 0, billing
    assert billing["batch"]["requests"] == N
    assert ADOPTING in err and "Traceback" not in err, err
    answers = _results(work / "now.jsonl")
    assert [r["id"] for r in answers] == [str(i) for i in range(N)]
    assert all(r["status"] == "succeeded" and r["mode"] == "batch" for r in answers), answers
    assert len({r["batch_id"] for r in answers}) == 1

    # The batch run's own command, run again, finds every answer stored.
    rerun = _start(work, "batch", "batch.jsonl", subprocess.PIPE)
    _, rerun_err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, rerun_err
    again = _results(work / "batch.jsonl")
    assert all(r["status"] == "succeeded" and r["cached"] for r in again), again

    billing = emulator_process.call("/_emulator/billing")
    assert billing["immediate"]["requests"] == 0, billing
    assert billing["batch"]["requests"] == N
    assert billing["duplicates"] == 0
    assert sorted(billing["by_key"]["batch"].values()) == [1] * N
    # The ledger of the store both runs share agrees with the provider.
    assert paid_calls(db) == N and paid_calls(db, "immediate") == 0
    # One batch, never created a second time.
    assert len(batches()) == 1
