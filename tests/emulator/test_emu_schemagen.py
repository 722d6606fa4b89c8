"""The emulator's answers fit their schemas, recursive ones included, and always end."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import orjson
import pytest

from providers.emulator import Emulator
from providers.emulator.rng import Rng
from providers.emulator.schemagen import compile_schema

LINKED = {
    "type": "object",
    "properties": {"word": {"type": "string"}, "next": {"$ref": "#"}},
    "required": ["word"],
}
TREE = {
    "$defs": {
        "sense": {
            "type": "object",
            "properties": {
                "gloss": {"type": "string"},
                "subsenses": {"type": "array", "items": {"$ref": "#/$defs/sense"}},
                "see": {"anyOf": [{"$ref": "#/$defs/sense"}, {"type": "null"}]},
            },
            "required": ["gloss", "subsenses", "see"],
            "additionalProperties": False,
        }
    },
    "type": "object",
    "properties": {"senses": {"type": "array", "items": {"$ref": "#/$defs/sense"}}},
    "required": ["senses"],
}
ENDLESS = {
    "type": "object",
    "properties": {"word": {"type": "string"}, "next": {"$ref": "#"}},
    "required": ["word", "next"],
}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("schema", [LINKED, TREE], ids=["optional-self", "tree"])
def test_a_recursive_schema_gets_finite_answers_that_fit_it(schema: dict[str, Any]) -> None:
    generate = compile_schema(schema)
    depths = set()
    for seed in range(200):
        value = generate(Rng(seed), 0)
        jsonschema.validate(value, schema)
        depths.add(_depth(value))
    # Nested, but cut off: past the depth limit only required properties follow.
    assert max(depths) >= 4 and max(depths) <= 20


def test_an_optional_self_reference_is_followed_to_the_depth_limit_then_left_out() -> None:
    value = compile_schema(LINKED)(Rng(7), 0)
    chain = 0
    while "next" in value:
        value, chain = value["next"], chain + 1
    assert chain == 6 and set(value) == {"word"}


def test_a_schema_no_finite_value_fits_ends_with_null_where_the_cycle_closes() -> None:
    value = compile_schema(ENDLESS)(Rng(3), 0)
    links = 0
    while value is not None:
        assert value["word"].startswith("synthetic word ")
        value, links = value["next"], links + 1
    assert 10 < links < 100


def test_the_emulator_answers_a_recursive_schema_over_http(emu: Emulator) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "swift"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "entry", "schema": ENDLESS},
        },
    }
    with httpx.Client(base_url=emu.base_url, headers={"Authorization": "Bearer x"}) as http:
        answer = http.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200
    content = orjson.loads(answer.json()["choices"][0]["message"]["content"])
    assert content["word"].startswith("synthetic word ") and "next" in content
