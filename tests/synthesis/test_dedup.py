"""Source de-duplication and the one-definition-per-synonym rule."""

from __future__ import annotations

from synthesis.dedup import assign_exclusive, dedupe_sources, normalize_text
from synthesis.models import Definition, Provenance, SourceDefinition


def src(text: str, pos: str | None = "noun", source: str = "gcide") -> SourceDefinition:
    return SourceDefinition(
        text=text, part_of_speech=pos, source=source, provenance=Provenance(dictionary=source)
    )


def test_normalize_text() -> None:
    assert normalize_text("  The Fruit;  of a TREE. ") == "the fruit of a tree"


def test_exact_duplicates_after_normalization_are_dropped_first_kept() -> None:
    first = src("A round fruit.", source="mine")
    kept = dedupe_sources([first, src("a round fruit"), src("A ROUND FRUIT!!")])
    assert kept == [first]


def test_near_duplicates_are_dropped_but_distinct_senses_kept() -> None:
    a = src("The fleshy fruit of a rosaceous tree cultivated in many varieties in temperate zones")
    near = src(
        "The fleshy fruit of a rosaceous tree, cultivated in many varieties in the temperate zones"
    )
    other = src("Anything round like an apple")
    assert dedupe_sources([a, near, other]) == [a, other]


def test_same_text_under_another_part_of_speech_is_kept() -> None:
    noun = src("A run of water", pos="noun")
    verb = src("A run of water", pos="verb")
    assert dedupe_sources([noun, verb]) == [noun, verb]


def test_empty_texts_are_dropped() -> None:
    assert dedupe_sources([src(" ;; ")]) == []


def d(*synonyms: str, antonyms: tuple[str, ...] = ()) -> Definition:
    return Definition(
        part_of_speech="noun", text="x", synonyms=list(synonyms), antonyms=list(antonyms)
    )


def test_synonym_kept_where_ranked_highest() -> None:
    defs = [d("dash", "sprint", "race"), d("sprint", "jog"), d("race", "contest")]
    assign_exclusive(defs, "synonyms", "run")
    # "sprint": rank 1 in the first, rank 0 in the second -> second.
    # "race": rank 2 in the first, rank 0 in the third -> third.
    assert defs[0].synonyms == ["dash"]
    assert defs[1].synonyms == ["sprint", "jog"]
    assert defs[2].synonyms == ["race", "contest"]


def test_tie_goes_to_the_earlier_more_common_meaning() -> None:
    defs = [d("Quick", "fast"), d("quick", "alive")]
    assign_exclusive(defs, "synonyms", "swift")
    assert defs[0].synonyms == ["Quick", "fast"]
    assert defs[1].synonyms == ["alive"]


def test_headword_is_never_its_own_synonym_and_antonyms_are_separate() -> None:
    defs = [d("Run", "dash", antonyms=("walk",)), d("dash", antonyms=("walk", "stop"))]
    assign_exclusive(defs, "synonyms", "run")
    assign_exclusive(defs, "antonyms", "run")
    assert defs[0].synonyms == ["dash"]
    assert defs[1].synonyms == []
    assert defs[0].antonyms == ["walk"]
    assert defs[1].antonyms == ["stop"]
