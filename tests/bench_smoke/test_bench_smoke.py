"""The benchmarks at tiny sizes, so they cannot rot: each runs and prints every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "bench_startup": ["lexibatch --help", "import providers"],
    "bench_batch": [
        "batch end to end",
        "client CPU per request",
        "floor per request",
        "client CPU / floor",
        "journal alone / floor",
        "bare pipeline / floor",
        "client CPU / (bare + journal)",
        "ours / instructor throughput",
    ],
    "bench_run": [
        "library rate",
        "run rate",
        "library CPU per request",
        "run CPU per request",
        "run / library rate",
        "run / library CPU per request",
    ],
    "bench_immediate": ["connector", "openai SDK (raw)", "litellm", "connector / openai SDK"],
    "bench_growth": [
        "round 1 rate",
        "round 5 / round 1 rate",
        "round 5 / a first round beside it",
        "client CPU per request, round 1",
        "store bytes per request",
    ],
    "bench_scale": [
        "wall time",
        "requests",
        "batches",
        "run held for queue room",
        "shards waited for queue room",
        "client CPU per request",
        "peak RSS",
        "store bytes per request",
        "runs killed with SIGKILL",
        "failed",
        "billed twice",
        "projected requests, 600,000 words",
        "projected client CPU",
        "projected store size",
        "projected cost, batch",
        "projected cost, immediate",
    ],
    "bench_memory": [
        "peak RSS, 1 KB prompts",
        "peak RSS, 4 KB prompts",
        "prompt bytes kept, 4 KB vs 1 KB",
        "awaiting structured(), per request",
        "awaiting: structured() / bare task",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_runs_at_tiny_size_and_prints_its_figures(name: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", f"tests.benchmarks.{name}", "--tiny", "--report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["name"].strip(): r for r in json.loads(report.read_text())["rows"]}
    expected = list(EXPECTED[name])
    if name == "bench_batch" and "instructor: skipped" in done.stdout:
        expected.remove("ours / instructor throughput")
    for figure in expected:
        assert figure in rows, (figure, sorted(rows))
        assert rows[figure]["figure"] >= 0
        assert figure in done.stdout
    assert "figures vs targets" in done.stdout
