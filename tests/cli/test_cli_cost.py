"""The run summary and `lexibatch cost` count the same paid calls, re-asks and failures too."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_helpers import lexibatch, workdir

_SPENT = re.compile(r"(\$[\d.,]+ for [\d,]+ paid calls?)")


@pytest.mark.parametrize(("mode", "calls"), [("immediate", 2), ("batch", 4)])
def test_every_paid_call_is_in_the_summary_and_in_the_cost_report(
    tmp_path: Path, fresh_emulator: Any, mode: str, calls: int
) -> None:
    # Every answer misfits its schema: immediate calls are re-asked once, batch
    # requests go to 3 retry rounds; every one of those calls is paid.
    fresh_emulator.configure(schema_invalid=1.0)
    work = workdir(tmp_path / "work", fresh_emulator.base_url + "/v1", 10)
    done = lexibatch("run", "requests.jsonl", "--mode", mode, "--out", "out.jsonl", cwd=work)
    assert done.returncode == 1, done.stderr
    assert "0 succeeded, 10 failed" in done.stderr
    summary = _SPENT.search(done.stderr)
    assert summary is not None, done.stderr
    assert summary.group(1).endswith(f"for {10 * calls} paid calls")
    assert "$0.00 " not in summary.group(1) and "$0.0000 " not in done.stderr
    billed = fresh_emulator.billing()
    assert billed[mode]["requests"] == 10 * calls, billed
    report = lexibatch("cost", cwd=work)
    assert report.returncode == 0, report.stderr
    total = re.search(r"total (\$[\d.,]+ for [\d,]+ paid calls)", report.stdout)
    assert total is not None, report.stdout
    assert total.group(1) == summary.group(1)


def test_calls_that_timed_out_are_said_beside_the_paid_calls(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    # Every answer outlives the client's timeout: each request is tried twice (the
    # first retry after a timeout), and the provider bills every try it answered.
    fresh_emulator.configure(slow=1.0, slow_seconds=0.8)
    work = workdir(tmp_path / "work", fresh_emulator.base_url + "/v1", 3)
    toml = (work / "lexibatch.toml").read_text()
    assert "[providers.openai]\n" in toml
    toml = toml.replace("[providers.openai]\n", "[providers.openai]\ntimeout = 0.3\n")
    (work / "lexibatch.toml").write_text(toml)
    done = lexibatch("run", "requests.jsonl", "--mode", "immediate", "--out", "out.jsonl", cwd=work)
    assert done.returncode == 1, done.stderr
    assert "0 succeeded, 3 failed" in done.stderr
    assert (
        "$0.00 for 0 paid calls; 6 more timed out, which the provider may bill as well"
        in done.stderr
    ), done.stderr
    # The emulator bills an abandoned call once its slow answer is ready: all six were.
    time.sleep(1.0)
    assert fresh_emulator.billing()["immediate"]["requests"] == 6


@pytest.mark.parametrize("mode", ["immediate", "batch"])
def test_the_result_lines_add_up_to_the_spend_when_requests_repeat(
    tmp_path: Path, fresh_emulator: Any, mode: str
) -> None:
    import json
    from decimal import Decimal

    work = workdir(tmp_path / "work", fresh_emulator.base_url + "/v1", 0)
    # Six ids, three distinct bodies: each body is one call, paid once.
    lines = [{"id": f"r{i}", "prompt": f"the same question {i % 3}"} for i in range(6)]
    (work / "requests.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = lexibatch("run", "requests.jsonl", "--mode", mode, "--out", "out.jsonl", cwd=work)
    assert done.returncode == 0, done.stderr
    assert "6 succeeded, 0 failed, 3 from cache" in done.stderr, done.stderr
    written = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
    paid = [w for w in written if not w["cached"]]
    assert [w["id"] for w in paid] == ["r0", "r1", "r2"]
    assert all(w["cost_usd"] == 0.0 for w in written if w["cached"])
    # Each cost reads as billed: no float noise past the twelfth decimal.
    assert all(Decimal(repr(w["cost_usd"])).as_tuple().exponent >= -12 for w in written)  # type: ignore[operator]
    report = lexibatch("cost", "--json", cwd=work)
    assert report.returncode == 0, report.stderr
    total = json.loads(report.stdout)["total"]
    assert Decimal(str(sum(Decimal(repr(w["cost_usd"])) for w in written))) == Decimal(
        total["cost_usd"]
    ), total
    assert fresh_emulator.billing()[mode]["requests"] == 3
