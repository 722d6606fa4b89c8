"""A run whose requests fail at the provider ends with one error line naming the first, even -q."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from providers.emulator import Emulator, EmulatorConfig


@pytest.mark.parametrize("quiet", [False, True])
def test_failed_requests_end_with_a_line_naming_the_first_failure(
    tmp_path: Path, quiet: bool
) -> None:
    # Every prompt is longer than the model's context: each request fails alone.
    lines = [json.dumps({"id": str(i), "prompt": f"far too long {i}"}) for i in range(3)]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "OPENAI_API_KEY": "sk-test"})
    with Emulator(EmulatorConfig(context_window=2)) as emu:
        (tmp_path / "lexibatch.toml").write_text(
            '[connector]\nprovider = "openai"\n'
            f'[providers.openai]\nbase_url = "{emu.base_url}/v1"\n'
        )
        done = subprocess.run(
            [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "out.jsonl"]
            + (["-q"] if quiet else []),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("lexibatch: error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("lexibatch: error: requests.jsonl:1: ContextLengthError: ")
    assert "(HTTP 400) (and 2 more) — each failed request's error is in out.jsonl" in errors[0]
    if quiet:
        assert done.stderr.splitlines() == errors
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["error"]["type"] for r in results] == ["ContextLengthError"] * 3
