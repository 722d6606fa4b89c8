"""A refused API key: the run stops sending at once, and says which variable to fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from providers.emulator import Emulator, EmulatorConfig

PROMPTS = 300
CONCURRENCY = 4
# Each provider's key variable, path under the emulator and model. OpenAI refuses
# a key with a 401; Gemini with a 400 whose reason is API_KEY_INVALID.
WIRES = {
    "openai": ("OPENAI_API_KEY", "/v1", "gpt-4o-mini"),
    "gemini": ("GEMINI_API_KEY", "", "gemini-2.5-flash"),
}


def _run(work: Path, key: str, variable: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEXIBATCH_", "OPENAI_", "GEMINI_", "GOOGLE_"))
    }
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", variable: key})
    command = [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "out.jsonl"]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("provider", sorted(WIRES))
def test_a_refused_key_stops_the_run_after_the_calls_out_and_names_its_variable(
    tmp_path: Path, provider: str
) -> None:
    variable, path, model = WIRES[provider]
    with Emulator(EmulatorConfig(api_keys=["sk-the-right-one"])) as emu:
        (tmp_path / "lexibatch.toml").write_text(
            f'[connector]\nprovider = "{provider}"\nmodel = "{model}"\nmode = "immediate"\n'
            f'[providers.{provider}]\nbase_url = "{emu.base_url}{path}"\n'
            f"max_concurrency = {CONCURRENCY}\n"
        )
        lines = [json.dumps({"id": str(i), "prompt": f"key {i}"}) for i in range(PROMPTS)]
        (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
        refused = _run(tmp_path, "sk-a-wrong-one", variable)
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr
        last = refused.stderr.splitlines()[-1]
        assert last.startswith(
            f"lexibatch: error: {PROMPTS} requests not answered: the provider refused the key "
            f"in {variable}: "
        ), last
        assert "set a valid key and run the same command again" in last
        # Only the calls already out when the first refusal came reached the provider.
        assert emu.billing()["key_refusals"] <= CONCURRENCY * 2
        written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert len(written) == PROMPTS
        assert {w["error"]["type"] for w in written} == {"AuthenticationError"}
        answered = _run(tmp_path, "sk-the-right-one", variable)
        assert answered.returncode == 0, answered.stderr
        billing = emu.billing()
    assert billing["immediate"]["requests"] == PROMPTS and billing["duplicates"] == 0
