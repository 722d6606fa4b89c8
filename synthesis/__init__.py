"""Dictionary synthesis on the provider-neutral Connector.

Word lists and source definitions go in (:mod:`synthesis.wordlist`,
:mod:`synthesis.sources`); the pipeline (:mod:`synthesis.pipeline`) clusters
source definitions into meanings, writes one modern definition per meaning,
and enhances it with the components of :mod:`synthesis.components`;
:mod:`synthesis.runner` writes the entries as JSONL. Nothing here knows which
provider or strategy answers: only :class:`providers.protocol.Connector`.
"""

from synthesis.components import COMPONENTS, Component, parse_components
from synthesis.enhance import enhance_definitions_parallel
from synthesis.models import Definition, DictionaryEntry, SourceDefinition, Word
from synthesis.pipeline import (
    STAGES,
    DefinitionSynthesizer,
    synthesize_many,
)
from synthesis.runner import SynthesisSummary, load_done, run_synthesis
from synthesis.sources import CombinedSources, GcideSource, JsonlSource, build_sources
from synthesis.wordlist import WordListReport, read_word_list

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
