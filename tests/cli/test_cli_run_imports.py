"""``lexibatch run`` imports what it runs with: no other provider's SDK, LiteLLM or web stack.

Nor rich, when its progress goes to a file or a pipe (plain lines, no dashboard).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Packages a run through the OpenAI API (the sandbox's) has no use for, and its SDK.
_UNUSED = ["litellm", "anthropic", "google", "mistralai", "fastapi", "uvicorn", "starlette"]
_WATCHED = [*_UNUSED, "jinja2", "openai", "rich"]


def _imported(tmp_path: Path, *args: str) -> list[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEXIBATCH_", "OPENAI_"))
        and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")
    }
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    code = (
        "import json, sys\n"
        "from synthesis.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"print(json.dumps(sorted(m for m in {_WATCHED!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_run_help_imports_no_sdk(tmp_path: Path) -> None:
    assert _imported(tmp_path, "run", "--help") == []


@pytest.mark.parametrize("mode", ["immediate", "batch"])
def test_a_run_imports_only_its_providers_sdk(tmp_path: Path, mode: str) -> None:
    lines = [
        {"prompt": "hello", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        {"prompt": "again"},
    ]
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    imported = _imported(tmp_path, "run", "requests.jsonl", "--mode", mode, "--out", "out.jsonl")
    assert imported == ["openai"]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
