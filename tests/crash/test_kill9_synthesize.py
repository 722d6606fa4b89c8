"""``kill -9`` of a real ``lexibatch synthesize`` in batch mode, three times, then the same command.

The main job is a word list through the dictionary pipeline: each word takes
several rounds of calls (cluster, synthesize, enhance), the calls of many
words sharing each round's batches. The run is killed three times, each
time while one of its batches is out at the provider and after more of them
were collected than at the previous kill, so the kills land in different
rounds of the pipeline. After each kill the same command starts again; the
last run is left to finish.

At the end every word has exactly one entry, and the emulator (a separate
process, the billing truth) billed every request once: what a killed run
had paid for was collected and used by the next one, never asked again.
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

import pytest

from tests.support.emulated_run import EmulatorProcess, run_env, shard_states, write_config

WORDS = ["apple", "run", "house", "light", "water", "book", "happy", "bright", "time", "quickly"]
# Collected shards the run must have before each kill (counted over all runs so far).
KILL_AFTER_COLLECTED = (1, 4, 8)


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    # Each batch stays in progress a moment, and each side effect answers a
    # little late: a run is found with a batch out at the provider.
    config = {"batch_seconds": 0.6, "step_latency": 0.1}
    with EmulatorProcess(config, state=tmp_path / "emulator-state") as emu:
        yield emu


def _workdir(tmp_path: Path, emu: EmulatorProcess) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    write_config(
        work,
        {
            "connector": {"provider": "openai", "model": "gpt-4o-mini", "mode": "batch"},
            "providers.openai": {"base_url": f"{emu.url}/v1"},
            # Small shards: each pipeline round is several batches.
            "batch": {
                "linger": 0.3,
                "poll_interval": 0.1,
                "max_poll_interval": 0.2,
                "max_requests": 15,
            },
        },
    )
    (work / "words.txt").write_text("\n".join(WORDS) + "\n")
    return work


def _start(work: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "synthesis.cli", "synthesize", "words.txt",
         "--mode", "batch", "--out", "entries.jsonl"],
        cwd=work,
        env=run_env(OPENAI_API_KEY="sk-crash-test"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _kill_mid_batch(run: subprocess.Popen[str], db: Path, collected: int) -> None:
    """Kill ``run`` once ``collected`` shards were collected and another one is at the provider."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the run ended before the kill: {run.communicate()}"
        states = shard_states(db)
        if states.count("collected") >= collected and {"submitting", "created"} & set(states):
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=10)
            return
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    raise AssertionError(f"never {collected} shards collected with one out: {shard_states(db)}")


def test_synthesize_killed_three_times_in_different_rounds_then_rerun_pays_once(
    emulator_process: EmulatorProcess, tmp_path: Path
) -> None:
    work = _workdir(tmp_path, emulator_process)
    db = work / ".lexibatch" / "lexibatch.db"
    tasks_at_kill = []
    for collected in KILL_AFTER_COLLECTED:
        _kill_mid_batch(_start(work), db, collected)
        with sqlite3.connect(db) as conn:
            tasks_at_kill.append({row[0] for row in conn.execute("SELECT task FROM requests")})
    # The first kill came in the first rounds (no enhancement asked yet), the
    # last one once enhancements were journaled: the kills spanned the pipeline.
    assert "cluster" in tasks_at_kill[0] and "synonyms" not in tasks_at_kill[0]
    assert {"synthesize", "synonyms"} <= tasks_at_kill[-1]

    rerun = _start(work)
    _, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err
    assert "Traceback" not in err

    entries = [json.loads(line) for line in (work / "entries.jsonl").read_text().splitlines()]
    # One entry a word, in the list's order, each with its definitions.
    assert [e["word"] for e in entries] == WORDS
    assert all(e["definitions"] for e in entries)

    billing = emulator_process.billing()
    assert billing["duplicates"] == 0
    assert billing["batch"]["requests"] > 0
    assert all(count == 1 for count in billing["by_key"]["batch"].values())
    assert billing["immediate"]["requests"] == 0
    # Every call the entries needed was paid for once: the ledger agrees with the provider.
    with sqlite3.connect(db) as conn:
        (calls,) = conn.execute("SELECT COUNT(*) FROM calls WHERE mode = 'batch'").fetchone()
    assert calls == billing["batch"]["requests"]
