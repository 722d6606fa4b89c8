"""Batch jobs split across a forked child give the same answers as one process."""

from __future__ import annotations

import orjson
import pytest
from emu_helpers import batch_file, requests_of

from providers.emulator import EmulatorConfig
from providers.emulator import jobs as jobs_module


def _contents(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for raw in lines:
        line = orjson.loads(raw)
        if "response" in line:
            body = line["response"]["body"]
            out.append((line["custom_id"], body["choices"][0]["message"]["content"]))
        else:
            out.append((line["custom_id"], line["result"]["message"]["content"][0]["text"]))
    return out


def test_forked_openai_job_matches_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "_FORK_AT", 10)
    monkeypatch.setattr(jobs_module, "_CORES", 4)
    data = batch_file(40)
    serial = jobs_module.openai_job(
        data, "/v1/chat/completions", EmulatorConfig(parallel=False), {}, {}
    )
    forked = jobs_module.openai_job(data, "/v1/chat/completions", EmulatorConfig(), {}, {})
    assert forked.custom_ids == serial.custom_ids == [f"w{i}" for i in range(40)]
    assert _contents(forked.lines) == _contents(serial.lines)
    assert forked.in_tokens == serial.in_tokens and forked.batch_key == serial.batch_key
    ids = [orjson.loads(x)["id"] for x in forked.lines]
    assert len(set(ids)) == 40


def test_forked_job_finds_duplicates_across_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "_FORK_AT", 10)
    monkeypatch.setattr(jobs_module, "_CORES", 4)
    data = batch_file(20) + batch_file(1)
    job = jobs_module.openai_job(data, "/v1/chat/completions", EmulatorConfig(), {}, {})
    assert job.fault == "fail" and [e["code"] for e in job.errors] == ["duplicate_custom_id"]


def test_forked_anthropic_job_matches_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs_module, "_FORK_AT", 10)
    monkeypatch.setattr(jobs_module, "_CORES", 4)
    reqs = requests_of(30)
    serial = jobs_module.anthropic_job(reqs, EmulatorConfig(parallel=False), {}, {})
    forked = jobs_module.anthropic_job(reqs, EmulatorConfig(), {}, {})
    assert _contents(forked.lines) == _contents(serial.lines)


def test_a_jobs_result_lines_hold_only_their_own_size() -> None:
    import tracemalloc

    data = batch_file(200)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        job = jobs_module.openai_job(
            data, "/v1/chat/completions", EmulatorConfig(parallel=False), {}, {}
        )
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    text = sum(len(line) for line in job.lines)
    # Lines are kept until the batch is read: each about its own length, not a 4 KiB buffer.
    assert len(job.lines) == 200 and held < 3 * text, (held, text)


def test_a_machine_of_two_cores_answers_a_large_job_in_one_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fork(work: object) -> None:
        raise AssertionError("forked")

    monkeypatch.setattr(jobs_module, "_FORK_AT", 10)
    monkeypatch.setattr(jobs_module, "_CORES", 2)
    monkeypatch.setattr(jobs_module, "_in_child", no_fork)
    job = jobs_module.openai_job(batch_file(40), "/v1/chat/completions", EmulatorConfig(), {}, {})
    assert job.custom_ids == [f"w{i}" for i in range(40)] and all(job.ok)
    ant = jobs_module.anthropic_job(requests_of(30), EmulatorConfig(), {}, {})
    assert ant.n == 30 and all(ant.ok)
    # With a third core the same job is split.
    monkeypatch.setattr(jobs_module, "_CORES", 3)
    with pytest.raises(AssertionError, match="forked"):
        jobs_module.openai_job(batch_file(40), "/v1/chat/completions", EmulatorConfig(), {}, {})
