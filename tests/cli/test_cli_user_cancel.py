"""A user's cancel is final: a live run, a re-run and `resume` never pay again for it.

Every process is real: the emulator runs in a process of its own (its billing
is the truth), `lexibatch run` in another, and `lexibatch batches cancel` in a
third, so the run can learn of the cancel only through the store.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from tests.cli.cli_helpers import EmulatorProcess, command, env, lexibatch, results, workdir

N = 8


def _batch_id(db: Path, timeout: float = 60.0) -> str:
    """The id of the first batch the run created, once it is journaled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    row = conn.execute(
                        "SELECT batch_id FROM shards WHERE batch_id IS NOT NULL"
                    ).fetchone()
            except sqlite3.OperationalError:
                row = None
            if row is not None:
                return str(row[0])
        time.sleep(0.1)
    raise AssertionError("the run created no batch in time")


def _statuses(path: Path) -> dict[str, str]:
    return {
        r["id"]: (r["status"] if r["status"] == "succeeded" else r["error"]["code"])
        for r in results(path)
    }


def _run_and_cancel_its_batch(work: Path) -> tuple[str, int, str]:
    """A batch ``lexibatch run`` whose batch another process cancels: (batch id, exit, stderr)."""
    run = subprocess.Popen(
        command("run", "requests.jsonl", "--mode", "batch", "--out", "out.jsonl"),
        cwd=work,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        batch_id = _batch_id(work / ".lexibatch" / "lexibatch.db")
        cancelled = lexibatch("batches", "cancel", batch_id, cwd=work)
        assert cancelled.returncode == 0, cancelled.stderr
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    return batch_id, run.returncode, stderr


def test_a_cancel_from_another_process_is_final_until_retry_cancelled(tmp_path: Path) -> None:
    with EmulatorProcess({"batch_seconds": 20.0}) as emu:
        work = workdir(tmp_path / "work", emu.url + "/v1", N)
        batch_id, returncode, stderr = _run_and_cancel_its_batch(work)
        # The live run ended the unanswered requests as cancelled, sent nothing again.
        assert returncode == 1, stderr
        assert "Traceback" not in stderr
        assert f"batch {batch_id} was cancelled by the user" in stderr
        first = _statuses(work / "out.jsonl")
        assert len(first) == N
        answered = [k for k, v in first.items() if v == "succeeded"]
        assert all(v in ("succeeded", "cancelled_by_user") for v in first.values())
        assert len(answered) < N
        billing = emu.billing()
        assert billing["batch"]["requests"] == len(answered)
        assert billing["immediate"]["requests"] == 0

        # Run again, and resume: still cancelled, nothing more is paid.
        again = lexibatch(
            "run", "requests.jsonl", "--mode", "batch", "--out", "again.jsonl", cwd=work
        )
        assert again.returncode == 1, again.stderr
        assert _statuses(work / "again.jsonl") == first
        resumed = lexibatch("resume", cwd=work)
        assert resumed.returncode == 0, resumed.stderr
        assert "(0 queued requests sent)" in resumed.stderr
        assert emu.billing()["batch"]["requests"] == len(answered)

        # Asked for, they are sent again: each request paid for once in all.
        retried = lexibatch("resume", "--retry-cancelled", cwd=work)
        assert retried.returncode == 0, retried.stderr
        assert f"{N - len(answered)} requests of cancelled batches queued again" in retried.stderr
        final = lexibatch(
            "run", "requests.jsonl", "--mode", "batch", "--out", "final.jsonl", cwd=work
        )
        assert final.returncode == 0, final.stderr
        assert set(_statuses(work / "final.jsonl").values()) == {"succeeded"}
        assert f"{N} from cache" in final.stderr
        billing = emu.billing()
        assert billing["batch"]["requests"] == N and billing["duplicates"] == 0


def test_run_retry_cancelled_sends_them_again(tmp_path: Path) -> None:
    with EmulatorProcess({"batch_seconds": 20.0}) as emu:
        work = workdir(tmp_path / "work", emu.url + "/v1", N)
        _run_and_cancel_its_batch(work)
        answered = emu.billing()["batch"]["requests"]
        retried = lexibatch(
            "run",
            "requests.jsonl",
            "--mode",
            "batch",
            "--out",
            "out.jsonl",
            "--retry-cancelled",
            cwd=work,
        )
        assert retried.returncode == 0, retried.stderr
        assert set(_statuses(work / "out.jsonl").values()) == {"succeeded"}
        assert f"{answered} from cache" in retried.stderr
        billing = emu.billing()
        assert billing["batch"]["requests"] == N and billing["duplicates"] == 0
