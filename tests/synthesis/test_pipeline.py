"""The pipeline end to end against the fake connector."""

from __future__ import annotations

from typing import Any

import pytest

from providers.errors import BudgetExceededError, ServerError
from synthesis.components import ALL_COMPONENTS, DEFINITION_COMPONENTS, WORD_COMPONENTS
from synthesis.enhance import enhance_definitions_parallel
from synthesis.models import (
    Definition,
    Provenance,
    SourceDefinition,
    SynonymsResponse,
    SynthesizedDefinitionsResponse,
)
from synthesis.pipeline import (
    STAGES,
    DefinitionSynthesizer,
    iter_entries,
    synthesize_many,
)
from synthesis.sources import CombinedSources, GcideSource


def src(text: str, pos: str | None = "noun", n: int = 1) -> SourceDefinition:
    return SourceDefinition(
        text=text,
        part_of_speech=pos,
        source="test",
        provenance=Provenance(dictionary="test", entry="w", sense=str(n)),
    )


FOUR = [src(f"sense number {i} of the word, quite distinct", n=i) for i in (1, 2, 3, 4)]


async def test_entry_with_all_components(connector: Any) -> None:
    synthesizer = DefinitionSynthesizer(connector)
    entry = await synthesizer.synthesize_entry("bank", FOUR)

    # 4 sources -> the fake groups them in pairs -> 2 meanings.
    assert len(entry.definitions) == 2
    assert [len(d.sources) for d in entry.definitions] == [2, 2]
    assert entry.definitions[0].sources == FOUR[:2]
    first = entry.definitions[0]
    assert first.text == "modern sense 1 of the word"
    assert first.part_of_speech == "noun"
    assert first.cefr_level == "A1"
    assert first.frequency_band == 1
    assert first.register == "neutral"
    assert first.domain == "domain-domain-1"
    assert first.examples and first.collocations and first.grammar_patterns
    assert first.regional_variants and first.usage_notes
    assert entry.pronunciation is not None and entry.pronunciation.us
    assert entry.etymology and entry.word_forms and entry.facts
    assert entry.metadata.components == list(ALL_COMPONENTS)
    assert entry.metadata.sources == ["test"]
    assert entry.metadata.generated is False
    assert entry.metadata.warnings == []

    # cluster + synthesize + 11 per meaning + 4 word-level.
    assert len(connector.calls) == 1 + 1 + 11 * 2 + 4
    assert connector.count("cluster") == 1
    assert connector.count("synthesize") == 1
    for name in DEFINITION_COMPONENTS:
        assert connector.count(name) == 2
    for name in WORD_COMPONENTS:
        assert connector.count(name) == 1
    assert all(c.task for c in connector.calls)
    assert all(c.opts.get("max_tokens") for c in connector.calls)


async def test_prompts_carry_word_pos_and_meaning(connector: Any) -> None:
    await DefinitionSynthesizer(connector, components=["synonyms", "etymology"]).synthesize_entry(
        "bank", FOUR
    )
    synonyms = [c for c in connector.calls if c.task == "synonyms"]
    assert "Word: bank (noun)" in synonyms[0].prompt
    assert "modern sense 1 of the word" in synonyms[0].prompt
    assert "modern sense 2 of the word" in synonyms[1].prompt
    cluster = next(c for c in connector.calls if c.task == "cluster")
    for s in FOUR:
        assert s.text in cluster.prompt
    etymology = next(c for c in connector.calls if c.task == "etymology")
    assert "Senses include: sense number 1" in etymology.prompt


async def test_single_source_definition_skips_clustering(connector: Any) -> None:
    entry = await DefinitionSynthesizer(connector, components=[]).synthesize_entry(
        "bank", [src("one sense")]
    )
    assert connector.tasks() == ["synthesize"]
    assert len(entry.definitions) == 1
    assert entry.definitions[0].sources[0].text == "one sense"


async def test_duplicate_sources_are_removed_before_clustering(connector: Any) -> None:
    entry = await DefinitionSynthesizer(connector, components=[]).synthesize_entry(
        "bank", [src("A slope of land."), src("a slope of land"), src("A slope, of land!")]
    )
    assert connector.tasks() == ["synthesize"]
    assert len(entry.definitions[0].sources) == 1


async def test_word_without_sources_is_defined_by_the_model(connector: Any) -> None:
    synthesizer = DefinitionSynthesizer(
        connector, components=["synonyms", "pronunciation"], sources=GcideSource()
    )
    entry = await synthesizer.synthesize_entry("smartphone")
    assert connector.count("generate") == 1
    assert connector.count("cluster") == 0
    assert connector.count("synthesize") == 0
    assert entry.metadata.generated is True
    assert entry.metadata.sources == ["model"]
    assert len(entry.definitions) == 2
    for definition in entry.definitions:
        assert definition.generated
        assert definition.sources[0].generated is True
        assert definition.sources[0].provenance.dictionary == "model"
    # The fake gives both meanings the same synonyms; they stay on the first.
    assert entry.definitions[0].synonyms and not entry.definitions[1].synonyms
    assert entry.pronunciation is not None


async def test_gcide_word_end_to_end(connector: Any, gcide: GcideSource) -> None:
    synthesizer = DefinitionSynthesizer(connector, sources=CombinedSources([gcide]))
    entry = await synthesizer.synthesize_entry("apple")
    assert entry.word == "apple"
    assert entry.metadata.sources == ["gcide"]
    assert all(s.provenance.entry == "apple" for d in entry.definitions for s in d.sources)
    etymology = next(c for c in connector.calls if c.task == "etymology")
    assert "appel" in etymology.prompt  # GCIDE's etymology passed as a hint


async def test_unknown_component_name_is_refused(connector: Any) -> None:
    with pytest.raises(Exception, match="unknown components: colour"):
        DefinitionSynthesizer(connector, components=["colour"])


async def test_model_routing_recorded_when_known(connector: Any) -> None:
    routes = {"cluster": "small", "synthesize": "big", "synonyms": "small"}
    synthesizer = DefinitionSynthesizer(connector, components=["synonyms"], model_for=routes)
    entry = await synthesizer.synthesize_entry("bank", FOUR)
    assert entry.metadata.models == routes


async def test_missing_meanings_are_asked_for_again(make_connector: Any) -> None:
    asked: list[int] = []

    def partial(call: Any) -> SynthesizedDefinitionsResponse:
        n = call.numbered()
        asked.append(n)
        # First answer covers only meaning 1; the re-ask answers everything.
        numbers = [1] if len(asked) == 1 else range(1, n + 1)
        return SynthesizedDefinitionsResponse.model_validate(
            {"definitions": [{"meaning": i, "text": f"ask{len(asked)}-{i}"} for i in numbers]}
        )

    connector = make_connector(answers={"synthesize": partial})
    entry = await DefinitionSynthesizer(connector, components=[]).synthesize_entry("w", FOUR)
    assert asked == [2, 1]
    assert [d.text for d in entry.definitions] == ["ask1-1", "ask2-1"]
    assert entry.metadata.warnings == []


async def test_meaning_left_undefined_keeps_its_source_text(make_connector: Any) -> None:
    def nothing(call: Any) -> SynthesizedDefinitionsResponse:
        return SynthesizedDefinitionsResponse(definitions=[])

    connector = make_connector(answers={"synthesize": nothing})
    entry = await DefinitionSynthesizer(connector, components=[]).synthesize_entry("w", FOUR)
    assert connector.count("synthesize") == 1  # re-asking the same thing would be the same call
    assert [d.text for d in entry.definitions] == [FOUR[0].text, FOUR[2].text]
    assert entry.metadata.warnings == [
        "synthesize: no definition written for 2 meanings (1, 2); kept the source text"
    ]


async def test_enhance_definitions_parallel_keeps_inputs_and_dedups_synonyms(
    make_connector: Any,
) -> None:
    by_meaning = {
        "move fast on foot": ["sprint", "dash", "race"],
        "compete in an election": ["stand", "race"],
        "operate a machine": ["operate", "work", "sprint"],
    }

    def synonyms(call: Any) -> SynonymsResponse:
        meaning = next(m for m in by_meaning if m in call.prompt)
        return SynonymsResponse(synonyms=by_meaning[meaning])

    connector = make_connector(answers={"synonyms": synonyms})
    definitions = [Definition(part_of_speech="verb", text=m) for m in by_meaning]
    enhanced = await enhance_definitions_parallel(
        definitions, "run", connector, components=["synonyms", "antonyms", "etymology"]
    )
    assert all(d.synonyms == [] for d in definitions), "inputs are not modified"
    assert [d.synonyms for d in enhanced] == [
        ["sprint", "dash"],  # "race" ranks higher (1) under the election sense
        ["stand", "race"],
        ["operate", "work"],  # "sprint" ranks 0 under the first sense
    ]
    assert sorted({c.task for c in connector.calls}) == ["antonyms", "synonyms"]
    assert len(connector.calls) == 6


async def test_enhance_batch_mode_flag_toggles_and_restores(connector: Any) -> None:
    definitions = [Definition(part_of_speech="noun", text=f"m{i}") for i in range(3)]
    enhanced = await enhance_definitions_parallel(
        definitions, "w", connector, components=["cefr_level", "register"], batch_mode=True
    )
    assert connector.rounds == [6]
    assert connector.batch_mode is False
    assert [d.cefr_level for d in enhanced] == ["A1"] * 3


WORDS = ["apple", "run", "house", "happy", "quickly", "smartphone", "zebra", "light"]


async def test_many_words_in_batch_mode_take_one_round_per_stage(
    connector: Any, gcide: GcideSource
) -> None:
    entries = await synthesize_many(
        WORDS, connector, sources=CombinedSources([gcide]), batch_mode=True
    )
    assert [e.word for e in entries] == WORDS
    assert len(connector.rounds) == len(STAGES)
    assert sum(connector.rounds) == len(connector.calls)
    assert connector.batch_mode is False
    # One word alone would also take len(STAGES) rounds: N words share them.
    assert len(connector.calls) > 10 * len(STAGES)


async def test_batch_mode_already_on_is_left_on(connector: Any) -> None:
    connector.enable_batch_mode()
    await synthesize_many(["w1", "w2"], connector, components=["facts"], batch_mode=True)
    assert connector.batch_mode is True


async def test_immediate_and_batch_give_the_same_entries(
    make_connector: Any, gcide: GcideSource
) -> None:
    sources = CombinedSources([gcide])
    immediate = await synthesize_many(WORDS[:5], make_connector(), sources=sources)
    batched = await synthesize_many(WORDS[:5], make_connector(), sources=sources, batch_mode=True)
    assert [e.model_dump() for e in immediate] == [e.model_dump() for e in batched]


async def test_on_entry_sees_each_word_as_it_finishes(connector: Any) -> None:
    seen: list[str] = []
    result = await synthesize_many(
        ["a1", "b2", "c3"],
        connector,
        components=[],
        on_entry=lambda e: seen.append(e.word),
        collect=False,
    )
    assert result == []
    assert sorted(seen) == ["a1", "b2", "c3"]


async def test_iter_entries_yields_every_word(connector: Any) -> None:
    words = [e.word async for e in iter_entries(["a1", "b2"], connector, components=["facts"])]
    assert sorted(words) == ["a1", "b2"]


async def test_provider_failure_fails_only_its_word(make_connector: Any) -> None:
    def flaky(call: Any) -> Any:
        if "doomed" in call.prompt:
            raise ServerError("overloaded", provider="fake", status_code=529)
        return None

    connector = make_connector(answers={"facts": flaky})
    failures: list[tuple[str, str]] = []
    entries = await synthesize_many(
        ["fine", "doomed", "also fine"],
        connector,
        components=["facts", "synonyms"],
        on_error=lambda word, exc: failures.append((word, type(exc).__name__)),
    )
    assert [e.word for e in entries] == ["fine", "also fine"]
    assert failures == [("doomed", "ServerError")]


async def test_provider_failure_raises_without_on_error(make_connector: Any) -> None:
    connector = make_connector(fail={"facts": ServerError("down", provider="fake")})
    with pytest.raises(ServerError):
        await synthesize_many(["w"], connector, components=["facts"])


async def test_user_error_stops_the_run(make_connector: Any) -> None:
    connector = make_connector(fail={"generate": BudgetExceededError(2.0, 1.0)})
    with pytest.raises(BudgetExceededError):
        await synthesize_many(["a", "b", "c"], connector, components=[], on_error=lambda w, e: None)


async def test_immediate_mode_limits_words_in_flight(connector: Any) -> None:
    entries = await synthesize_many(
        [f"w{i}" for i in range(10)], connector, components=["facts"], max_in_flight=3
    )
    assert len(entries) == 10


async def test_cluster_answer_is_checked_against_the_sources(make_connector: Any) -> None:
    from synthesis.models import ClusterResponse

    def sloppy(call: Any) -> ClusterResponse:
        # Out-of-range, repeated and missing numbers.
        return ClusterResponse.model_validate(
            {"meanings": [{"pos": "verb", "ids": [2, 9, 0]}, {"pos": "noun", "ids": [2, 3]}]}
        )

    connector = make_connector(answers={"cluster": sloppy})
    entry = await DefinitionSynthesizer(connector, components=[]).synthesize_entry("w", FOUR)
    assert [[s.provenance.sense for s in d.sources] for d in entry.definitions] == [
        ["2"],
        ["3"],
        ["1", "4"],
    ]
    # "verb" contradicted the only source of its group (a noun): the source's label stands.
    assert [d.part_of_speech for d in entry.definitions] == ["noun", "noun", "noun"]
    assert entry.metadata.warnings == [
        "cluster: 2 source definitions left ungrouped (1, 4); grouped by part of speech"
    ]


async def test_a_part_of_speech_never_contradicts_all_its_sources(make_connector: Any) -> None:
    from synthesis.models import ClusterResponse

    sources = [
        src("A mound or ridge of earth.", "noun", 1),
        src("To deposit in a bank.", "verb", 2),
        src("To keep money in a bank.", "verb", 3),
        src("An establishment for money.", None, 4),
    ]

    def confused(call: Any) -> ClusterResponse:
        return ClusterResponse.model_validate(
            {
                "meanings": [
                    {"pos": "noun", "ids": [1]},
                    {"pos": "abbreviation", "ids": [2, 3]},
                    {"pos": "adjective", "ids": [4]},
                ]
            }
        )

    connector = make_connector(answers={"cluster": confused})
    entry = await DefinitionSynthesizer(connector, components=[]).synthesize_entry("bank", sources)
    # Agreeing: kept; contradicting every labelled source: overruled; no label: the model's.
    assert [d.part_of_speech for d in entry.definitions] == ["noun", "verb", "adjective"]


async def test_a_kept_source_text_carries_its_own_part_of_speech(make_connector: Any) -> None:
    from synthesis.models import ClusterResponse

    sources = [
        src("To deposit in a bank.", "verb", 1),
        src("A mound or ridge of earth.", "noun", 2),
        src("A bench; a seat of judgment.", "noun", 3),
    ]

    def one_group(call: Any) -> ClusterResponse:
        return ClusterResponse.model_validate({"meanings": [{"pos": "noun", "ids": [1, 2, 3]}]})

    def nothing(call: Any) -> SynthesizedDefinitionsResponse:
        return SynthesizedDefinitionsResponse.model_validate({"definitions": []})

    connector = make_connector(answers={"cluster": one_group, "synthesize": nothing})
    entry = await DefinitionSynthesizer(connector, components=[]).synthesize_entry("bank", sources)
    [definition] = entry.definitions
    # Not "noun: To deposit in a bank.": the kept text is a noun's.
    assert (definition.part_of_speech, definition.text) == ("noun", "A mound or ridge of earth.")
