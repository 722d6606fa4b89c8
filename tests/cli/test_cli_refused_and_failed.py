"""A run that both refuses a line no batch can hold and meets provider failures exits 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.cli_helpers import lexibatch
from tests.support.emulated_run import work_folder


def test_a_refused_line_beside_provider_failures_is_named_and_the_exit_is_the_providers(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    # Every answer misfits its schema (a provider failure after the retry rounds);
    # the second line is longer than one batch may hold (refused, never sent).
    fresh_emulator.configure(schema_invalid=1.0)
    prompts = ["question 1", "long " * 1000, "question 3"]
    work = work_folder(
        tmp_path / "work",
        fresh_emulator.base_url + "/v1",
        batch={"max_bytes": 3000},
        prompts=prompts,
    )
    done = lexibatch("run", "requests.jsonl", "--mode", "batch", "--out", "out.jsonl", cwd=work)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "0 succeeded, 3 failed" in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("lexibatch: error: requests.jsonl:2: request lb-"), last
    assert "it was not sent" in last
    results = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["failed"] * 3
    assert [r["error"]["type"] for r in results] == [
        "SchemaValidationError",
        "InputError",
        "SchemaValidationError",
    ]
    # The two short ones were sent, then asked again in 3 retry rounds; the long one never.
    assert fresh_emulator.billing()["batch"]["requests"] == 2 * 4
