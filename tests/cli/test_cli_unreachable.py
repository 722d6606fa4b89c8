"""A provider that cannot be reached is given up on in the same bounded time in both modes.

The retry settings are the defaults (``[retry]``): the bound measured here is
the one a user gets. The run says in one line what it could not reach and
that the same command resumes; the same command, once the provider answers,
finishes the work and pays for each request once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_helpers import dead_port, lexibatch, results, workdir

# Well under a minute: the defaults give up within 30 s of trying (plus start-up).
BOUND_SECONDS = 45


@pytest.mark.parametrize("mode", ["immediate", "batch"])
def test_an_unreachable_provider_is_given_up_on_in_bounded_time_and_the_rerun_resumes(
    tmp_path: Path, fresh_emulator: Any, mode: str
) -> None:
    dead = f"http://127.0.0.1:{dead_port()}/v1"
    work = workdir(tmp_path / "work", dead, 30)
    args = ("run", "requests.jsonl", "--mode", mode, "--out", "out.jsonl")
    started = time.monotonic()
    done = lexibatch(*args, cwd=work)
    took = time.monotonic() - started
    print(f"{mode}: gave up on an unreachable provider in {took:.1f} s")
    assert took < BOUND_SECONDS
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("lexibatch: error:")]
    assert len(errors) == 1, done.stderr
    assert f"cannot reach {dead}" in errors[0] and "gave up after" in errors[0]
    assert "30 requests not answered" in errors[0]
    assert "run the same command again to resume" in errors[0]
    # Nothing but the one line and the summary, beside a few progress lines: no retry chatter.
    progress = re.compile(r"lexibatch: \d\d:\d\d:\d\d \[")
    lines = done.stderr.strip().splitlines()
    said = [line for line in lines if not progress.match(line)]
    assert len(said) == 2, done.stderr
    assert len(lines) - len(said) <= 4, done.stderr
    # The provider is back (here: the emulator at another address, the same provider name).
    toml = work / "lexibatch.toml"
    toml.write_text(toml.read_text().replace(dead, fresh_emulator.base_url + "/v1"))
    again = lexibatch(*args, cwd=work)
    assert again.returncode == 0, again.stderr
    assert all(r["status"] == "succeeded" for r in results(work / "out.jsonl"))
    billing = fresh_emulator.billing()
    assert billing[mode]["requests"] == 30 and billing["duplicates"] == 0, billing


def test_synthesize_says_once_that_the_provider_could_not_be_reached(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{dead_port()}/v1"
    work = workdir(tmp_path / "work", dead, 1)
    (work / "words.txt").write_text("apple\nriver\n")
    started = time.monotonic()
    done = lexibatch("synthesize", "words.txt", "--out", "entries.jsonl", cwd=work)
    assert time.monotonic() - started < BOUND_SECONDS
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and not any("failed: " in x for x in lines), lines
    errors = [line for line in lines if line.startswith("lexibatch: error:")]
    assert len(errors) == 1 and f"cannot reach {dead}" in errors[0], lines
    assert "2 words not done" in errors[0] and "run the same command again" in errors[0]
