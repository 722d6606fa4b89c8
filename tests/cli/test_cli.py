"""The command line end to end, in subprocesses, on the offline sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "synthesis" / "data" / "sample_words.txt"


def _lexibatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEXIBATCH_", "OPENAI_", "ANTHROPIC_"))
    }
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    return subprocess.run(
        [sys.executable, "-m", "synthesis.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_readme_main_job_then_a_rerun_that_costs_nothing(tmp_path: Path) -> None:
    first = _lexibatch("synthesize", str(SAMPLE), "--out", "entries.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "using the offline sandbox" in first.stderr
    lines = (tmp_path / "entries.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    words = {e["word"] for e in entries}
    assert len(entries) == 14 and {"apple", "café", "smartphone"} <= {w.lower() for w in words}
    assert all(e["definitions"] for e in entries)
    again = _lexibatch("synthesize", str(SAMPLE), "--out", "entries.jsonl", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 entries written" in again.stderr and "14 already done" in again.stderr
    assert len((tmp_path / "entries.jsonl").read_text().splitlines()) == 14


def test_run_requests_file_in_batch_mode(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    lines = [
        json.dumps({"id": f"q{i}", "prompt": f"question {i}", "schema": schema, "task": "qa"})
        for i in range(12)
    ]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    done = _lexibatch(
        "run", "requests.jsonl", "--mode", "batch", "--out", "out.jsonl", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [f"q{i}" for i in range(12)]
    assert all(r["status"] == "succeeded" and r["mode"] == "batch" for r in results)
    assert all(isinstance(r["output"]["answer"], str) for r in results)
    cost = _lexibatch("cost", cwd=tmp_path)
    assert cost.returncode == 0 and "batch" in cost.stdout
    listed = _lexibatch("batches", "list", cwd=tmp_path)
    assert "collected" in listed.stdout


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    (tmp_path / "requests.jsonl").write_text('{"prompt": "ok"}\nnot json\n')
    bad = _lexibatch("run", "requests.jsonl", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "requests.jsonl:2" in bad.stderr
    (tmp_path / "lexibatch.toml").write_text("[batch]\nlingr = 1\n")
    config = _lexibatch("run", "requests.jsonl", cwd=tmp_path)
    assert config.returncode == 2 and "batch.lingr" in config.stderr and "linger" in config.stderr
    (tmp_path / "lexibatch.toml").unlink()
    missing = _lexibatch("run", "requests.jsonl", "--provider", "openai", cwd=tmp_path)
    assert missing.returncode == 2


def test_missing_key_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "requests.jsonl").write_text('{"prompt": "ok"}\n')
    out = _lexibatch("run", "requests.jsonl", "--provider", "openai", cwd=tmp_path)
    assert out.returncode == 2
    assert "OPENAI_API_KEY" in out.stderr and "--provider sandbox" in out.stderr
    assert "Traceback" not in out.stderr


FULL_STORE = """
import sys
import plugins.store as store_module

opened = store_module.Store.__init__


def capped(self, *args, **kwargs):
    opened(self, *args, **kwargs)
    pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
    self._conn.execute(f"PRAGMA max_page_count = {pages + 2}")


store_module.Store.__init__ = capped
from synthesis.cli import main

sys.argv[0] = "lexibatch"
main()
"""


def test_a_full_store_stops_a_batch_run_in_one_line_and_the_rerun_finishes(
    tmp_path: Path,
) -> None:
    (tmp_path / "words.txt").write_text("apple\nriver\n")
    args = ("synthesize", "words.txt", "--mode", "batch", "--out", "entries.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    full = subprocess.run(
        [sys.executable, "-c", FULL_STORE, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert full.returncode == 2, full.stderr
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("lexibatch: error: the store ") and "disk is full" in last
    assert full.stderr.count("disk is full") == 1 and "Traceback" not in full.stderr
    again = _lexibatch(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 entries written" in again.stderr


def test_a_budget_just_above_the_printed_estimate_runs_and_just_below_refuses(
    tmp_path: Path,
) -> None:
    # `--estimate`, `--budget` and the batch strategy's own budget check price
    # with one estimator: a budget 5 % above the printed batch estimate sends
    # everything, 5 % below refuses before anything is sent.
    import re

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "level": {"enum": ["A1", "B2"]}},
        "required": ["answer", "level"],
    }
    lines = [
        json.dumps({"id": f"q{i}", "prompt": f"question {i} about words", "schema": schema})
        for i in range(400)
    ]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    estimate = _lexibatch("run", "requests.jsonl", "--mode", "batch", "--estimate", cwd=tmp_path)
    assert estimate.returncode == 0, estimate.stderr
    found = re.search(r"batch:\s+\$([0-9.]+)", estimate.stdout)
    assert found, estimate.stdout
    batch_usd = float(found.group(1))
    assert batch_usd > 0

    below = _lexibatch(
        "run", "requests.jsonl", "--mode", "batch", "--budget", f"{batch_usd * 0.95:.6f}",
        "--out", "below.jsonl", cwd=tmp_path,
    )  # fmt: skip
    assert below.returncode == 2, below.stderr
    assert "exceeds the budget" in below.stderr and "Traceback" not in below.stderr
    assert not (tmp_path / "below.jsonl").exists()
    listed = _lexibatch("batches", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "no batches in the journal" in listed.stdout.lower()

    above = _lexibatch(
        "run", "requests.jsonl", "--mode", "batch", "--budget", f"{batch_usd * 1.05:.6f}",
        "--out", "above.jsonl", cwd=tmp_path,
    )  # fmt: skip
    assert above.returncode == 0, above.stderr
    results = [json.loads(x) for x in (tmp_path / "above.jsonl").read_text().splitlines()]
    assert len(results) == 400 and all(r["status"] == "succeeded" for r in results)


def test_a_budget_counts_only_what_the_run_would_pay_for(tmp_path: Path) -> None:
    # A job resumed under a budget: what the store answered already costs it nothing.
    import re

    lines = [json.dumps({"id": f"q{i}", "prompt": f"resumed question {i}"}) for i in range(30)]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines[:20]) + "\n")
    first = _lexibatch("run", "requests.jsonl", "--out", "first.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # The same 20: nothing to pay, so a budget of nothing lets it through.
    again = _lexibatch("run", "requests.jsonl", "--budget", "0", "--out", "a.jsonl", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "20 of 20 requests are answered in the store" in again.stderr
    assert "20 from cache" in again.stderr
    # Ten new ones: only they are estimated, and only they count against the budget.
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    estimate = _lexibatch("run", "requests.jsonl", "--estimate", cwd=tmp_path)
    assert estimate.returncode == 0, estimate.stderr
    assert "estimating the other 10" in estimate.stderr
    assert "estimate for 10 requests" in estimate.stdout
    found = re.search(r"immediate:\s+\$([0-9.]+)", estimate.stdout)
    assert found is not None and float(found.group(1)) > 0, estimate.stdout
    refused = _lexibatch("run", "requests.jsonl", "--budget", "0", "--out", "b.jsonl", cwd=tmp_path)
    assert refused.returncode == 2 and "exceeds the budget" in refused.stderr, refused.stderr


def test_a_budget_refuses_requests_of_a_model_with_no_price(tmp_path: Path) -> None:
    lines = [
        json.dumps({"prompt": "priced"}),
        json.dumps({"prompt": "unpriced", "model": "no-such-model-zz"}),
    ]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    refused = _lexibatch("run", "requests.jsonl", "--budget", "5", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        "lexibatch: error: the price map has no price for no-such-model-zz: a budget (--budget, "
        "batch.budget_usd) cannot bound what its requests cost — give it a price in the "
        'configuration ([prices."MODEL"] input_per_million and output_per_million), choose a '
        "priced model, or run without a budget"
    )
    assert not (tmp_path / ".lexibatch").exists()  # nothing was sent, or journaled
    # The configured budget is the same setting as the flag.
    (tmp_path / "lexibatch.toml").write_text("[batch]\nbudget_usd = 5\n")
    configured = _lexibatch("run", "requests.jsonl", cwd=tmp_path)
    assert configured.returncode == 2, configured.stderr
    assert configured.stderr.strip().splitlines()[-1] == refused.stderr.strip().splitlines()[-1]
    assert not (tmp_path / ".lexibatch").exists()


def test_a_configured_price_prices_a_model_the_map_lacks_in_estimate_budget_lines_and_ledger(
    tmp_path: Path,
) -> None:
    # The price map has no such model: with a price of its own, the budget can bound
    # it, and the estimate, each result line and the ledger price it at that price.
    lines = [
        json.dumps({"id": f"q{i}", "prompt": f"question {i}", "model": "no-such-model-zz"})
        for i in range(3)
    ]
    (tmp_path / "requests.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "lexibatch.toml").write_text(
        '[prices."no-such-model-zz"]\ninput_per_million = 2.0\noutput_per_million = 8.0\n'
        "batch_input_per_million = 1.0\n"
    )
    estimate = _lexibatch("run", "requests.jsonl", "--estimate", cwd=tmp_path)
    assert estimate.returncode == 0, estimate.stderr
    assert "unpriced" not in estimate.stdout
    import re

    immediate = re.search(r"immediate:\s+\$([0-9.]+)", estimate.stdout)
    batch = re.search(r"batch:\s+\$([0-9.]+)", estimate.stdout)
    assert immediate and batch, estimate.stdout
    # The batch price given for input sets the discount of output too.
    assert float(batch.group(1)) == pytest.approx(float(immediate.group(1)) / 2, rel=0.05)
    done = _lexibatch(
        "run", "requests.jsonl", "--mode", "immediate", "--budget", "1", "--out", "out.jsonl",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(results) == 3 and all(r["status"] == "succeeded" for r in results)
    for r in results:
        usage = r["usage"]
        expected = (usage["input_tokens"] * 2.0 + usage["output_tokens"] * 8.0) / 1e6
        assert r["cost_usd"] == pytest.approx(expected, rel=1e-9) and expected > 0
    total = sum(r["cost_usd"] for r in results)
    cost = _lexibatch("cost", "--json", cwd=tmp_path)
    assert cost.returncode == 0, cost.stderr
    report = json.loads(cost.stdout)["total"]
    assert report["unpriced"] == 0
    assert float(report["cost_usd"]) == pytest.approx(total, rel=1e-9)
