"""A run started with its standard output or standard error closed (``>&-``, ``2>&-``) still runs.

Nothing can be shown, and nothing else changes: every request is answered,
the results file is written, and the exit status is the run's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.emulated_run import run_env


@pytest.mark.parametrize("closed", ["2>&-", ">&-", ">&- 2>&-"])
@pytest.mark.parametrize("mode", ["immediate", "batch"])
def test_a_run_with_a_closed_standard_stream_answers_every_request(
    tmp_path: Path, closed: str, mode: str
) -> None:
    lines = [{"id": f"r{i}", "prompt": f"question {i}"} for i in range(5)]
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    command = [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--provider"]
    command += ["sandbox", "--mode", mode, "--out", "out.jsonl"]
    done = subprocess.run(
        ["sh", "-c", '"$0" "$@" ' + closed, *command],
        cwd=tmp_path,
        env=run_env(),
        timeout=120,
    )
    assert done.returncode == 0
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [line["id"] for line in lines]
    assert {r["status"] for r in results} == {"succeeded"}


def test_a_refused_request_file_still_exits_2_with_standard_error_closed(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "synthesis.cli", "run", "missing.jsonl", "--out", "out.jsonl"]
    done = subprocess.run(
        ["sh", "-c", '"$0" "$@" 2>&-', *command], cwd=tmp_path, env=run_env(), timeout=120
    )
    assert done.returncode == 2
    assert not (tmp_path / "out.jsonl").exists()
