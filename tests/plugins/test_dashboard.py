"""The dashboard of a running command, fed hook events: what it shows, live and in plain lines."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from plugins.dashboard import RunState
from plugins.progress import ProgressObserver
from plugins.requestevents import RequestOutcome
from providers.errors import ProviderError
from providers.types import BatchInfo, BatchState, Message, Request, Response, Usage

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _request(i: int, task: str) -> Request:
    return Request("gpt-4o-mini", (Message("user", f"q{i}"),), task=task)


def _response(request: Request, cost: float | None, *, cached: bool = False) -> Response:
    return Response(
        None,
        "{}",
        Usage(10, 2),
        cost,
        "openai",
        request.model,
        "batch",
        request.key,
        cached=cached,
    )


def _stage(task: str | None) -> str:
    return {"cluster": "cluster", "synthesize": "synthesize"}.get(task or "", "enhance")


def _render(state: RunState, width: int = 120) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(state.render())
    return console.export_text()


def _fed() -> tuple[RunState, Clock]:
    """A synthesize run two minutes in: clustering done, an enhance batch 25% through."""
    clock = Clock()
    state = RunState(
        "synthesize 40 words",
        stages=("cluster", "synthesize", "enhance"),
        stage_of=_stage,
        estimate_usd=0.05,
        budget_usd=1,
        batch_mode=True,
        clock=clock,
    )
    state.set_units("words", 0, 40)
    for i in range(40):
        r = _request(i, "cluster")
        state.request_started(r)
        state.request_finished(r, _response(r, 0.0001, cached=i < 4), None)
    failed = _request(99, "cluster")
    state.request_started(failed)
    state.request_finished(failed, None, ProviderError("boom"))
    for i in range(400):
        state.request_started(_request(i, "enhance_pos"))
    state.batch_submitted(BatchInfo("batch_done", BatchState.COMPLETED, 40, 40), "s0", "openai", 40)
    clock.now += 60
    state.batch_submitted(BatchInfo("batch_enh", BatchState.VALIDATING, 400), "s1", "openai", 400)
    clock.now += 120
    state.batch_status_changed(
        BatchInfo("batch_enh", BatchState.IN_PROGRESS, 400, 90, 10),
        BatchState.VALIDATING,
        "openai",
    )
    return state, clock


def test_the_dashboard_shows_stages_batches_spend_eta_and_what_it_waits_for() -> None:
    state, _ = _fed()
    text = _render(state)
    lines = text.splitlines()
    assert "lexibatch synthesize 40 words · batch mode · 3m 00s elapsed" in lines[0]
    assert re.search(r"cluster +41 / 41 .* 1 +4", text)  # 40 answered + 1 failed
    assert re.search(r"synthesize +0 / 0", text)  # listed before it starts
    assert re.search(r"enhance +0 / 400", text)
    assert re.search(r"words +0 / 40", text)
    assert re.search(r"in batches +140 / 440", text)  # what the providers answered so far
    assert re.search(r"openai +completed +1 +40", text)
    assert re.search(r"openai +in_progress +1 +400", text)
    # 36 paid answers at $0.0001; the 4 cached ones cost nothing.
    assert "spent       $0.0036 of ~$0.05 estimated, budget $1.00" in text
    # 25% done in the two minutes since it was submitted: six more minutes.
    assert "ETA         ~6m 00s (from the batches' progress)" in text
    since = datetime.fromtimestamp(T0 + 60).strftime("%H:%M:%S")
    assert (
        f"waiting for batch batch_enh (openai) in_progress since {since} (2m 00s), 100/400 done"
        in text
    )


def test_no_eta_while_a_batch_has_no_progress_and_a_wait_can_be_shown() -> None:
    state, clock = _fed()
    state.batch_submitted(BatchInfo("batch_new", BatchState.VALIDATING, 8), "s2", "openai", 8)
    assert state.eta() is None
    assert "ETA         -" in _render(state)
    state.wait_started("room in openai's queue for gpt-4o-mini")
    clock.now += 75
    since = datetime.fromtimestamp(T0 + 180).strftime("%H:%M:%S")
    assert f"waiting for room in openai's queue for gpt-4o-mini (since {since}, 1m 15s)" in _render(
        state
    )
    state.wait_ended()
    assert "room in openai's queue" not in _render(state)


def test_requests_gathered_for_the_next_batch_are_what_it_waits_for() -> None:
    clock = Clock()
    state = RunState("run r.jsonl", total=10, batch_mode=True, clock=clock)
    for i in range(10):
        state.request_started(_request(i, "t"))
    assert state.waiting_for() == (
        "10 requests not in a running batch yet (the next batch is being gathered)"
    )
    text = _render(state)
    assert re.search(r"t +0 / 10", text)


def test_an_ended_batch_whose_results_cannot_be_read_yet_is_what_it_waits_for() -> None:
    clock = Clock()
    state = RunState("run r.jsonl", total=8, batch_mode=True, clock=clock)
    for i in range(8):
        state.request_started(_request(i, "t"))
    state.batch_submitted(BatchInfo("batch_a", BatchState.IN_PROGRESS, 8), "s1", "acme", 8)
    clock.now += 30
    state.batch_status_changed(BatchInfo("batch_a", BatchState.COMPLETED, 8, 8), None, "acme")
    clock.now += 90
    ended = datetime.fromtimestamp(clock.now - 90).strftime("%H:%M:%S")
    assert state.waiting_for() == (
        f"batch batch_a (acme) ended completed at {ended}; its results cannot be read yet (1m 30s)"
    )
    assert "not in a running batch yet" not in _render(state)
    # Readable now: collecting its answers is no wait.
    state.batch_status_changed(
        BatchInfo("batch_a", BatchState.COMPLETED, 8, 8, results_ready=True),
        BatchState.COMPLETED,
        "acme",
    )
    assert "cannot be read" not in (state.waiting_for() or "")
    # Readable: its answers are being stored, as their requests finish.
    assert state.waiting_for() == "batch batch_a (acme) ended completed: storing its answers, 0/8"
    requests = [_request(i, "t") for i in range(8)]
    answers = [dataclasses.replace(_response(r, 0.001), batch_id="batch_a") for r in requests]
    outcomes = [RequestOutcome(r, a, None) for r, a in zip(requests, answers, strict=True)]
    state.requests_finished(outcomes[:5])
    assert state.waiting_for() == "batch batch_a (acme) ended completed: storing its answers, 5/8"
    state.requests_finished(outcomes[5:])
    assert state.waiting_for() is None  # every request answered: nothing left to wait for


def test_immediate_runs_estimate_from_the_rate_requests_finish_at() -> None:
    clock = Clock()
    state = RunState("run r.jsonl", total=100, stage_of=lambda t: "requests", clock=clock)
    for i in range(25):
        r = _request(i, "x")
        state.request_started(r)
        clock.now += 2
        state.request_finished(r, _response(r, None), None)
    # 25 in 50 s: 75 more take 150 s.
    assert state.eta() == (150.0, "from the requests' rate")
    assert state.waiting_for() is None
    text = _render(state)
    assert re.search(r"requests +25 / 100", text)
    assert "$0.00 (+25 unpriced calls)" in text


def test_plain_lines_come_on_state_changes_and_on_the_interval_not_per_request() -> None:
    state, _ = _fed()
    state.clock = time.time
    out = io.StringIO()
    with ProgressObserver(state, style="lines", interval=0.3, stream=out):
        for i in range(500):  # many requests finishing: no line each
            r = _request(1000 + i, "enhance_pos")
            state.request_started(r)
            state.request_finished(r, _response(r, 0.0), None)
        time.sleep(0.6)
        state.batch_status_changed(
            BatchInfo("batch_enh", BatchState.COMPLETED, 400, 390, 10), None, "openai"
        )
        time.sleep(0.35)
    lines = out.getvalue().splitlines()
    assert 3 <= len(lines) <= 8, lines
    assert all(line.startswith("lexibatch: ") for line in lines)
    assert "requests 541 done" in lines[1]
    assert "(cluster 41/41, enhance 500/900)" in lines[1]
    assert "batches openai 1 completed, openai 1 in_progress" in lines[0]
    assert any("batches openai 2 completed" in line for line in lines[-2:])
    assert "spent $0.0036 of ~$0.05 estimated, budget $1.00" in lines[-1]


def test_the_live_dashboard_leaves_its_last_frame() -> None:
    state, _ = _fed()
    out = io.StringIO()
    with ProgressObserver(state, style="live", stream=out):
        pass
    assert "in batches" in out.getvalue() and "waiting for batch batch_enh" in out.getvalue()


def test_quiet_shows_nothing() -> None:
    state, _ = _fed()
    out = io.StringIO()
    with ProgressObserver(state, quiet=True, style="lines", interval=0.01, stream=out):
        time.sleep(0.05)
    assert out.getvalue() == ""


def test_shards_held_for_queue_room_are_what_it_waits_for() -> None:
    state, clock = _fed()
    state.batch_waiting_for_room("s7", "openai", "gpt-4o-mini", True)
    state.batch_waiting_for_room("s8", "openai", "gpt-4o-mini", True)
    clock.now += 30
    since = datetime.fromtimestamp(T0 + 180).strftime("%H:%M:%S")
    assert state.waiting_for() == (
        f"room in openai's batch queue for gpt-4o-mini: 2 shards held (since {since}, 30s)"
    )
    state.batch_waiting_for_room("s7", "openai", "gpt-4o-mini", False)
    state.batch_waiting_for_room("s8", "openai", "gpt-4o-mini", False)
    assert (state.waiting_for() or "").startswith("batch batch_enh (openai) in_progress")


def test_the_dashboard_registers_beside_the_built_in_plugins() -> None:
    from plugins.manager import get_plugin_manager

    manager = get_plugin_manager()
    state = RunState("test")
    # Validated like any plugin: its hooks exist (the queue-room one is optional).
    manager.register(state, name="test-dashboard", origin="test")
    try:
        assert manager.pm.is_registered(state)
    finally:
        manager.pm.unregister(state)


def test_progress_to_a_file_is_plain_lines_and_to_a_terminal_a_live_dashboard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    state, _ = _fed()
    with Path(os.devnull).open("w") as file:
        assert ProgressObserver(state, stream=file).style == "lines"
    assert ProgressObserver(state, stream=io.StringIO()).style == "lines"
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert ProgressObserver(state, stream=terminal).style == "live"
    finally:
        os.close(leader)
        os.close(follower)
    # rich's own variables still decide for a stream that is no terminal.
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert ProgressObserver(state, stream=io.StringIO()).style == "live"
    monkeypatch.setenv("FORCE_COLOR", "")
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    assert ProgressObserver(state, stream=io.StringIO()).style == "lines"
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    assert ProgressObserver(state, stream=io.StringIO()).style == "live"
    assert ProgressObserver(state, quiet=True, stream=io.StringIO()).style == "none"


def test_with_no_standard_error_nothing_is_shown_and_nothing_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, _ = _fed()
    monkeypatch.setattr("sys.stderr", None)
    observer = ProgressObserver(state, interval=0.01)
    assert observer.style == "none"
    with observer:
        time.sleep(0.05)
