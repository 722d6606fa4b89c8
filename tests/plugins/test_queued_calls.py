"""The futures ``submit_all`` hands out settle with their promises, as ``generate`` would end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from plugins import hookimpl
from plugins.batch.fates import fail_future
from plugins.batch.promise import BatchPromise, BatchRequest, settle_answers
from plugins.factory import open_connector
from plugins.queuedcalls import QueuedCalls
from providers.errors import BatchExpiredError, LexibatchError
from providers.types import Message, Request, Response, Usage


def _request(text: str) -> Request:
    return Request(model="gpt-4o-mini", messages=(Message("user", text),), task="t")


def _response(request: Request) -> Response:
    return Response("out", "text", Usage(3, 4), 0.5, "openai", "m", "batch", request.key)


class _Events:
    """Finished requests as the connector's observers would hear of them."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.told: list[tuple[str, Response | None, LexibatchError | None]] = []
        self.fail_on = fail_on

    def finished(self, request: Request, response: Any, error: Any) -> None:
        if request.key == self.fail_on:
            raise RuntimeError("observer broke")
        self.told.append((request.key, response, error))


def _calls(events: _Events) -> tuple[QueuedCalls, dict[str, asyncio.Future[Response]]]:
    inflight: dict[str, asyncio.Future[Response]] = {}
    # Told as RequestEvents is: its one method QueuedCalls uses.
    told: Any = events
    return QueuedCalls(inflight, told), inflight


async def test_each_outcome_reaches_its_future_and_the_observers_in_the_same_turn() -> None:
    events = _Events()
    queued, inflight = _calls(events)
    loop = asyncio.get_running_loop()
    requests = [_request(f"q{i}") for i in range(3)]
    promises = [BatchPromise(r.key) for r in requests]
    futures = [loop.create_future() for _ in requests]
    for request, future, promise in zip(requests, futures, promises, strict=True):
        queued.add(request, future, promise)
    assert len(queued) == 3 and set(inflight) == {r.key for r in requests}
    answered, failed, cancelled = requests
    response = _response(answered)
    pending = {answered.key: BatchRequest.of(answered, promises[0])}
    settle_answers([(pending[answered.key], response)], pending)
    error = BatchExpiredError("expired", provider="openai")
    fail_future(promises[1], error)
    promises[2].cancel()
    # No turn of the event loop in between: each future is settled already.
    assert futures[0].result() is response
    assert futures[1].exception() is error
    assert futures[2].cancelled()
    assert events.told == [(answered.key, response, None), (failed.key, None, error)]
    # Settled requests are under way no more: an identical one is asked afresh.
    assert inflight == {} and len(queued) == 0
    assert cancelled.key not in inflight


async def test_a_future_its_caller_cancelled_is_left_as_it_is_and_not_reported() -> None:
    events = _Events()
    queued, inflight = _calls(events)
    request = _request("gone")
    future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    promise = BatchPromise(request.key)
    queued.add(request, future, promise)
    future.cancel()
    promise.set_result(_response(request))
    assert future.cancelled() and events.told == [] and inflight == {}


async def test_an_observer_that_fails_is_logged_and_the_other_answers_still_arrive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests = [_request(f"r{i}") for i in range(3)]
    events = _Events(fail_on=requests[1].key)
    queued, _ = _calls(events)
    loop = asyncio.get_running_loop()
    promises = [BatchPromise(r.key) for r in requests]
    futures = [loop.create_future() for _ in requests]
    for request, future, promise in zip(requests, futures, promises, strict=True):
        queued.add(request, future, promise)
    pending = {r.key: BatchRequest.of(r, p) for r, p in zip(requests, promises, strict=True)}
    answered = [(pending[r.key], _response(r)) for r in requests]
    with caplog.at_level(logging.ERROR, logger="lexibatch"):
        settle_answers(answered, pending)
    assert [f.result().key for f in futures] == [r.key for r in requests]
    assert [key for key, _, _ in events.told] == [requests[0].key, requests[2].key]
    assert "an observer of finished requests failed: observer broke" in caplog.text


async def test_a_promise_settled_before_it_is_followed_settles_its_future_at_once() -> None:
    events = _Events()
    queued, inflight = _calls(events)
    request = _request("early")
    promise = BatchPromise(request.key)
    response = _response(request)
    promise.set_result(response)
    future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    queued.add(request, future, promise)
    assert future.result() is response and inflight == {}
    assert events.told == [(request.key, response, None)]


class _Finished:
    """The batched observer hook, as the dashboard implements it."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, bool]] = []

    @hookimpl
    def requests_finished(self, outcomes: Any) -> None:
        self.outcomes.extend((o.request.key, o.error is None) for o in outcomes)


async def test_submit_all_futures_are_answered_by_the_batch_and_observers_hear_of_each(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    seen = _Finished()
    connector.manager.register(seen, name="test-finished", origin="test")
    try:
        connector.enable_batch_mode()
        schema = {"type": "object", "properties": {"word": {"type": "string"}}}
        requests = [
            Request(
                model="gpt-4o-mini",
                messages=(Message("user", f"word {i}"),),
                json_schema=schema,
                task="t",
            )
            for i in range(40)
        ]
        futures = await connector.submit_all(requests, checked=True)
        assert not any(f.done() for f in futures)
        await connector.execute_batch()
        assert all(f.done() and isinstance(f.result().output, dict) for f in futures)
        # Told once per loop turn: let the last turn's outcomes reach the hook.
        await asyncio.sleep(0)
        assert sorted(seen.outcomes) == sorted((r.key, True) for r in requests)
        # Answered: the same request again is the stored answer, not a wait.
        again = await connector.submit_all(requests[:1], checked=True)
        assert again[0].done() and again[0].result().cached
    finally:
        connector.manager.pm.unregister(seen)
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 40
