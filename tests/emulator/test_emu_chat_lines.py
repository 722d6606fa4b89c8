"""Batch chat lines rendered from a template are byte for byte those of the general path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.emulator.answers import canonical, chat_completion
from providers.emulator.chatlines import ChatLines
from providers.emulator.ids import Stem
from providers.emulator.rng import body_seed

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "word": {"type": "string"},
        "level": {"type": "string", "enum": ["A1", "B2", "C2 \u00e9\u00e8"]},
        "score": {"type": "number", "minimum": 0.5, "maximum": 9.5},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["word", "level", "score", "tags"],
    "additionalProperties": False,
}


def _fmt(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "E", "schema": schema, "strict": True}}


def _body(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "response_format": _fmt(SCHEMA),
        **extra,
    }


def _general(cid: str, body: dict[str, Any], seed: int, invalid: bool, stem: Stem, i: int) -> bytes:
    answer = chat_completion(
        body, seed, invalid=invalid, ids=stem, index=i, created=1_700_000_000, batch=True
    )
    line = {
        "id": stem.batch_req(i),
        "custom_id": cid,
        "response": {"status_code": 200, "request_id": stem.request_hex(i), "body": answer.body},
        "error": None,
    }
    return orjson.dumps(line)


CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("plain", _body("Give the level of the word number 7."), False),
    ("unicode and escapes", _body('Quote "this" \\ and \u00fcber \U0001f600\n\ttab'), False),
    ("parts", _body([{"type": "text", "text": "two"}, {"type": "text", "text": " parts"}]), False),
    ("schema-invalid", _body("broken on purpose"), True),
    ("truncated", _body("cut short", max_completion_tokens=3), False),
    ("max_tokens", _body("cut short", max_tokens=2), False),
    ("roomy max", _body("not cut", max_tokens=4000, temperature=1.0), False),
    ("odd custom id", _body("x"), False),
    ("marker model", {**_body("x"), "model": "gpt-4o-mini@schema-invalid"}, False),
    ("no model", {k: v for k, v in _body("x").items() if k != "model"}, False),
    ("schema not an object", _body("x", response_format=_fmt(["not", "a", "schema"])), False),
    (
        "schema missing",
        {**_body("x"), "response_format": {"type": "json_schema", "json_schema": {"name": "E"}}},
        False,
    ),
    (
        "nested",
        _body(
            "deep",
            response_format=_fmt(
                {
                    "type": "object",
                    "properties": {"inner": SCHEMA, "n": {"type": "integer"}},
                    "required": ["inner", "n"],
                }
            ),
        ),
        False,
    ),
]


@pytest.mark.parametrize(("name", "body", "invalid"), CASES, ids=[c[0] for c in CASES])
def test_a_rendered_line_is_the_general_paths_bytes(
    name: str, body: dict[str, Any], invalid: bool
) -> None:
    stem = Stem()
    lines = ChatLines(stem, 1_700_000_000)
    cid = 'odd "id" \u00e9' if name == "odd custom id" else f"lb-{name}"
    for i in (0, 7, 123_456):
        seed = body_seed(42, canonical(body))
        rendered = lines.render(cid, body, seed, invalid=invalid, index=i)
        assert rendered is not None
        expected = _general(cid, body, seed, invalid, stem, i)
        assert rendered.line == expected
        answer = orjson.loads(expected)["response"]["body"]["usage"]
        assert (rendered.input_tokens, rendered.output_tokens) == (
            answer["prompt_tokens"],
            answer["completion_tokens"],
        )


@pytest.mark.parametrize(
    "body",
    [
        _body("t", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        _body("two answers", n=2),
        _body("json mode", response_format={"type": "json_object"}),
        _body("plain text", response_format={"type": "text"}),
        {k: v for k, v in _body("no format").items() if k != "response_format"},
        {
            **_body("schema null"),
            "response_format": {"type": "json_schema", "json_schema": {"schema": None}},
        },
    ],
    ids=["tools", "n", "json-mode", "text", "no-format", "null-schema"],
)
def test_other_shapes_are_left_to_the_general_path(body: dict[str, Any]) -> None:
    lines = ChatLines(Stem(), 1)
    assert lines.render("c", body, 1, invalid=False, index=0) is None


def test_formats_equal_in_value_but_not_in_bytes_are_planned_apart() -> None:
    # 1 == 1.0 in Python, but the prompt's schema text (and so the tokens) differ.
    stem = Stem()
    lines = ChatLines(stem, 1_700_000_000)
    whole = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 1}}}
    real = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 1.0}}}
    tokens = []
    for schema in (whole, real, whole):
        body = _body("n", response_format=_fmt(schema))
        rendered = lines.render("c", body, 5, invalid=False, index=1)
        assert rendered is not None
        assert rendered.line == _general("c", body, 5, False, stem, 1)
        tokens.append(rendered.input_tokens)
    assert tokens[0] == tokens[2] != tokens[1]
