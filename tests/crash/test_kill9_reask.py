"""``kill -9`` of an immediate run while a re-ask is out: no paid answer lost, none paid twice.

A request's first answer comes back, is billed, and does not fit its schema
(or is cut at ``max_tokens``): lexibatch asks again. The first answer was
paid for, so it is ledgered, and kept with the re-ask it led to, before the
re-ask is sent. Killed while the re-ask is out, the run loses nothing the
provider billed: the ledger holds every billed call, and the next run sends
the re-ask, not the first question again.

The emulator does not bill calls whose client hung up (``bill_abandoned``
off), so every call it bills is one whose answer lexibatch received.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.emulated_run import EmulatorProcess, paid_calls, run_env, work_folder

N = 10
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def _requests(work: Path, kind: str) -> None:
    # "schema": the first answer of each body misfits its schema once (the emulator's
    # marker); "truncate": six tokens cut it, and it is asked again with twelve.
    extra = {"model": "gpt-4o-mini@schema-invalid-once"} if kind == "schema" else {"max_tokens": 6}
    lines = [
        json.dumps({"id": f"r{i}", "prompt": f"re-asked {i}", "schema": SCHEMA, **extra})
        for i in range(N)
    ]
    (work / "requests.jsonl").write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("kind", ["schema", "truncate"])
def test_a_run_killed_while_a_reask_is_out_resumes_the_reask(tmp_path: Path, kind: str) -> None:
    config = {"slow": 1.0, "slow_seconds": 1.5, "bill_abandoned": False}
    with EmulatorProcess(config, state=tmp_path / "emulator-state") as emu:
        work = work_folder(
            tmp_path / "work",
            f"{emu.url}/v1",
            connector={"model": "gpt-4o-mini", "mode": "immediate"},
        )
        _requests(work, kind)
        env = run_env(OPENAI_API_KEY="sk-reask-kill")
        command = [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl"]
        command += ["--out", "out.jsonl"]
        run = subprocess.Popen(
            command,
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            # The N first answers are billed: their re-asks are out.
            deadline = time.monotonic() + 60
            while emu.billing()["immediate"]["requests"] < N:
                assert run.poll() is None and time.monotonic() < deadline, "the run ended early"
                time.sleep(0.02)
            time.sleep(0.5)  # well inside the 1.5 s each re-ask takes
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        finally:
            if run.poll() is None:
                run.kill()
        db = work / ".lexibatch" / "lexibatch.db"
        # Every call the provider billed is in the ledger, though no answer was stored.
        assert emu.billing()["immediate"]["requests"] == N
        assert paid_calls(db, "immediate") == N
        again = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        billing = emu.billing()
    # The re-asks were sent, not the first questions: no body billed twice.
    assert billing["duplicates"] == 0, billing
    assert billing["immediate"]["requests"] == 2 * N
    assert paid_calls(db, "immediate") == 2 * N
    written = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    if kind == "truncate":
        # Twelve tokens are enough: every re-ask is answered, and the run ends well.
        assert again.returncode == 0, again.stderr
        assert [w["status"] for w in written] == ["succeeded"] * N
    else:
        # The marker misfits each new body's first answer: the re-ask fails as it
        # fails in a run never killed (one re-ask by default), paid once.
        assert again.returncode == 1, again.stderr
        assert {w["error"]["type"] for w in written} == {"SchemaValidationError"}
