"""Judging a chunk of result lines in one pass: the same answers and errors as one by one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from plugins.batch.answers import judge_items
from plugins.batch.promise import BatchPromise, BatchRequest, settle_answers
from plugins.results import build_response
from providers.errors import (
    BatchCancelledError,
    BatchExpiredError,
    InvalidRequestError,
    LexibatchError,
    SchemaValidationError,
    TruncatedError,
    UnusableAnswerError,
)
from providers.stop import StopReason
from providers.types import Completion, ItemResult, Response, Usage


class Entry(BaseModel):
    word: str
    level: str


USAGE = Usage(10, 5)
GOOD = '{"word": "cat", "level": "A1"}'


def _pending(key: str, **kwargs: Any) -> BatchRequest:
    return BatchRequest(
        key,
        kwargs.get("model", "gpt-4o-mini"),
        "task",
        kwargs.get("response_model", Entry),
        kwargs.get("json_schema"),
        BatchPromise(key),
    )


def _line(key: str, content: str = GOOD, **fields: Any) -> ItemResult:
    completion = Completion(
        content,
        fields.get("usage", USAGE),
        fields.get("model", "gpt-4o-mini-2024"),
        fields.get("request_id", f"req-{key}"),
        fields.get("finish_reason", "stop"),
        fields.get("refusal"),
    )
    return ItemResult(key, completion=completion)


def _judge(items: list[ItemResult], waiting: dict[str, BatchRequest], **kwargs: Any) -> Any:
    def costs(model: str, usage: Usage, mode: Any) -> tuple[float | None, float | None]:
        return 0.5, 1.0

    def cancelled(error: BatchCancelledError) -> LexibatchError:
        return kwargs.get("cancel_error", error)

    return judge_items(
        items,
        waiting=waiting,
        stubs=kwargs.get("stubs", {}),
        done=kwargs.get("done", set()),
        billed=kwargs.get("billed", set()),
        costs=costs,
        provider="openai",
        batch_id="batch_1",
        now=123.0,
        cancelled=cancelled,
    )


def test_a_valid_answer_is_the_response_build_response_makes_with_its_two_rows() -> None:
    pending = _pending("k1")
    item = _line("k1", finish_reason="stop")
    judged = _judge([item], {"k1": pending})
    assert item.completion is not None
    expected = build_response(
        pending,  # type: ignore[arg-type]
        item.completion,
        provider="openai",
        mode="batch",
        cost_usd=0.5,
        batch_id="batch_1",
    )
    [(answered, response)] = judged.succeeded
    assert answered is pending and response == expected
    assert response.output == Entry(word="cat", level="A1")
    assert response.stop_reason is StopReason.END and response.model == "gpt-4o-mini-2024"
    [call] = judged.calls
    assert (call.key, call.model, call.mode, call.cost_usd, call.immediate_cost_usd) == (
        "k1",
        "gpt-4o-mini-2024",
        "batch",
        0.5,
        1.0,
    )
    assert (call.batch_id, call.ts, call.usage) == ("batch_1", 123.0, USAGE)
    [result] = judged.results
    assert (result.key, result.text, result.model, result.request_id, result.batch_id) == (
        "k1",
        GOOD,
        "gpt-4o-mini-2024",
        "req-k1",
        "batch_1",
    )
    assert judged.failed == []


def test_answers_that_do_not_validate_fail_with_their_typed_error_and_are_still_billed() -> None:
    keys = ["cut", "refused", "unfit", "odd_stop", "not_text"]
    waiting = {k: _pending(k) for k in keys}
    items = [
        _line("cut", '{"word": "ca', finish_reason="length"),
        _line("refused", "", refusal="I can't help with that"),
        _line("unfit", '{"word": "cat"}'),
        # A stop reason of a shape no provider sends: this answer alone is unusable.
        _line("odd_stop", GOOD, finish_reason=["stop"]),
        _line("not_text", 42),
    ]
    judged = _judge(items, waiting)
    errors = {pending.key: error for pending, error in judged.failed}
    assert isinstance(errors["cut"], TruncatedError)
    refused = errors["refused"]
    assert isinstance(refused, InvalidRequestError) and refused.code == "refusal"
    assert isinstance(errors["unfit"], SchemaValidationError)
    assert isinstance(errors["odd_stop"], UnusableAnswerError)
    assert isinstance(errors["not_text"], SchemaValidationError)
    assert judged.succeeded == [] and judged.results == []
    # Paid for all the same.
    assert sorted(c.key for c in judged.calls) == sorted(keys)


def test_an_answer_the_store_cannot_write_fails_alone() -> None:
    waiting = {
        "bad": _pending("bad"),
        "bad_text": _pending("bad_text", response_model=None),
        "good": _pending("good"),
    }
    items = [
        _line("bad", '{"word": "\ud800", "level": "A1"}'),
        _line("bad_text", "a lone \ud800 surrogate"),
        _line("good"),
    ]
    judged = _judge(items, waiting)
    errors = {pending.key: error for pending, error in judged.failed}
    # A model's validator refuses the text before the store would.
    assert isinstance(errors["bad"], SchemaValidationError)
    # A plain text answer reaches the store's check, and fails alone.
    assert isinstance(errors["bad_text"], UnusableAnswerError)
    assert errors["bad_text"].code == "unstorable_answer"
    assert [r.key for r in judged.results] == ["good"]
    assert [p.key for p, _ in judged.succeeded] == ["good"]


def test_requests_without_a_model_are_judged_by_their_schema_or_as_text() -> None:
    schema = {"type": "object", "required": ["word"], "properties": {"word": {"type": "string"}}}
    waiting = {
        "raw": _pending("raw", response_model=None, json_schema=schema),
        "text": _pending("text", response_model=None),
        "raw_bad": _pending("raw_bad", response_model=None, json_schema=schema),
    }
    items = [_line("raw", '{"word": "cat"}'), _line("text", "hello"), _line("raw_bad", "{}")]
    judged = _judge(items, waiting)
    outputs = {pending.key: response.output for pending, response in judged.succeeded}
    assert outputs == {"raw": {"word": "cat"}, "text": "hello"}
    [(pending, error)] = judged.failed
    assert pending.key == "raw_bad" and isinstance(error, SchemaValidationError)


def test_lines_judged_once_billed_once_and_only_for_waiting_requests() -> None:
    waiting = {"k1": _pending("k1"), "k2": _pending("k2"), "k3": _pending("k3")}
    stub = _pending("gone")
    done = {"k3"}
    items = [_line("k1"), _line("k1"), _line("k2"), _line("k3"), _line("foreign"), _line("gone")]
    judged = _judge(items, waiting, done=done, billed={"k2"}, stubs={"gone": stub})
    assert [p.key for p, _ in judged.succeeded] == ["k1", "k2", "gone"]
    assert [c.key for c in judged.calls] == ["k1", "gone"]
    assert [r.key for r in judged.results] == ["k1", "k2", "gone"]
    assert done == {"k1", "k2", "k3", "gone"}


def test_error_lines_fail_and_a_cancelled_line_asks_whether_the_user_cancelled() -> None:
    waiting = {"k1": _pending("k1"), "k2": _pending("k2"), "k3": _pending("k3")}
    final = BatchCancelledError("cancelled by the user", provider="openai")
    items = [
        ItemResult("k1", error=BatchExpiredError("expired", provider="openai")),
        ItemResult("k2", error=BatchCancelledError("cancelled", provider="openai")),
        ItemResult("k3"),
    ]
    judged = _judge(items, waiting, cancel_error=final)
    errors = {pending.key: error for pending, error in judged.failed}
    assert isinstance(errors["k1"], BatchExpiredError)
    assert errors["k2"] is final
    # Neither an answer nor an error: it may be billed, so it is not sent again.
    assert isinstance(errors["k3"], UnusableAnswerError) and not errors["k3"].retryable
    assert "holds neither an answer nor an error" in errors["k3"].message
    assert judged.calls == [] and judged.results == []


async def test_settling_answers_tells_waiting_and_queued_callers_and_forgets_them() -> None:
    waited, queued, settled = _pending("w"), _pending("q"), _pending("s")
    assert waited.future is not None and queued.future is not None and settled.future is not None
    seen: list[str] = []
    waiting = asyncio.ensure_future(_awaited(waited.future))
    queued.future.add_done_callback(lambda p: seen.append(p.key))
    settled.future.set_exception(BatchExpiredError("expired", provider="openai"))
    settled.future.exception()
    response = Response("out", "text", USAGE, 0.5, "openai", "m", "batch", "w")
    pending = {"w": waited, "q": queued, "s": settled, "other": _pending("other")}
    settle_answers([(waited, response), (queued, response), (settled, response)], pending)
    assert list(pending) == ["other"]
    assert await waiting is response
    await asyncio.sleep(0)
    assert seen == ["q"] and queued.future.result() is response
    # Settled before: left as it was.
    assert isinstance(settled.future.exception(), BatchExpiredError)
    nobody = _pending("n")
    settle_answers([(nobody, response)], {})
    assert nobody.future is not None and nobody.future.done()
    assert nobody.future.result() is response


async def _awaited(promise: BatchPromise) -> Any:
    return await promise


def test_a_promise_settled_by_settle_answers_cannot_be_settled_again() -> None:
    pending = _pending("k")
    assert pending.future is not None
    response = Response("out", "text", USAGE, 0.5, "openai", "m", "batch", "k")
    settle_answers([(pending, response)], {})
    with pytest.raises(asyncio.InvalidStateError):
        pending.future.set_result(response)


async def test_settling_answers_sets_a_plain_future_through_its_own_methods() -> None:
    pending = _pending("f")
    future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    pending.future = future  # type: ignore[assignment]
    response = Response("out", "text", USAGE, 0.5, "openai", "m", "batch", "f")
    settle_answers([(pending, response)], {"f": pending})
    assert future.result() is response
