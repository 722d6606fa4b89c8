"""Data models of the dictionary: words, source definitions, meanings, entries.

Two kinds live here. The *dictionary* models (:class:`Word`,
:class:`SourceDefinition`, :class:`Definition`, :class:`DictionaryEntry`, ...)
are what the pipeline builds and writes. The *response* models (suffix
``Response``) are what one model call must answer; they are sent as strict
JSON schemas, so every field is required (``Optional`` where an answer may
be absent), there are no free-form maps, and list lengths are capped after
validation rather than in the schema (Anthropic's strict mode refuses
``maxItems``). Every response field is output tokens paid once per call, so
names are short and there is nothing optional to fill in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "AntonymsResponse",
    "ClusterResponse",
    "CollocationsResponse",
    "Definition",
    "DictionaryEntry",
    "DomainResponse",
    "EntryMetadata",
    "EtymologyResponse",
    "ExamplesResponse",
    "FactsResponse",
    "FrequencyBandResponse",
    "GeneratedDefinition",
    "GeneratedDefinitionsResponse",
    "GrammarPatternsResponse",
    "LevelResponse",
    "MeaningCluster",
    "MeaningGroup",
    "PartOfSpeech",
    "Pronunciation",
    "PronunciationResponse",
    "Provenance",
    "RegionalVariant",
    "RegionalVariantsResponse",
    "RegisterResponse",
    "SourceDefinition",
    "SynonymsResponse",
    "SynthesizedDefinition",
    "SynthesizedDefinitionsResponse",
    "UsageNoteResponse",
    "Word",
    "WordForm",
    "WordFormsResponse",
]

#: The parts of speech a synthesized definition may carry.
PartOfSpeech = Literal[
    "noun",
    "proper noun",
    "verb",
    "adjective",
    "adverb",
    "pronoun",
    "preposition",
    "conjunction",
    "interjection",
    "determiner",
    "numeral",
    "prefix",
    "suffix",
    "abbreviation",
    "phrase",
]

CefrLevel = Literal["A1", "A2", "B1", "B2", "C1", "C2"]
FrequencyBand = Literal[1, 2, 3, 4, 5]
Register = Literal[
    "neutral",
    "formal",
    "informal",
    "slang",
    "offensive",
    "literary",
    "archaic",
    "technical",
    "humorous",
]


def _clean_strings(limit: int) -> Callable[[list[str]], list[str]]:
    """A validator that strips, drops empty and repeated items, and caps the list."""

    def clean(items: list[str]) -> list[str]:
        seen: set[str] = set()
        out: list[str] = []
        for item in items:
            text = " ".join(item.split())
            key = text.casefold()
            if text and key not in seen:
                seen.add(key)
                out.append(text)
                if len(out) == limit:
                    break
        return out

    return clean


def _cap(limit: int) -> Callable[[list[Any]], list[Any]]:
    def cap(items: list[Any]) -> list[Any]:
        return items[:limit]

    return cap


def _strip_optional(value: str | None) -> str | None:
    if value is None:
        return None
    text = " ".join(value.split())
    return text or None


def _strip(value: str) -> str:
    return " ".join(value.split())


Text = Annotated[str, AfterValidator(_strip)]
OptionalText = Annotated[str | None, AfterValidator(_strip_optional)]


Strings3 = Annotated[list[str], AfterValidator(_clean_strings(3))]
Strings5 = Annotated[list[str], AfterValidator(_clean_strings(5))]
Strings6 = Annotated[list[str], AfterValidator(_clean_strings(6))]
Strings8 = Annotated[list[str], AfterValidator(_clean_strings(8))]


# --------------------------------------------------------------------------- dictionary


class Word(BaseModel):
    """A headword as read from the word list.

    Attributes:
        text: the word as the user wrote it (NFC, cleaned of control characters).
        normalized: the lookup and de-duplication key (case-folded ``text``).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    normalized: str

    @classmethod
    def of(cls, text: str) -> Word:
        """A word whose key is derived from ``text``."""
        return cls(text=text, normalized=text.casefold())


class Provenance(BaseModel):
    """Where a source definition came from.

    Attributes:
        dictionary: ``gcide``, the path of a user file, or ``model`` for
            generated definitions.
        entry: the headword the dictionary filed it under.
        sense: the position within the entry (GCIDE: ``"block.definition"``,
            both 1-based).
        line: the line of a user file.
        label: the dictionary's own part-of-speech label (``"v. t."``).
    """

    dictionary: str
    entry: str | None = None
    sense: str | None = None
    line: int | None = None
    label: str | None = None


class SourceDefinition(BaseModel):
    """One definition of a word as a source states it.

    Attributes:
        text: the definition text.
        part_of_speech: the normalized part of speech, when known.
        source: the source's name (``gcide``, a user source name, ``model``).
        provenance: where exactly it came from.
        generated: whether the model wrote it because no source had the word.
    """

    text: str
    part_of_speech: str | None = None
    source: str
    provenance: Provenance
    generated: bool = False


class MeaningCluster(BaseModel):
    """Source definitions that express one meaning."""

    part_of_speech: str | None = None
    sources: list[SourceDefinition]


class RegionalVariant(BaseModel):
    """A form of the word used in one region for a meaning (``UK``: ``lift``)."""

    region: str
    form: str


class Pronunciation(BaseModel):
    """IPA transcriptions of the word."""

    us: str
    uk: str


class WordForm(BaseModel):
    """An inflected or derived form (``ran``: ``past tense``)."""

    form: str
    kind: str


# ``register`` is the lexicographic term; pydantic warns only because ABCMeta
# has a class method of that name, which instances never reach.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class Definition(BaseModel):
    """One synthesized meaning of a word, with its enhancements.

    Enhancement fields stay empty (or ``None``) when their component was not
    run or had nothing to say.
    """

    part_of_speech: str | None
    text: str
    sources: list[SourceDefinition] = Field(default_factory=list)
    synonyms: list[str] = Field(default_factory=list)
    antonyms: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)
    cefr_level: str | None = None
    frequency_band: int | None = None
    register: str | None = None
    domain: str | None = None
    regional_variants: list[RegionalVariant] = Field(default_factory=list)
    grammar_patterns: list[str] = Field(default_factory=list)
    collocations: list[str] = Field(default_factory=list)
    usage_notes: str | None = None

    @property
    def generated(self) -> bool:
        """Whether this meaning rests only on model-written source definitions."""
        return bool(self.sources) and all(s.generated for s in self.sources)


class EntryMetadata(BaseModel):
    """How an entry was made.

    Attributes:
        components: the components that were run.
        sources: the names of the sources its definitions came from.
        generated: whether no source had the word and the model defined it.
        models: task → model, when the caller knows the routing.
        warnings: anything the pipeline had to work around.
    """

    components: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    generated: bool = False
    models: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class DictionaryEntry(BaseModel):
    """A finished dictionary entry: one JSONL line of the output."""

    word: str
    pronunciation: Pronunciation | None = None
    etymology: str | None = None
    word_forms: list[WordForm] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    definitions: list[Definition] = Field(default_factory=list)
    metadata: EntryMetadata = Field(default_factory=EntryMetadata)


# --------------------------------------------------------------------------- pipeline answers


class MeaningGroup(BaseModel):
    """One meaning: the numbers of the source definitions that express it."""

    pos: PartOfSpeech
    ids: list[int]


class ClusterResponse(BaseModel):
    """Answer of the ``cluster`` step: source definitions grouped by meaning."""

    meanings: list[MeaningGroup]


class SynthesizedDefinition(BaseModel):
    """One modern definition for the meaning numbered ``meaning``."""

    meaning: int
    text: Text


class SynthesizedDefinitionsResponse(BaseModel):
    """Answer of the ``synthesize`` step: one definition per meaning."""

    definitions: list[SynthesizedDefinition]


class GeneratedDefinition(BaseModel):
    """A definition the model wrote for a word no source has."""

    pos: PartOfSpeech
    text: Text


class GeneratedDefinitionsResponse(BaseModel):
    """Answer of the ``generate`` step: the word's main meanings."""

    definitions: Annotated[list[GeneratedDefinition], AfterValidator(_cap(8))]


# --------------------------------------------------------------------------- component answers


class SynonymsResponse(BaseModel):
    """Synonyms of one meaning, best first."""

    synonyms: Strings8


class AntonymsResponse(BaseModel):
    """Antonyms of one meaning, best first."""

    antonyms: Strings6


class ExamplesResponse(BaseModel):
    """Example sentences for one meaning."""

    examples: Strings3


class LevelResponse(BaseModel):
    """The CEFR level a learner needs to understand one meaning."""

    level: CefrLevel


class FrequencyBandResponse(BaseModel):
    """How common one meaning is: 1 (very common) to 5 (rare)."""

    band: FrequencyBand


class RegisterResponse(BaseModel):
    """The register one meaning belongs to."""

    # Explicitly required: pydantic would otherwise take ABCMeta.register as a default.
    register: Register = Field(...)


class DomainResponse(BaseModel):
    """The subject field of one meaning; ``None`` for general use."""

    domain: OptionalText


class RegionalVariantsResponse(BaseModel):
    """Regional forms of one meaning."""

    variants: Annotated[list[RegionalVariant], AfterValidator(_cap(5))]


class GrammarPatternsResponse(BaseModel):
    """Grammar patterns one meaning is used in."""

    patterns: Strings5


class CollocationsResponse(BaseModel):
    """Frequent collocations of one meaning."""

    collocations: Strings8


class UsageNoteResponse(BaseModel):
    """A usage note for one meaning; ``None`` when there is nothing notable."""

    note: OptionalText


class PronunciationResponse(BaseModel):
    """IPA of the word in American and British English."""

    us: Text
    uk: Text


class EtymologyResponse(BaseModel):
    """A short etymology of the word."""

    etymology: Text


class WordFormsResponse(BaseModel):
    """Inflected and derived forms of the word."""

    forms: Annotated[list[WordForm], AfterValidator(_cap(12))]


class FactsResponse(BaseModel):
    """Short interesting facts about the word."""

    facts: Strings3
