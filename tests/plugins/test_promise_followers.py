"""A promise's follower is told in the turn it settles, whichever way it settles."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plugins.batch.fates import fail_future
from plugins.batch.promise import BatchPromise, BatchRequest, Follower, settle_answers
from providers.errors import BatchExpiredError
from providers.types import Response, Usage

RESPONSE = Response("out", "text", Usage(3, 4), 0.5, "openai", "m", "batch", "k")


class _Told(Follower):
    """Notes each promise it is told of, and what it held by then."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str]] = []

    def settled(self, promise: BatchPromise) -> None:
        assert promise.done()
        if promise.cancelled():
            outcome = "cancelled"
        elif promise.exception() is not None:
            outcome = type(promise.exception()).__name__
        else:
            outcome = promise.result().output
        self.told.append((promise.key, outcome))


def _pending(key: str, promise: BatchPromise) -> BatchRequest:
    return BatchRequest(key, "m", None, None, None, promise)


async def test_a_follower_is_told_at_once_of_each_way_a_promise_settles() -> None:
    follower = _Told()
    answered, failed, cancelled = BatchPromise("a"), BatchPromise("f"), BatchPromise("c")
    for promise in (answered, failed, cancelled):
        promise.follow(follower)
    assert follower.told == []
    answered.set_result(RESPONSE)
    # Told in the same turn: no turn of the loop in between.
    assert follower.told == [("a", "out")]
    fail_future(failed, BatchExpiredError("expired", provider="openai"))
    assert follower.told[-1] == ("f", "BatchExpiredError")
    assert cancelled.cancel()
    assert follower.told[-1] == ("c", "cancelled")
    # Told once: a promise settles once.
    with pytest.raises(asyncio.InvalidStateError):
        answered.set_result(RESPONSE)
    assert len(follower.told) == 3


async def test_a_follower_of_a_settled_promise_is_told_as_it_follows() -> None:
    follower = _Told()
    promise = BatchPromise("k")
    promise.set_result(RESPONSE)
    promise.follow(follower)
    assert follower.told == [("k", "out")]


async def test_settling_a_chunk_of_answers_tells_their_followers_in_order() -> None:
    follower = _Told()
    promises = [BatchPromise(f"k{i}") for i in range(5)]
    for promise in promises[1:]:
        promise.follow(follower)
    pending = {p.key: _pending(p.key, p) for p in promises}
    answered = [(pending[p.key], RESPONSE) for p in promises]
    settle_answers(answered, pending)
    assert follower.told == [(f"k{i}", "out") for i in range(1, 5)]
    assert pending == {} and all(p.result() is RESPONSE for p in promises)


async def test_a_follower_and_callbacks_of_one_promise_are_each_told_their_own_way() -> None:
    follower = _Told()
    called: list[str] = []
    waited = BatchPromise("w")
    waited.follow(follower)
    waited.add_done_callback(lambda p: called.append(p.key))
    waiting = asyncio.ensure_future(_awaited(waited))
    later = BatchPromise("l")
    later.add_done_callback(lambda p: called.append(p.key))
    later.follow(follower)
    await asyncio.sleep(0)
    pending = {"w": _pending("w", waited), "l": _pending("l", later)}
    settle_answers([(pending["w"], RESPONSE), (pending["l"], RESPONSE)], pending)
    # The follower at once; callbacks soon after, as a future's.
    assert follower.told == [("w", "out"), ("l", "out")] and called == []
    await asyncio.sleep(0)
    assert called == ["w", "l"]
    assert await waiting is RESPONSE


async def _awaited(promise: BatchPromise) -> Any:
    return await promise
