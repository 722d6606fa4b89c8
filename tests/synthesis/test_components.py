"""The component table, --components parsing, response schemas and templates."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
from pydantic import BaseModel

from providers.errors import InputError
from providers.schema import schema_for
from synthesis import models
from synthesis.components import (
    ALL_COMPONENTS,
    COMPONENTS,
    DEFINITION_COMPONENTS,
    WORD_COMPONENTS,
    parse_components,
)
from synthesis.models import Definition, DictionaryEntry
from synthesis.prompts import render, template_names

EXPECTED_DEFINITION = {
    "synonyms",
    "antonyms",
    "examples",
    "cefr_level",
    "frequency_band",
    "register",
    "domain",
    "regional_variants",
    "grammar_patterns",
    "collocations",
    "usage_notes",
}
EXPECTED_WORD = {"pronunciation", "etymology", "word_forms", "facts"}

RESPONSE_MODELS = [
    getattr(models, name)
    for name in models.__all__
    if name.endswith("Response") and isinstance(getattr(models, name), type)
]


def test_table_has_every_component_at_its_level() -> None:
    assert set(DEFINITION_COMPONENTS) == EXPECTED_DEFINITION
    assert set(WORD_COMPONENTS) == EXPECTED_WORD
    for name, component in COMPONENTS.items():
        assert component.name == name
        assert component.task == name
        assert component.template == f"{name}.j2"
        target = Definition if component.level == "definition" else DictionaryEntry
        assert name in target.model_fields, f"{name} fills no field of {target.__name__}"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, ALL_COMPONENTS),
        ("all", ALL_COMPONENTS),
        ("definition", DEFINITION_COMPONENTS),
        ("word", WORD_COMPONENTS),
        ("none", ()),
        ("synonyms, cefr-level", ("synonyms", "cefr_level")),
        ("etymology,synonyms,synonyms", ("synonyms", "etymology")),
        (["word", "examples"], ("examples", *WORD_COMPONENTS)),
    ],
)
def test_parse_components(spec: Any, expected: tuple[str, ...]) -> None:
    assert parse_components(spec) == expected


@pytest.mark.parametrize("spec", ["", " , ", []])
def test_a_value_naming_no_component_is_refused(spec: Any) -> None:
    with pytest.raises(InputError, match="names no component — choose from: all, definition"):
        parse_components(spec)


def test_unknown_component_lists_the_valid_ones() -> None:
    with pytest.raises(InputError) as err:
        parse_components("synonyms,colour,sizes")
    message = str(err.value)
    assert "'colour'" in message and "'sizes'" in message
    for name in ("all", "definition", "word", *ALL_COMPONENTS):
        assert name in message


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=lambda m: m.__name__)
def test_response_schemas_are_strict_and_closed(model: type[BaseModel]) -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                assert set(node["required"]) == set(node["properties"])
                assert node["additionalProperties"] is False
            if node.get("type") == "object":
                assert "properties" in node, "free-form object in a response schema"
            for refused in ("maxItems", "minItems", "minimum", "maximum", "maxLength", "default"):
                assert refused not in node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dict(schema_for(model)))


def test_every_component_and_step_has_a_template() -> None:
    names = set(template_names())
    for component in COMPONENTS.values():
        assert component.template in names
    assert {"cluster.j2", "synthesize.j2", "generate.j2"} <= names


@pytest.mark.parametrize("name", DEFINITION_COMPONENTS)
def test_definition_templates_render_word_pos_and_meaning(name: str) -> None:
    text = render(
        COMPONENTS[name].template,
        word="bank",
        pos="noun",
        definition="the land along the side of a river",
    )
    assert "bank" in text
    assert "(noun)" in text
    assert "the land along the side of a river" in text
    assert "{{" not in text and "{%" not in text
    assert "\n\n\n" not in text


@pytest.mark.parametrize("name", WORD_COMPONENTS)
def test_word_templates_render_word_and_context(name: str) -> None:
    text = render(
        COMPONENTS[name].template,
        word="bank",
        parts_of_speech=["noun", "verb"],
        senses=["land beside a river", "a place that keeps money"],
        hint="[Of Scand. origin.]",
    )
    assert "bank" in text
    assert "(noun, verb)" in text
    assert "land beside a river | a place that keeps money" in text
    if name == "etymology":
        assert "[Of Scand. origin.]" in text
    bare = render(COMPONENTS[name].template, word="bank", parts_of_speech=[], senses=[], hint=None)
    assert "Senses" not in bare and "()" not in bare


def test_step_templates_render() -> None:
    cluster = render(
        "cluster.j2",
        word="bank",
        definitions=[
            {"part_of_speech": "noun", "text": "land by a river"},
            {"part_of_speech": None, "text": "a money house"},
        ],
    )
    assert "1. (noun) land by a river" in cluster
    assert "2. a money house" in cluster
    synth = render(
        "synthesize.j2",
        word="bank",
        meanings=[{"part_of_speech": "noun", "texts": ["land by a river", "a slope"]}],
    )
    assert "1. (noun)\n- land by a river\n- a slope" in synth
    assert "bank" in render("generate.j2", word="bank")


def test_missing_template_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("synonyms.j2", word="bank", pos="noun")
