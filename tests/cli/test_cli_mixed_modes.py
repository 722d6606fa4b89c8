"""An immediate run and a batch run on one store at once pay for each request once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli.cli_helpers import EmulatorProcess, command, env, results, workdir

N = 100


def test_an_immediate_and_a_batch_run_at_once_pay_once_each(tmp_path: Path) -> None:
    # Slow enough answers that both runs are at work on the same requests at once.
    with EmulatorProcess({"batch_seconds": 1.0, "latency": 0.05}) as emu:
        work = workdir(tmp_path / "work", emu.url + "/v1", N, extra="max_requests = 10\n")
        runs = [
            subprocess.Popen(
                command("run", "requests.jsonl", "--mode", mode, "--out", f"{mode}.jsonl"),
                cwd=work,
                env=env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for mode in ("batch", "immediate")
        ]
        try:
            outcomes = [run.communicate(timeout=240) for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait()
        billing = emu.billing()
    for run, (_, stderr) in zip(runs, outcomes, strict=True):
        assert run.returncode == 0, stderr
        assert "Traceback" not in stderr
    made_by: dict[str, dict[str, str]] = {}
    for mode in ("batch", "immediate"):
        lines = results(work / f"{mode}.jsonl")
        assert sorted(int(r["id"]) for r in lines) == list(range(N))
        assert all(r["status"] == "succeeded" for r in lines), mode
        made_by[mode] = {r["id"]: r["mode"] for r in lines}
    # Each answer was made once, in one mode, and both runs report that one.
    assert made_by["batch"] == made_by["immediate"]
    assert billing["duplicates"] == 0
    assert billing["batch"]["requests"] + billing["immediate"]["requests"] == N
    by_key = billing["by_key"]
    assert not set(by_key["batch"]) & set(by_key["immediate"])
    made = list(made_by["batch"].values())
    assert made.count("batch") == billing["batch"]["requests"]
    assert made.count("immediate") == billing["immediate"]["requests"]
