"""Checking requests before anything is sent: every field, and the schema as a schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import BaseModel

from providers.errors import InputError, UserError
from providers.types import Message, Request
from providers.validation import check_request, request_problems, schema_problem, schema_validator

GOOD_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "pattern": "^[a-z]+$"}},
    "required": ["answer"],
    "additionalProperties": False,
}


class Answer(BaseModel):
    answer: str


def _request(**fields: Any) -> Request:
    base: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": (Message("user", "hi"),),
        "json_schema": GOOD_SCHEMA,
    }
    base.update(fields)
    return Request(**base)


def test_a_good_request_and_a_model_class_request_pass() -> None:
    assert request_problems(_request(max_tokens=10, temperature=0.5, extras={"seed": 1})) == []
    assert request_problems(Request("gpt-4o-mini", (Message("user", "x"),), Answer)) == []


def test_a_request_without_a_schema_may_ask_for_its_own_output_format() -> None:
    extras = {"response_format": {"type": "json_object"}, "generationConfig": {"topP": 0.5}}
    assert request_problems(_request(json_schema=None, extras=extras)) == []
    # With a schema, generation settings other than the answer's format stay free.
    assert request_problems(_request(extras={"generationConfig": {"topP": 0.5}})) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"model": 5}, "model must be a non-empty string, got 5 (int)"),
        ({"model": "  "}, "model must be a non-empty string"),
        ({"max_tokens": "ten"}, "max_tokens must be a positive integer, got 'ten'"),
        ({"max_tokens": -5}, "max_tokens must be a positive integer, got -5 (int)"),
        ({"max_tokens": True}, "max_tokens must be a positive integer, got True (bool)"),
        ({"temperature": "hot"}, "temperature must be a number from 0 to 2, got 'hot'"),
        ({"temperature": 3}, "temperature must be a number from 0 to 2, got 3 (int)"),
        ({"temperature": float("nan")}, "temperature must be a number from 0 to 2"),
        ({"extras": [1]}, "extras must be an object of provider body fields, got [1] (list)"),
        ({"extras": {"model": "other"}}, "extras may not set 'model'"),
        ({"extras": {"stream": True}}, "extras may not set 'stream'"),
        ({"extras": {"seed": object()}}, "extras must be plain JSON values"),
        # The schema asks for the structured answer: an extra may not ask for another.
        (
            {"extras": {"response_format": {"type": "text"}}},
            "extras may not set 'response_format' on a request with a schema",
        ),
        ({"extras": {"tools": []}}, "extras may not set 'tools' on a request with a schema"),
        ({"extras": {"output_config": {}}}, "extras may not set 'output_config' on a request"),
        (
            {"extras": {"generationConfig": {"topP": 0.5, "responseMimeType": "text/plain"}}},
            "extras may not set generationConfig.responseMimeType on a request with a schema",
        ),
        ({"messages": ()}, "messages must be a non-empty list of messages"),
        ({"messages": (Message("robot", "x"),)}, "messages[0].role must be system, user"),  # type: ignore[arg-type]
        ({"messages": (Message("user", 7),)}, "messages[0].content must be a string, got 7"),  # type: ignore[arg-type]
        ({"messages": ("hi",)}, "messages[0] must be a Message, got 'hi'"),
        ({"task": 3}, "task must be a string, got 3 (int)"),
        ({"schema_name": "has space"}, "schema_name must be 1 to 64 letters"),
        # Unusual values the common case must leave to the full check.
        ({"temperature": float("inf")}, "temperature must be a number from 0 to 2"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer, got 0 (int)"),
        ({"schema_name": ["a"]}, "schema_name must be 1 to 64 letters"),
        ({"response_model": dict}, "response_model must be a pydantic model class"),
        ({"messages": [Message("user", "x"), Message("user", 7)]}, "messages[1].content"),  # type: ignore[arg-type]
    ],
)
def test_each_bad_field_is_named(fields: dict[str, Any], expected: str) -> None:
    problems = request_problems(_request(**fields))
    assert len(problems) == 1 and problems[0].startswith(expected), problems


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # The typo of the issue: jsonschema.UnknownType at validation time.
        (
            {"type": "object", "properties": {"a": {"type": "strin"}}},
            "properties/a/type: 'strin' is not a JSON Schema type",
        ),
        # A pattern that is not a regex: re.error at validation time.
        ({"type": "string", "pattern": "[a-"}, "'[a-' is not a 'regex'"),
        (
            {"type": "object", "patternProperties": {"(": {"type": "string"}}},
            "is not a 'regex'",
        ),
        ({"type": "object", "properties": 5}, "properties: 5 is not of type 'object'"),
        ({"$ref": "#/$defs/missing"}, "(root)/$ref: '#/$defs/missing' does not point inside"),
        ({"$ref": "https://example.com/s.json"}, "does not point inside the schema"),
        ({"type": "string", "minLength": -1}, "minLength: -1 is less than the minimum of 0"),
    ],
)
def test_a_schema_is_checked_as_a_schema(schema: dict[str, Any], expected: str) -> None:
    problem = schema_problem(schema)
    assert problem is not None and expected in problem, problem
    problems = request_problems(_request(json_schema=schema))
    assert problems == [f"schema: {problem}"]


def test_refs_that_resolve_and_anchors_pass() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/word"}},
        "$defs": {"word": {"type": "string"}},
    }
    assert schema_problem(schema) is None
    assert schema_problem({"enum": ["$ref", "pattern"], "examples": [{"pattern": "["}]}) is None


def test_all_problems_of_a_request_are_reported_at_once() -> None:
    with pytest.raises(InputError) as info:
        check_request(_request(model="", max_tokens=0, temperature=9), where="f.jsonl:3")
    assert isinstance(info.value, UserError)
    assert len(info.value.problems) == 3
    assert all(p.startswith("f.jsonl:3: ") for p in info.value.problems)
    assert str(info.value).startswith("f.jsonl:3: model must be a non-empty string")


def test_a_schema_is_checked_and_compiled_once_per_distinct_schema() -> None:
    schema = copy.deepcopy(GOOD_SCHEMA)
    schema["properties"]["extra_field_for_this_test"] = {"type": "integer"}  # type: ignore[index]
    first = schema_validator(schema)
    assert schema_validator(schema) is first  # the same object: found by identity
    assert schema_validator(copy.deepcopy(schema)) is first  # an equal one: found by content
    with pytest.raises(InputError, match="strin"):
        schema_validator({"type": "strin"})


def test_answers_are_judged_and_worded_as_jsonschema_does() -> None:
    checker = schema_validator(
        {
            "type": "object",
            "properties": {"word": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["word", "n"],
            "additionalProperties": False,
        }
    )
    assert checker.first_error({"word": "cat", "n": 1}) is None
    assert checker.first_error({"word": "cat", "n": 1.0}) is None  # 1.0 is an integer
    assert list(checker.iter_errors({"word": "cat", "n": 2})) == []
    wrong = checker.first_error({"word": 3, "n": 1})
    assert wrong is not None
    assert list(wrong.absolute_path) == ["word"]
    assert wrong.message == "3 is not of type 'string'"
    extra = checker.first_error({"word": "cat", "n": 1, "more": True})
    assert extra is not None and "more" in extra.message
    assert len(list(checker.iter_errors({"word": 3}))) == 2


def test_regular_expressions_in_a_schema_keep_pythons_meaning() -> None:
    # Python's \w matches "é"; ECMA 262's (another engine's) does not.
    checker = schema_validator({"type": "string", "pattern": "^\\w+$"})
    assert checker.first_error("café") is None
    assert checker.first_error("two words") is not None
    not_words = schema_validator({"type": "string", "pattern": "^\\W+$"})
    assert not_words.first_error("é") is not None
    assert not_words.first_error("?!") is None
