"""A collected batch deleted at its provider (Gemini's are) is still shown, from the journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _lexibatch(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "GEMINI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "GEMINI_API_KEY": "gemini-cli-test"})
    return subprocess.run(
        [sys.executable, "-m", "synthesis.cli", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_collected_gemini_batch_is_shown_after_it_was_deleted(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    (tmp_path / "lexibatch.toml").write_text(
        "[connector]\n"
        'provider = "gemini"\n'
        'model = "gemini-2.5-flash"\n'
        "[providers.gemini]\n"
        f'base_url = "{fresh_emulator.base_url}"\n'
        "[batch]\n"
        "linger = 0.1\n"
        "poll_interval = 0.05\n"
        "max_poll_interval = 0.1\n"
    )
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    lines = [json.dumps({"id": str(i), "prompt": f"shown {i}", "schema": schema}) for i in range(3)]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    ran = _lexibatch(tmp_path, "run", "requests.jsonl", "--mode", "batch", "--out", "out.jsonl")
    assert ran.returncode == 0, ran.stderr
    (row,) = json.loads(_lexibatch(tmp_path, "batches", "list", "--json").stdout)
    assert row["state"] == "collected"
    # Gone at Gemini with its files once its results were stored.
    (rec,) = fresh_emulator.app.state.batches.values()
    assert rec.get("deleted")
    shown = _lexibatch(tmp_path, "batches", "show", row["batch_id"])
    assert shown.returncode == 0, shown.stderr
    assert row["batch_id"] in shown.stdout and "collected" in shown.stdout
    assert "provider now" not in shown.stdout
