"""``kill -9`` of a real ``lexibatch run`` while a shard waits for room in the provider's queue.

The emulator (a separate process with ``--state``) gets an enqueued-token
limit that two of the run's shards fit under, three not; the run is killed
once a batch was refused for it and the shard was journaled back to wait.
The same command then completes, every request billed once.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulated_run import EmulatorProcess, paid_calls, run_env, work_folder

N = 40
SHARD = 10
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    # Batches stay in progress for a while; each create answers a little late,
    # so the limit is set between the first create and the third.
    config = {"batch_seconds": 3.0, "step_latency": 0.4}
    with EmulatorProcess(config, state=tmp_path / "emulator-state") as emu:
        yield emu


def _workdir(tmp_path: Path, emu: EmulatorProcess, provider: str) -> Path:
    return work_folder(
        tmp_path / "work",
        emu.url if provider == "anthropic" else f"{emu.url}/v1",
        provider=provider,
        connector={"model": MODELS[provider], "mode": "batch"},
        batch={"linger": 0.5, "max_requests": SHARD},
        # A 429 at create is tried again first; soon given up on, the shard waits for room.
        more={"retry": {"backoff_initial": 0.05, "backoff_max": 0.2}},
        prompts=(f"queue question {i:03d}" for i in range(N)),
    )


def _start_run(work: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "out.jsonl"],
        cwd=work,
        env=run_env(OPENAI_API_KEY="sk-crash-test", ANTHROPIC_API_KEY="sk-ant-crash-test"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _batches(emu: EmulatorProcess) -> list[dict[str, object]]:
    folder = emu.state / "batches"
    found = []
    for doc in folder.glob("*.json") if folder.exists() else []:
        try:
            found.append(json.loads(doc.read_text()))
        except (OSError, ValueError):
            continue  # being written
    return found


def _first_batch_tokens(emu: EmulatorProcess) -> int:
    """The enqueued tokens of the first batch the emulator took, as it counts them."""
    batch_id = str(_batches(emu)[0]["id"])
    counted = emu.call(f"/_emulator/batches/{batch_id}/tokens")
    assert counted["id"] == batch_id
    return int(next(iter(counted["tokens"].values())))


def _shards(db: Path) -> list[tuple[str, str | None]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return list(conn.execute("SELECT state, batch_id FROM shards"))
    except sqlite3.OperationalError:
        return []


def _rerun_answers_all_billed_once(work: Path, emu: EmulatorProcess, *, timeout: float) -> Any:
    """Run the same command again: every request answered, each billed once in batch.

    Returns the emulator's billing, for the caller's own checks.
    """
    rerun = _start_run(work)
    _, err = rerun.communicate(timeout=timeout)
    assert rerun.returncode == 0, err
    results = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    assert sorted(int(r["id"]) for r in results) == list(range(N))
    assert all(r["status"] == "succeeded" for r in results)
    billing = emu.call("/_emulator/billing")
    assert billing["batch"]["requests"] == N
    assert billing["duplicates"] == 0
    assert all(count == 1 for count in billing["by_key"]["batch"].values())
    assert billing["immediate"]["requests"] == 0
    # The ledger agrees with the provider: no answer was recorded as paid twice.
    assert paid_calls(work / ".lexibatch" / "lexibatch.db") == N
    return billing


def _until(run: subprocess.Popen[str], what: str, ready: object) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert run.poll() is None, f"run ended before {what}: {run.communicate()}"
        if ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not reached")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_kill9_while_a_shard_waits_for_queue_room_then_rerun_pays_once(
    emulator_process: EmulatorProcess, tmp_path: Path, provider: str
) -> None:
    emu = emulator_process
    work = _workdir(tmp_path, emu, provider)
    db = work / ".lexibatch" / "lexibatch.db"
    run = _start_run(work)
    try:
        _until(run, "a first batch", lambda: _batches(emu))
        tokens = _first_batch_tokens(emu)
        # Two shards of similar size fit, three do not.
        emu.call("/_emulator/config", {"enqueued_token_limit": 2 * tokens + tokens // 2})

        def waiting() -> bool:
            if emu.call("/_emulator/billing")["queue_refusals"] < 1:
                return False
            refused = {str(b["id"]) for b in _batches(emu) if b.get("refused")}
            shards = _shards(db)
            # Journaled back to before create: no shard names a refused batch.
            return any(state == "uploaded" for state, _ in shards) and not any(
                batch_id in refused for _, batch_id in shards
            )

        _until(run, "a shard waiting for room", waiting)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    assert not (work / "out.jsonl").exists()
    emu.call("/_emulator/config", {"step_latency": 0.0})

    # The limit still holds: the re-run counts the batches still in flight and waits again.
    _rerun_answers_all_billed_once(work, emu, timeout=120)
    ran = [b for b in _batches(emu) if not b.get("refused")]
    assert len(ran) == N // SHARD  # one batch that ran per shard
