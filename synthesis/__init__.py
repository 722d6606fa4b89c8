"""Dictionary synthesis on the provider-neutral Connector.

Word lists and source definitions go in (:mod:`synthesis.wordlist`,
:mod:`synthesis.sources`); the pipeline (:mod:`synthesis.pipeline`) clusters
source definitions into meanings, writes one modern definition per meaning,
and enhances it with the components of :mod:`synthesis.components`;
:mod:`synthesis.runner` writes the entries as JSONL. Nothing here knows which
provider or strategy answers: only :class:`providers.protocol.Connector`.

The names below are loaded when first used, so that a command of the engine
(``lexibatch run``) started through this package's command line does not
import the dictionary's pipeline it never runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthesis.components import COMPONENTS, Component, parse_components
    from synthesis.enhance import enhance_definitions_parallel
    from synthesis.models import Definition, DictionaryEntry, SourceDefinition, Word
    from synthesis.pipeline import STAGES, DefinitionSynthesizer, synthesize_many
    from synthesis.runner import SynthesisSummary, load_done, run_synthesis
    from synthesis.sources import CombinedSources, GcideSource, JsonlSource, build_sources
    from synthesis.wordlist import WordListReport, read_word_list

# Each public name → the module that defines it.
_HOME = {
    "COMPONENTS": "components",
    "Component": "components",
    "parse_components": "components",
    "enhance_definitions_parallel": "enhance",
    "Definition": "models",
    "DictionaryEntry": "models",
    "SourceDefinition": "models",
    "Word": "models",
    "STAGES": "pipeline",
    "DefinitionSynthesizer": "pipeline",
    "synthesize_many": "pipeline",
    "SynthesisSummary": "runner",
    "load_done": "runner",
    "run_synthesis": "runner",
    "CombinedSources": "sources",
    "GcideSource": "sources",
    "JsonlSource": "sources",
    "build_sources": "sources",
    "WordListReport": "wordlist",
    "read_word_list": "wordlist",
}

__all__ = [
    "COMPONENTS",
    "STAGES",
    "CombinedSources",
    "Component",
    "Definition",
    "DefinitionSynthesizer",
    "DictionaryEntry",
    "GcideSource",
    "JsonlSource",
    "SourceDefinition",
    "SynthesisSummary",
    "Word",
    "WordListReport",
    "build_sources",
    "enhance_definitions_parallel",
    "load_done",
    "parse_components",
    "read_word_list",
    "run_synthesis",
    "synthesize_many",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
