"""``BatchPromise``: awaited like a future, settled by the strategy, light while it waits."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest

from plugins.batch.promise import BatchPromise
from providers.errors import BatchExpiredError


async def test_a_caller_waiting_before_the_result_gets_it() -> None:
    promise = BatchPromise("k")
    waiting = asyncio.ensure_future(_awaited(promise))
    await asyncio.sleep(0)
    assert not promise.done() and not waiting.done()
    promise.set_result("answer")  # type: ignore[arg-type]
    assert await waiting == "answer"
    assert promise.done() and promise.result() == "answer" and promise.exception() is None


async def test_a_settled_promise_answers_at_once_and_raises_its_typed_error() -> None:
    done = BatchPromise("k")
    done.set_result("answer")  # type: ignore[arg-type]
    assert await done == "answer"
    failed = BatchPromise("k2")
    error = BatchExpiredError("expired", provider="openai")
    failed.set_exception(error)
    assert failed.exception() is error
    with pytest.raises(BatchExpiredError):
        await failed
    with pytest.raises(BatchExpiredError):
        failed.result()


async def test_a_caller_that_stops_waiting_does_not_cancel_the_request() -> None:
    promise = BatchPromise("k")
    waiting = asyncio.ensure_future(_awaited(promise))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not promise.done()
    promise.set_exception(BatchExpiredError("expired", provider="openai"))
    assert isinstance(promise.exception(), BatchExpiredError)


async def test_cancel_settles_once_and_callbacks_run_after_settling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, bool]] = []
    promise = BatchPromise("k")
    promise.add_done_callback(lambda p: seen.append((p.key, p.cancelled())))
    waiting = asyncio.ensure_future(_awaited(promise))
    await asyncio.sleep(0)
    assert promise.cancel() and not promise.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(asyncio.CancelledError):
        promise.result()
    await asyncio.sleep(0)
    assert seen == [("k", True)]
    late = BatchPromise("late")
    late.set_exception(BatchExpiredError("expired", provider="openai"))
    late.add_done_callback(lambda p: seen.append((p.key, p.cancelled())))
    await asyncio.sleep(0)
    assert seen[-1] == ("late", False)
    with pytest.raises(asyncio.InvalidStateError):
        late.set_result("again")  # type: ignore[arg-type]
    with pytest.raises(asyncio.InvalidStateError):
        BatchPromise("open").result()
    del late
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_queued_promise_nobody_awaits_yet_holds_no_future() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        promises = [BatchPromise(f"k{i}") for i in range(1000)]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # An asyncio future alone is 144 bytes; a promise with its key is below that.
    assert (after - before) / len(promises) < 144


async def _awaited(promise: BatchPromise) -> Any:
    return await promise
