"""``kill -9`` of a real ``lexibatch run`` while shards too big for the provider's queue are split.

The emulator (a separate process with ``--state``) gets an enqueued-token
limit one request fits under and no shard of the run does; no cap is
configured, so only the provider's refusals tell. The run is killed once a
shard was given up for a split; the same command then completes, every
request billed once, in batches smaller than the shards first sealed.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.crash.test_kill9_queue_cap import (
    SHARD,
    N,
    _batches,
    _first_batch_tokens,
    _rerun_answers_all_billed_once,
    _shards,
    _start_run,
    _until,
    _workdir,
    emulator_process,
)
from tests.support.emulated_run import EmulatorProcess

__all__ = ["emulator_process"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_kill9_while_shards_are_split_for_the_queue_then_rerun_pays_once(
    emulator_process: EmulatorProcess, tmp_path: Path, provider: str
) -> None:
    emu = emulator_process
    work = _workdir(tmp_path, emu, provider)
    db = work / ".lexibatch" / "lexibatch.db"
    run = _start_run(work)
    try:
        _until(run, "a first batch", lambda: _batches(emu))
        tokens = _first_batch_tokens(emu)
        # One request of a shard fits; two never do.
        one = tokens // SHARD
        emu.call("/_emulator/config", {"enqueued_token_limit": one + one // 2})
        _until(run, "a shard split", lambda: any(s == "failed" for s, _ in _shards(db)))
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    assert not (work / "out.jsonl").exists()
    # Single-request batches go one at a time: quick ones keep the test short.
    emu.call("/_emulator/config", {"step_latency": 0.0, "batch_seconds": 0.2})

    billing = _rerun_answers_all_billed_once(work, emu, timeout=180)
    assert billing["queue_refusals"] >= 1
    # Each request ran once, and batches smaller than the shards first sealed did run.
    ran = [int(str(b["n"])) for b in _batches(emu) if not b.get("refused")]
    assert sum(ran) == N and min(ran) < SHARD
