"""Progress of a command whose stderr is a log, not a terminal: plain lines, or nothing with -q."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.cli.cli_helpers import lexibatch, workdir


def _progress(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.match(r"lexibatch: \d\d:\d\d:\d\d ", line)]


def test_a_batch_run_logs_a_line_per_state_change_not_per_request(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    fresh_emulator.configure(batch_seconds=1.0)
    work = workdir(tmp_path / "work", fresh_emulator.base_url + "/v1", 60)
    done = lexibatch("run", "requests.jsonl", "--mode", "batch", "--out", "out.jsonl", cwd=work)
    assert done.returncode == 0, done.stderr
    lines = _progress(done.stderr)
    assert 3 <= len(lines) <= 12, done.stderr  # far fewer than the 60 requests
    assert "requests 0/60 done" in lines[0]
    assert any(re.search(r"batches openai 1 (validating|in_progress)", x) for x in lines)
    assert any("waiting for batch batch_" in x for x in lines), lines
    assert "requests 60/60 done" in lines[-1] and "batches openai 1 completed" in lines[-1]
    assert re.search(r"spent \$0\.\d+", lines[-1])
    assert done.stderr.rstrip().splitlines()[-1].startswith("60 succeeded, 0 failed")


def test_synthesize_logs_its_stages_and_words(tmp_path: Path, fresh_emulator: Any) -> None:
    work = workdir(tmp_path / "work", fresh_emulator.base_url + "/v1", 1)
    (work / "words.txt").write_text("bank\nlight\n")
    done = lexibatch("synthesize", "words.txt", "--mode", "immediate", cwd=work)
    assert done.returncode == 0, done.stderr
    last = _progress(done.stderr)[-1]
    assert re.search(r"\(cluster (\d+)/\1, synthesize 2/2, enhance (\d+)/\2\)", last), last
    assert "words 2/2" in last


def test_quiet_prints_nothing_but_errors(tmp_path: Path, fresh_emulator: Any) -> None:
    work = workdir(tmp_path / "work", fresh_emulator.base_url + "/v1", 12)
    done = lexibatch(
        "run", "requests.jsonl", "--mode", "auto", "-q", "--out", "out.jsonl", cwd=work
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert len((work / "out.jsonl").read_text().splitlines()) == 12
    (work / "words.txt").write_text("bank\n")
    quiet = lexibatch("synthesize", "words.txt", "--quiet", cwd=work)
    assert quiet.returncode == 0 and (quiet.stdout, quiet.stderr) == ("", "")
    resumed = lexibatch("resume", "--quiet", cwd=work)
    assert resumed.returncode == 0 and (resumed.stdout, resumed.stderr) == ("", "")
    missing = lexibatch("run", "nope.jsonl", "--quiet", cwd=work)
    assert missing.returncode == 2
    assert missing.stderr.startswith("lexibatch: error: ") and missing.stderr.count("\n") == 1
