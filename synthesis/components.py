"""The enhancement components, in one table.

A component is one question asked of the model about a meaning
(definition-level) or about the word (word-level): a Jinja2 template, the
response model the answer must fit, the ``task`` name the connector routes
to a model by, and the field of the definition or entry its answer fills.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from providers.errors import InputError
from synthesis.models import (
    AntonymsResponse,
    CollocationsResponse,
    Definition,
    DictionaryEntry,
    DomainResponse,
    EtymologyResponse,
    ExamplesResponse,
    FactsResponse,
    FrequencyBandResponse,
    GrammarPatternsResponse,
    LevelResponse,
    Pronunciation,
    PronunciationResponse,
    RegionalVariantsResponse,
    RegisterResponse,
    SynonymsResponse,
    UsageNoteResponse,
    WordFormsResponse,
)

__all__ = [
    "ALL_COMPONENTS",
    "COMPONENTS",
    "DEFINITION_COMPONENTS",
    "WORD_COMPONENTS",
    "Component",
    "Level",
    "definition_components",
    "parse_components",
    "word_components",
]

Level = Literal["definition", "word"]


@dataclass(frozen=True, slots=True)
class Component:
    """One enhancement: a prompt, its answer's shape, and where the answer goes.

    Attributes:
        name: the name users select it by (``--components``); also the
            field it fills on the definition or entry.
        level: ``definition`` (asked once per meaning) or ``word`` (once per word).
        template: the prompt template's file name.
        response_model: the pydantic class of the answer.
        task: the task tag the connector routes to a model by.
        extract: turns an answer into the value stored in the field.
        max_tokens: the output budget of one answer.
    """

    name: str
    level: Level
    template: str
    response_model: type[BaseModel]
    task: str
    extract: Callable[[Any], Any]
    max_tokens: int = 200

    def apply(self, target: Definition | DictionaryEntry, answer: BaseModel) -> None:
        """Store ``answer`` in ``target``'s field of this component's name."""
        setattr(target, self.name, self.extract(answer))


def _definition(
    name: str, model: type[BaseModel], extract: Callable[[Any], Any], max_tokens: int = 200
) -> Component:
    return Component(name, "definition", f"{name}.j2", model, name, extract, max_tokens)


def _word(
    name: str, model: type[BaseModel], extract: Callable[[Any], Any], max_tokens: int = 300
) -> Component:
    return Component(name, "word", f"{name}.j2", model, name, extract, max_tokens)


#: Every component, by name, in the order they are listed and run.
COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        _definition("synonyms", SynonymsResponse, lambda a: list(a.synonyms), 120),
        _definition("antonyms", AntonymsResponse, lambda a: list(a.antonyms), 100),
        _definition("examples", ExamplesResponse, lambda a: list(a.examples), 200),
        _definition("cefr_level", LevelResponse, lambda a: a.level, 20),
        _definition("frequency_band", FrequencyBandResponse, lambda a: a.band, 20),
        _definition("register", RegisterResponse, lambda a: a.register, 20),
        _definition("domain", DomainResponse, lambda a: a.domain, 30),
        _definition("regional_variants", RegionalVariantsResponse, lambda a: list(a.variants), 150),
        _definition("grammar_patterns", GrammarPatternsResponse, lambda a: list(a.patterns), 150),
        _definition("collocations", CollocationsResponse, lambda a: list(a.collocations), 150),
        _definition("usage_notes", UsageNoteResponse, lambda a: a.note, 150),
        _word(
            "pronunciation",
            PronunciationResponse,
            lambda a: Pronunciation(us=a.us, uk=a.uk),
            80,
        ),
        _word("etymology", EtymologyResponse, lambda a: a.etymology, 200),
        _word("word_forms", WordFormsResponse, lambda a: list(a.forms), 300),
        _word("facts", FactsResponse, lambda a: list(a.facts), 250),
    )
}

#: Names of the definition-level components, in table order.
DEFINITION_COMPONENTS: tuple[str, ...] = tuple(
    n for n, c in COMPONENTS.items() if c.level == "definition"
)
#: Names of the word-level components, in table order.
WORD_COMPONENTS: tuple[str, ...] = tuple(n for n, c in COMPONENTS.items() if c.level == "word")
#: Every component name, in table order.
ALL_COMPONENTS: tuple[str, ...] = tuple(COMPONENTS)

_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ALL_COMPONENTS,
    "definition": DEFINITION_COMPONENTS,
    "word": WORD_COMPONENTS,
}


def parse_components(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """The component names a ``--components`` value selects, in table order.

    ``spec`` is a comma-separated list (or an iterable of such items) of
    component names and the groups ``all``, ``definition`` and ``word``;
    ``None`` means ``all``, ``none`` selects nothing.

    Raises:
        InputError: an unknown name (the message lists the valid ones), or a
            value naming nothing (``""``, ``","``): it is more likely an unset
            variable than a wish for every component, which costs the most.
    """
    if spec is None:
        return ALL_COMPONENTS
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [n.strip().lower().replace("-", "_") for item in items for n in item.split(",")]
    names = [n for n in names if n]
    if not names:
        raise InputError(
            f"--components names no component — choose from: all, definition, word, none, "
            f"{', '.join(ALL_COMPONENTS)}"
        )
    chosen: set[str] = set()
    unknown: list[str] = []
    for name in names:
        if name in _GROUPS:
            chosen.update(_GROUPS[name])
        elif name in COMPONENTS:
            chosen.add(name)
        elif name != "none":
            unknown.append(name)
    if unknown:
        raise InputError(
            f"unknown component{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} — "
            f"choose from: all, definition, word, none, {', '.join(ALL_COMPONENTS)}"
        )
    return tuple(n for n in ALL_COMPONENTS if n in chosen)


def definition_components(names: Iterable[str]) -> list[Component]:
    """The definition-level components among ``names``, in table order."""
    wanted = set(names)
    return [COMPONENTS[n] for n in DEFINITION_COMPONENTS if n in wanted]


def word_components(names: Iterable[str]) -> list[Component]:
    """The word-level components among ``names``, in table order."""
    wanted = set(names)
    return [COMPONENTS[n] for n in WORD_COMPONENTS if n in wanted]
