"""Requests started and finished reach the observers in groups, one hook call per loop turn."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pluggy

from plugins import hookspecs
from plugins.dashboard import RunState
from plugins.hookspecs import PROJECT, hookimpl
from plugins.requestevents import RequestEvents, RequestOutcome
from providers.errors import ProviderError
from providers.types import Message, Request, Response, Usage


def _request(i: int, task: str = "t") -> Request:
    return Request("gpt-4o-mini", (Message("user", f"q{i}"),), task=task)


def _response(request: Request, cost: float | None = 0.25, *, cached: bool = False) -> Response:
    return Response(
        None, "{}", Usage(1, 1), cost, "openai", request.model, "batch", request.key, cached=cached
    )


class _Grouped:
    """Records each call of the grouped hooks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    @hookimpl
    def requests_started(self, requests: Any) -> None:
        self.calls.append(("started", [r.key for r in requests]))

    @hookimpl
    def requests_finished(self, outcomes: Any) -> None:
        self.calls.append(("finished", [o.request.key for o in outcomes]))


class _OneByOne:
    """A plugin written for the per-request hooks."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    @hookimpl
    def request_started(self, request: Request) -> None:
        self.events.append(f"started {request.key}")

    @hookimpl
    def request_finished(self, request: Request, response: Any, error: Any) -> None:
        self.events.append(f"finished {request.key} {'error' if error else 'ok'}")


def _manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return pm


async def test_one_call_per_loop_turn_carries_every_request_of_that_turn() -> None:
    grouped = _Grouped()
    events = RequestEvents(_manager(grouped).hook)
    first = [_request(i) for i in range(1000)]
    for r in first:
        events.started(r)
    assert grouped.calls == []  # told when the loop turns, not per request
    await asyncio.sleep(0)
    for r in first[:600]:
        events.finished(r, _response(r), None)
    second = [_request(i) for i in range(1000, 1003)]
    for r in second:
        events.started(r)
    await asyncio.sleep(0)
    assert grouped.calls == [
        ("started", [r.key for r in first]),
        # What started in a turn is told before what finished in it.
        ("started", [r.key for r in second]),
        ("finished", [r.key for r in first[:600]]),
    ]


async def test_a_plugin_of_the_per_request_hooks_is_still_told_each_request_at_once() -> None:
    seen: list[str] = []
    grouped = _Grouped()
    events = RequestEvents(_manager(_OneByOne(seen), grouped).hook)
    ok, bad = _request(1), _request(2)
    events.started(ok)
    events.started(bad)
    events.finished(ok, _response(ok), None)
    events.finished(bad, None, ProviderError("boom"))
    # At the moment each happened, before the loop turns.
    assert seen == [
        f"started {ok.key}",
        f"started {bad.key}",
        f"finished {ok.key} ok",
        f"finished {bad.key} error",
    ]
    await asyncio.sleep(0)
    assert grouped.calls == [("started", [ok.key, bad.key]), ("finished", [ok.key, bad.key])]


def test_outside_a_running_loop_they_are_told_at_once_and_an_empty_flush_tells_nothing() -> None:
    grouped = _Grouped()
    events = RequestEvents(_manager(grouped).hook)
    r = _request(7)
    events.started(r)
    assert grouped.calls == [("started", [r.key])]
    events.finished(r, _response(r), None)
    assert grouped.calls == [("started", [r.key]), ("finished", [r.key])]
    events.flush()  # nothing gathered: no call
    assert grouped.calls == [("started", [r.key]), ("finished", [r.key])]


async def test_flush_tells_what_is_gathered_now_and_the_turn_adds_nothing_twice() -> None:
    grouped = _Grouped()
    events = RequestEvents(_manager(grouped).hook)
    r = _request(3)
    events.started(r)
    events.finished(r, _response(r), None)
    events.flush()
    await asyncio.sleep(0)
    assert grouped.calls == [("started", [r.key]), ("finished", [r.key])]


async def test_the_dashboard_counts_grouped_outcomes_per_stage_with_exact_spend() -> None:
    state = RunState("run", stage_of=lambda task: task or "requests")
    events = RequestEvents(_manager(state).hook)
    answered = [_request(i, "a") for i in range(3)]
    cached, failed = _request(10, "b"), _request(11, "b")
    for r in [*answered, cached, failed]:
        events.started(r)
    await asyncio.sleep(0)
    assert state.stages["a"].started == 3 and state.stages["b"].started == 2
    for r in answered:
        events.finished(r, _response(r, 0.1), None)
    events.finished(cached, _response(cached, 0.0, cached=True), None)
    events.finished(failed, None, ProviderError("boom"))
    unpriced = _request(12, "a")  # finished before the dashboard heard it start
    events.finished(unpriced, _response(unpriced, None), None)
    await asyncio.sleep(0)
    a, b = state.stages["a"], state.stages["b"]
    assert (a.started, a.succeeded, a.failed, a.cached) == (4, 4, 0, 0)
    assert (b.started, b.succeeded, b.failed, b.cached) == (2, 1, 1, 1)
    assert state.spent == Decimal("0.3") and state.unpriced == 1
    # The per-request methods count the same way.
    one = _request(13, "a")
    state.request_started(one)
    state.request_finished(one, _response(one, 0.1), None)
    assert state.stages["a"].succeeded == 5 and state.spent == Decimal("0.4")
    assert RequestOutcome(one, None, None).request is one
