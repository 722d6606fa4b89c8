"""``kill -9`` of a run whose batches the provider refuses as too large, then the same command.

The emulator takes at most 30 requests a batch, so the run's shards of 50
are refused and sent again as halves of 25. The run is killed once the halves
are journaled, or once one of them is created at the provider; the re-run
pays for each request once.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash.test_kill9 import N, _start_run, _workdir
from tests.support.emulated_run import EmulatorProcess, paid_calls


def _shards(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return list(conn.execute("SELECT state, requests FROM shards"))
    except sqlite3.OperationalError:
        return []


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    config = {"batch_seconds": 2.0, "step_latency": 1.0, "openai_max_requests": 30}
    with EmulatorProcess(config, state=tmp_path / "emulator-state") as emu:
        yield emu


@pytest.mark.parametrize("phase", ["halves-written", "half-created"])
def test_kill9_after_a_split_then_rerun_pays_once(
    emulator_process: EmulatorProcess, tmp_path: Path, phase: str
) -> None:
    work = _workdir(tmp_path, emulator_process)
    db = work / ".lexibatch" / "lexibatch.db"
    run = _start_run(work)
    wanted = ("written",) if phase == "halves-written" else ("created",)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert run.poll() is None, run.communicate()
            if any(requests == 25 and state in wanted for state, requests in _shards(db)):
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"{phase} not reached: {_shards(db)}")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    emulator_process.call("/_emulator/config", {"step_latency": 0.0})

    rerun = _start_run(work)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    results = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [str(i) for i in range(N)]
    assert all(r["status"] == "succeeded" and r["mode"] == "batch" for r in results)
    billing = emulator_process.call("/_emulator/billing")
    assert billing["batch"]["requests"] == N
    assert billing["duplicates"] == 0
    assert all(count == 1 for count in billing["by_key"]["batch"].values())
    assert billing["immediate"]["requests"] == 0
    assert paid_calls(db) == N  # the ledger agrees with the provider
    # Every batch the provider ran held at most what it takes.
    batches = emulator_process.call("/v1/batches?limit=100")["data"]
    ran = [b for b in batches if b["status"] == "completed"]
    assert all(b["request_counts"]["total"] <= 30 for b in ran)
    assert sum(b["request_counts"]["total"] for b in ran) == N
