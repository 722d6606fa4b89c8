"""A key the provider refuses, end to end: the emulator holds a set of keys, the CLI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from providers.emulator import Emulator, EmulatorConfig

RIGHT = "sk-right-key-0000"


def _run(cwd: Path, key: str, mode: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    env["OPENAI_API_KEY"] = key
    args = ["run", "requests.jsonl", "--mode", mode, "--out", "out.jsonl"]
    return subprocess.run(
        [sys.executable, "-m", "synthesis.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_refused_key_fails_the_run_in_one_line_and_the_right_one_runs(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(api_keys=[RIGHT])) as emu:
        (tmp_path / "lexibatch.toml").write_text(
            f'[connector]\nprovider = "openai"\n'
            f'[providers.openai]\nbase_url = "{emu.base_url}/v1"\n'
            "[batch]\nlinger = 0.05\npoll_interval = 0.05\n"
        )
        (tmp_path / "requests.jsonl").write_text('{"id": "q1", "prompt": "ok"}\n')
        for mode in ("immediate", "batch"):
            refused = _run(tmp_path, "sk-wrong-key-1111", mode)
            # A key to fix: exit 2, naming the variable it came from.
            assert refused.returncode == 2, refused.stderr
            assert "Traceback" not in refused.stderr
            assert refused.stderr.splitlines()[-1].startswith(
                "lexibatch: error: 1 request not answered: the provider refused the key in "
                "OPENAI_API_KEY: "
            ), refused.stderr
            result = json.loads((tmp_path / "out.jsonl").read_text())
            assert result["status"] == "failed"
            assert result["error"]["type"] == "AuthenticationError"
            assert result["error"]["code"] == "invalid_api_key"
            assert "sk-wrong-key-1111" not in (tmp_path / "out.jsonl").read_text()
        answered = _run(tmp_path, RIGHT, "immediate")
        assert answered.returncode == 0, answered.stderr
        assert json.loads((tmp_path / "out.jsonl").read_text())["status"] == "succeeded"
