"""`lexibatch synthesize --provider gemini|mistral --mode batch` end to end, offline.

The command runs in a subprocess, configured as a user would configure it
(``lexibatch.toml`` naming the provider, its model and ``base_url``; the
key's variable set), against an emulator serving that vendor's API. Every
stage of the pipeline goes through the vendor's batch endpoint; a re-run
skips the words done and pays for nothing again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.emulator import Emulator, EmulatorConfig

WORDS = ["bread", "bird", "salt"]
VENDORS = {
    # provider: (model, path of its API on the emulator, key variable)
    "gemini": ("gemini-2.5-flash", "", "GEMINI_API_KEY"),
    "mistral": ("mistral-small-latest", "/mistral", "MISTRAL_API_KEY"),
}


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(batch_seconds=0.2)) as emu:
        yield emu


def _run(tmp_path: Path, provider: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEXIBATCH_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "MISTRAL_"))
    }
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", VENDORS[provider][2]: "offline-test-key"})
    command = [sys.executable, "-m", "synthesis.cli", "synthesize", "words.txt", "--provider"]
    command += [provider, "--mode", "batch", "--components", "synonyms,cefr_level"]
    command += ["--out", "entries.jsonl", *extra]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize("provider", list(VENDORS))
def test_synthesize_in_batch_mode_end_to_end(
    emulator: Emulator, tmp_path: Path, provider: str
) -> None:
    model, path, _ = VENDORS[provider]
    (tmp_path / "words.txt").write_text("\n".join(WORDS) + "\n")
    (tmp_path / "lexibatch.toml").write_text(
        "[connector]\n"
        f'model = "{model}"\n'
        f"[providers.{provider}]\n"
        f'base_url = "{emulator.base_url}{path}"\n'
        "[batch]\n"
        "linger = 0.05\n"
        "poll_interval = 0.05\n"
        "max_poll_interval = 0.2\n"
    )
    first = _run(tmp_path, provider)
    assert first.returncode == 0, first.stderr
    entries: list[dict[str, Any]] = [
        json.loads(line) for line in (tmp_path / "entries.jsonl").read_text().splitlines()
    ]
    assert sorted(e["word"] for e in entries) == sorted(WORDS)
    for entry in entries:
        assert entry["definitions"], entry
        first_sense = entry["definitions"][0]
        assert first_sense["synonyms"] is not None and first_sense["cefr_level"]
    billing = emulator.billing()
    assert billing["batch"]["requests"] > 0 and billing["immediate"]["requests"] == 0
    assert billing["duplicates"] == 0
    paid = billing["batch"]["requests"]

    again = _run(tmp_path, provider)
    assert again.returncode == 0, again.stderr
    assert f"{len(WORDS)} already done" in again.stderr
    assert emulator.billing()["batch"]["requests"] == paid
