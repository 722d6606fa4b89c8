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
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.emulated_run import (
    EmulatorProcess,
    paid_calls,
    run_env,
    shard_states,
    work_folder,
)

N = 120
PHASES = ["queued", "written", "submitting", "created", "ended"]


@dataclass(frozen=True)
class Wire:
    """How one provider is configured for the run and how its batches are counted."""

    name: str
    base: str
    key_env: str
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)

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
    "gemini": Wire("gemini", "", "GEMINI_API_KEY", "gemini-2.5-flash", {"inline_max_bytes": 0}),
    "mistral": Wire("mistral", "/mistral", "MISTRAL_API_KEY", "mistral-small-latest"),
}


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    config = {"batch_seconds": 2.0, "step_latency": 1.5}
    with EmulatorProcess(config, state=tmp_path / "emulator-state") as emu:
        yield emu


def _workdir(tmp_path: Path, emu: EmulatorProcess, wire: Wire = WIRES["openai"]) -> Path:
    return work_folder(
        tmp_path / "work",
        f"{emu.url}{wire.base}",
        provider=wire.name,
        connector={"model": wire.model, "mode": "batch"},
        options=wire.options,
        batch={"linger": 1.0, "max_requests": 50},
        prompts=(f"crash question {i}" for i in range(N)),
    )


def _start_run(work: Path, wire: Wire = WIRES["openai"]) -> subprocess.Popen[str]:
    # A temporary folder of the test's own: what a killed run leaves there is seen.
    scratch = work.parent / "tmp"
    scratch.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "out.jsonl"],
        cwd=work,
        env=run_env(**{wire.key_env: "sk-crash-test", "TMPDIR": str(scratch)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_phase(run: subprocess.Popen[str], db: Path, phase: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert run.poll() is None, f"run ended before phase {phase}: {run.communicate()}"
        if phase == "queued":
            # The journal is open and requests are being queued: nothing has
            # reached the provider yet (checked by the caller).
            if db.exists():
                return
        elif phase in shard_states(db):
            return
        time.sleep(0.02)
    raise AssertionError(f"phase {phase} not reached: {shard_states(db)}")


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
            assert "submitting" in shard_states(db)
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
    # A results file the killed run was reading went with the rerun's own.
    assert list((work.parent / "tmp").glob("lexibatch-*")) == []

    billing = emulator_process.call("/_emulator/billing")
    assert billing["batch"]["requests"] == N
    assert billing["duplicates"] == 0
    assert all(count == 1 for count in billing["by_key"]["batch"].values())
    assert billing["immediate"]["requests"] == 0
    # The ledger agrees with the provider: no answer was recorded as paid twice.
    assert paid_calls(db) == N
    # No shard was submitted twice: one provider batch per shard of 50.
    if provider == "gemini":
        # Gemini's batches are deleted once collected: counted in the emulator's state.
        assert wire.batches(emulator_process) == []
        assert emulator_process.state is not None
        made = [
            rec
            for path in (emulator_process.state / "batches").glob("*.json")
            if (rec := json.loads(path.read_text())).get("wire") == "gemini"
        ]
        assert len(made) == -(-N // 50) and all(rec.get("deleted") for rec in made)
    else:
        assert len(wire.batches(emulator_process)) == -(-N // 50)


# A run that stores its results in chunks of ten lines and stops for good after
# the first chunk is committed: killed there, its batch is ended with part of
# its results stored and billed.
_STOPS_AFTER_FIRST_CHUNK = """
import time
from plugins.batch import executor, settlement
executor.RESULT_CHUNK = 10
finish_items = settlement.Settlement.finish_items
def finish_then_stop(self, *args):
    finish_items(self, *args)
    time.sleep(120)
settlement.Settlement.finish_items = finish_then_stop
from synthesis.cli import program
program()
"""


def _stored_any(db: Path) -> bool:
    try:
        return db.exists() and paid_calls(db) > 0
    except sqlite3.OperationalError:
        return False  # not migrated yet, or busy: look again


def test_kill9_with_results_partly_stored_then_rerun_records_each_once(
    emulator_process: EmulatorProcess, tmp_path: Path
) -> None:
    emulator_process.call("/_emulator/config", {"step_latency": 0.0})
    n = 30
    work = work_folder(
        tmp_path / "work",
        f"{emulator_process.url}/v1",
        connector={"model": "gpt-4o-mini", "mode": "batch"},
        batch={"linger": 0.2},
        prompts=(f"partly stored {i}" for i in range(n)),
    )
    db = work / ".lexibatch" / "lexibatch.db"
    args = ["run", "requests.jsonl", "--out", "out.jsonl"]
    run = subprocess.Popen(
        [sys.executable, "-c", _STOPS_AFTER_FIRST_CHUNK, *args],
        cwd=work,
        env=run_env(OPENAI_API_KEY="sk-crash-test"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _stored_any(db):
            assert run.poll() is None, f"run ended early: {run.communicate()}"
            assert time.monotonic() < deadline, f"no result stored: {shard_states(db)}"
            time.sleep(0.05)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    assert shard_states(db) == ["ended"] and paid_calls(db) == 10

    rerun = subprocess.run(
        [sys.executable, "-m", "synthesis.cli", *args],
        cwd=work,
        env=run_env(OPENAI_API_KEY="sk-crash-test"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    results = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    assert sorted(int(r["id"]) for r in results) == list(range(n))
    assert all(r["status"] == "succeeded" for r in results)
    billing = emulator_process.call("/_emulator/billing")
    assert billing["batch"]["requests"] == n and billing["duplicates"] == 0
    # The lines stored before the kill are read again, not recorded as paid again.
    assert paid_calls(db) == n
