"""Answers judged the short way are exactly what :func:`build_response` makes of them.

A batch's answers to raw-JSON-schema requests (what ``lexibatch run`` sends),
to text requests and to response-model requests are judged in one pass by
:func:`~plugins.batch.answers.judge_items`; each verdict, each response
field, each stored text and each error must be the same as judging the
answer alone through :func:`~plugins.results.build_response` (and
:func:`~plugins.results.storable`), the general way.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

import plugins.batch.answers
from plugins.batch.answers import judge_items
from plugins.batch.promise import BatchPromise, BatchRequest
from plugins.results import build_response, storable, unusable
from providers.errors import BatchCancelledError, LexibatchError, ProviderError
from providers.schema import make_strict
from providers.types import Completion, ItemResult, Response, Usage


class Entry(BaseModel):
    word: str
    level: str


# What `lexibatch run` sends: a request file's schema in the strict form.
FLAT = make_strict(Entry.model_json_schema())
# Keywords jsonschema alone decides (regular expressions, formats).
PATTERNED = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]$"},
        "when": {"type": "string", "format": "date"},
        "tags": {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}},
    },
    "required": ["code", "when"],
    "additionalProperties": False,
}
NESTED = {
    "type": "object",
    "properties": {
        "word": {"type": "string", "minLength": 1},
        "senses": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "gloss": {"type": "string"},
                    "rank": {"type": "integer", "minimum": 1},
                    "score": {"type": "number", "maximum": 1},
                    "pos": {"enum": ["noun", "verb", "adj"]},
                    "example": {"type": ["string", "null"]},
                },
                "required": ["gloss", "rank", "pos"],
                "additionalProperties": False,
            },
        },
        "meta": {
            "type": "object",
            "properties": {"source": {"$ref": "#/$defs/source"}},
            "required": ["source"],
        },
    },
    "required": ["word", "senses"],
    "$defs": {"source": {"type": "string", "const": "gcide"}},
}
# Schemas that cannot check answers (sent before schemas were checked up front).
UNKNOWN_TYPE = {"type": "object", "properties": {"answer": {"type": "strin"}}}
BAD_REGEX = {"type": "object", "properties": {"answer": {"type": "string", "pattern": "[a-"}}}

SHAPES: dict[str, Any] = {
    "flat": FLAT,
    "patterned": PATTERNED,
    "nested": NESTED,
    "unknown-type": UNKNOWN_TYPE,
    "bad-regex": BAD_REGEX,
    "text": None,
    "model": Entry,
}

SENSE = {"gloss": "a small cat", "rank": 1, "score": 0.5, "pos": "noun", "example": None}

# (content, finish reason, refusal): every kind of answer a batch line brings.
ANSWERS: dict[str, tuple[Any, Any, str | None]] = {
    "flat-fits": ('{"word": "cat", "level": "A1"}', "stop", None),
    "flat-fits-spaced": ('  {"level":"B2" ,\n "word":"dog"}  ', "end_turn", None),
    "flat-missing": ('{"word": "cat"}', "stop", None),
    "flat-extra": ('{"word": "cat", "level": "A1", "more": 1}', "stop", None),
    "flat-wrong-type": ('{"word": 3, "level": "A1"}', "stop", None),
    "flat-duplicate-key": ('{"word": "a", "word": "b", "level": "C1"}', "stop", None),
    "patterned-fits": ('{"code": "AB1", "when": "2024-01-31", "tags": {"x-a": 2}}', "stop", None),
    "patterned-off-pattern": ('{"code": "ab1", "when": "2024-01-31"}', "stop", None),
    "patterned-not-a-date": ('{"code": "AB1", "when": "yesterday"}', "stop", None),
    "patterned-bad-tag": (
        '{"code": "AB1", "when": "2024-01-31", "tags": {"x-a": "2"}}',
        "stop",
        None,
    ),
    "nested-fits": (
        orjson.dumps({"word": "cat", "senses": [SENSE], "meta": {"source": "gcide"}}).decode(),
        "stop",
        None,
    ),
    "nested-float-as-integer": (
        orjson.dumps({"word": "cat", "senses": [{**SENSE, "rank": 2.0}]}).decode(),
        "stop",
        None,
    ),
    "nested-deep-wrong": (
        orjson.dumps({"word": "cat", "senses": [{**SENSE, "pos": "adverb"}]}).decode(),
        "stop",
        None,
    ),
    "nested-bad-ref": (
        orjson.dumps({"word": "cat", "senses": [SENSE], "meta": {"source": "x"}}).decode(),
        "stop",
        None,
    ),
    "nested-empty-list": ('{"word": "cat", "senses": []}', "stop", None),
    "unicode": ('{"word": "caf\\u00e9 \u732b", "level": "A1", "answer": "\u00e9"}', "stop", None),
    "answer-fits": ('{"answer": "yes"}', "stop", None),
    "not-json": ("Sure! Here is the JSON you asked for.", "stop", None),
    "empty": ("", "stop", None),
    "two-values": ('{"word": "cat", "level": "A1"} {}', "stop", None),
    "a-list": ('[{"word": "cat", "level": "A1"}]', "stop", None),
    "huge-int": ('{"word": "cat", "level": "A1", "n": 123456789012345678901234567}', "stop", None),
    "truncated": ('{"word": "cat", "lev', "length", None),
    "truncated-anthropic": ('{"word": "cat", "lev', "max_tokens", None),
    "truncated-but-fits": ('{"word": "cat", "level": "A1"}', "length", None),
    "content-filter": ('{"word": "ca', "content_filter", None),
    "content-filter-fits": ('{"word": "cat", "level": "A1"}', "content_filter", None),
    "refused": ("", "stop", "I can't help with that"),
    "refused-with-content": ('{"word": "cat", "level": "A1"}', "stop", "no"),
    "no-finish-reason": ('{"word": "cat", "level": "A1"}', None, None),
    "unknown-finish-reason": ('{"word": "cat", "level": "A1"}', "whatever", None),
    "odd-finish-reason": ('{"word": "cat", "level": "A1"}', ["stop"], None),
    "lone-surrogate-escaped": ('{"word": "\\ud800", "level": "A1"}', "stop", None),
    "lone-surrogate-raw": ('{"word": "\ud800", "level": "A1"}', "stop", None),
    "text-lone-surrogate": ("a lone \ud800 surrogate", "stop", None),
    "not-text": (42, "stop", None),
    "bytes": (b'{"word": "cat", "level": "A1"}', "stop", None),
    "null-content": (None, "stop", None),
}

USAGE = Usage(12, 7)


def _pending(key: str, shape: Any) -> BatchRequest:
    model = shape if isinstance(shape, type) else None
    schema = None if isinstance(shape, type) else shape
    return BatchRequest(key, "gpt-4o-mini", "bench", model, schema, BatchPromise(key))


def _line(key: str, content: Any, finish: Any, refusal: str | None) -> ItemResult:
    completion = Completion(content, USAGE, "gpt-4o-mini-2024", f"req-{key}", finish, refusal)
    return ItemResult(key, completion=completion)


def _judge(items: list[ItemResult], waiting: dict[str, BatchRequest]) -> Any:
    def cancelled(error: BatchCancelledError) -> LexibatchError:
        return error

    return judge_items(
        items,
        waiting=waiting,
        stubs={},
        done=set(),
        billed=set(),
        costs=lambda model, usage, mode: (0.25, 0.5),
        provider="openai",
        batch_id="batch_1",
        now=100.0,
        cancelled=cancelled,
    )


def _alone(pending: BatchRequest, item: ItemResult) -> Response | ProviderError:
    """What the general way makes of one answer: judge_items' own verdict, answer by answer."""
    completion = item.completion
    assert completion is not None
    try:
        response = build_response(
            pending,  # type: ignore[arg-type]
            completion,
            provider="openai",
            mode="batch",
            cost_usd=0.25,
            batch_id="batch_1",
        )
        storable(response.text)
    except ProviderError as exc:
        return exc
    except Exception as exc:
        return unusable(exc, completion.content, "openai")
    return response


def _same_response(got: Response, expected: Response) -> None:
    for field in dataclasses.fields(Response):
        mine, theirs = getattr(got, field.name), getattr(expected, field.name)
        assert type(mine) is type(theirs), field.name
        assert mine == theirs, field.name
    if isinstance(expected.output, BaseModel):
        assert got.output.model_dump() == expected.output.model_dump()
    else:
        # The same value to the byte: 1.0 stays a float, key order is kept.
        assert orjson.dumps(got.output) == orjson.dumps(expected.output)


def _same_error(got: LexibatchError, expected: ProviderError) -> None:
    assert type(got) is type(expected)
    assert isinstance(got, ProviderError)
    assert got.to_dict() == expected.to_dict()
    assert getattr(got, "content", None) == getattr(expected, "content", None)
    assert str(got) == str(expected)


def _check_chunk(cases: list[tuple[str, Any, tuple[Any, Any, str | None]]]) -> int:
    """Judge ``cases`` as one chunk and each alone; returns how many answers fit."""
    waiting = {key: _pending(key, shape) for key, shape, _ in cases}
    items = [_line(key, *answer) for key, _, answer in cases]
    judged = _judge(items, waiting)
    succeeded = {pending.key: response for pending, response in judged.succeeded}
    failed = {pending.key: error for pending, error in judged.failed}
    assert len(succeeded) + len(failed) == len(cases)
    stored = {row.key: row for row in judged.results}
    # Every answer read is billed, whatever its verdict.
    assert sorted(c.key for c in judged.calls) == sorted(waiting)
    for key, _, _ in cases:
        item = next(i for i in items if i.custom_id == key)
        expected = _alone(waiting[key], item)
        if isinstance(expected, Response):
            assert key in succeeded, f"{key}: {failed.get(key)!r}"
            _same_response(succeeded[key], expected)
            row = stored[key]
            assert (row.text, row.model, row.request_id, row.batch_id, row.usage) == (
                expected.text,
                expected.model,
                expected.request_id,
                expected.batch_id,
                expected.usage,
            )
            assert row.text.encode() == item.completion.content.encode()  # type: ignore[union-attr]
        else:
            assert key in failed, f"{key} should fail with {expected!r}"
            assert key not in stored
            _same_error(failed[key], expected)
    return len(succeeded)


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_every_answer_gets_the_verdict_and_response_build_response_gives(shape: str) -> None:
    cases = [(f"{shape}-{name}", SHAPES[shape], answer) for name, answer in ANSWERS.items()]
    fits = _check_chunk(cases)
    # The table holds answers that fit each usable shape, and answers that do not.
    assert 0 < fits < len(cases) or shape in ("unknown-type", "bad-regex")


def test_shapes_mixed_in_one_chunk_are_each_judged_by_their_own_schema() -> None:
    rng = random.Random(18)
    cases = []
    for i in range(400):
        shape = rng.choice(list(SHAPES))
        name = rng.choice(list(ANSWERS))
        cases.append((f"k{i}-{shape}-{name}", SHAPES[shape], ANSWERS[name]))
    _check_chunk(cases)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "null"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["cat", "", "AB1", "2024-01-31", "x-y", "noun", "gcide", "\u00e9"])
    if kind == "int":
        return rng.choice([0, 1, 2, -5, 2**62])
    if kind == "float":
        return rng.choice([0.5, 1.0, 2.5, -0.0])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = ["word", "level", "code", "when", "senses", "gloss", "rank", "pos", "meta", "x-a"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _mutated(rng: random.Random, value: Any) -> Any:
    """``value`` with one field dropped, retyped or added, somewhere inside."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        change = rng.choice(["drop", "retype", "deeper"])
        if change == "drop":
            return {k: v for k, v in value.items() if k != key}
        if change == "retype":
            return {**value, key: _random_value(rng, 2)}
        return {**value, key: _mutated(rng, value[key])}
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return [*value[:i], _mutated(rng, value[i]), *value[i + 1 :]]
    return _random_value(rng, 1)


def test_generated_answers_near_and_far_from_each_schema_agree() -> None:
    rng = random.Random(6)
    fitting = {
        "flat": {"word": "cat", "level": "A1"},
        "patterned": {"code": "AB1", "when": "2024-01-31", "tags": {"x-a": 2}},
        "nested": {"word": "cat", "senses": [SENSE, {**SENSE, "pos": "verb"}]},
    }
    cases = []
    for i in range(600):
        shape = rng.choice(list(fitting))
        value = fitting[shape]
        for _ in range(rng.randrange(3)):
            value = _mutated(rng, value)
        if rng.random() < 0.1:
            value = _random_value(rng)
        content = json.dumps(value)
        if rng.random() < 0.1:
            content = content[: rng.randrange(len(content) + 1)]
        finish = rng.choice(["stop", "stop", "stop", "length", "content_filter", None])
        cases.append((f"g{i}-{shape}", SHAPES[shape], (content, finish, None)))
    fits = _check_chunk(cases)
    # Both verdicts are well represented.
    assert 100 < fits < 500


def test_a_fitting_raw_schema_answer_is_parsed_once_and_never_judged_the_long_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def no_long_way(*args: Any, **kwargs: Any) -> Any:
        calls.append("build_response")
        raise AssertionError("judged the long way")

    parsed: list[Any] = []
    loads = orjson.loads

    class CountingOrjson:
        @staticmethod
        def loads(text: Any) -> Any:
            parsed.append(text)
            return loads(text)

    monkeypatch.setattr(plugins.batch.answers, "build_response", no_long_way)
    monkeypatch.setattr(plugins.batch.answers, "orjson", CountingOrjson)
    waiting = {f"k{i}": _pending(f"k{i}", FLAT) for i in range(50)}
    items = [_line(key, '{"word": "cat", "level": "A1"}', "stop", None) for key in waiting]
    judged = _judge(items, waiting)
    assert len(judged.succeeded) == 50 and judged.failed == [] and calls == []
    assert len(parsed) == 50
    outputs = [response.output for _, response in judged.succeeded]
    assert outputs == [{"word": "cat", "level": "A1"}] * 50


def test_a_raw_schema_answer_that_does_not_fit_says_where_as_the_long_way_does() -> None:
    waiting = {"k": _pending("k", NESTED)}
    content = orjson.dumps({"word": "cat", "senses": [{**SENSE, "rank": 0}]}).decode()
    judged = _judge([_line("k", content, "stop", None)], waiting)
    [(_, error)] = judged.failed
    assert error.message == (
        "answer does not fit the schema: senses/0/rank: 0 is less than the minimum of 1"
    )
