"""Source definitions: GCIDE lookups, user JSONL files, combining them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from providers.errors import InputError
from synthesis.sources import (
    CombinedSources,
    GcideSource,
    JsonlSource,
    build_sources,
    clean_definition_text,
    normalize_pos,
)


def test_gcide_apple_has_noun_definitions_with_provenance(gcide: GcideSource) -> None:
    found = gcide.lookup("apple")
    assert len(found) >= 4
    first = found[0]
    assert "fruit" in first.text
    assert first.part_of_speech == "noun"
    assert first.source == "gcide"
    assert first.generated is False
    assert first.provenance.dictionary == "gcide"
    assert first.provenance.entry == "apple"
    assert first.provenance.sense == "1.1"
    assert first.provenance.label == "n."
    senses = [s.provenance.sense for s in found]
    assert len(set(senses)) == len(senses)


def test_gcide_run_has_verb_and_noun_senses(gcide: GcideSource) -> None:
    found = gcide.lookup("Run")
    assert len(found) > 40
    kinds = {s.part_of_speech for s in found}
    assert {"verb", "noun"} <= kinds
    assert all(s.text and "Webster" not in s.text for s in found)


def test_gcide_lookup_is_case_and_diacritic_tolerant(gcide: GcideSource) -> None:
    assert gcide.lookup("café")
    assert gcide.lookup("café")[0].provenance.entry == "cafe"
    assert gcide.lookup("  APPLE ") == gcide.lookup("apple")


def test_gcide_missing_word_gives_nothing(gcide: GcideSource) -> None:
    assert gcide.lookup("smartphone") == []
    assert gcide.lookup("") == []


def test_gcide_finds_a_headword_filed_under_another_letter(gcide: GcideSource) -> None:
    found = gcide.lookup("pointillism")
    assert found and "Impressionism" in found[0].text


def test_gcide_loads_only_the_letters_asked_for() -> None:
    source = GcideSource()
    assert source.loaded_letters == []
    source.lookup("zebra")
    assert source.loaded_letters == ["Z"]
    source.lookup("zero")
    assert source.loaded_letters == ["Z"]


def test_gcide_etymology_only_when_not_copied_from_a_neighbour(gcide: GcideSource) -> None:
    assert "appel" in (gcide.etymology("apple") or "")
    # GCIDE's conversion copied "run"'s etymology onto "rumpus" and friends,
    # so which headword owns it cannot be told; no hint is better than a wrong one.
    assert gcide.etymology("rumpus") is None
    assert gcide.etymology("smartphone") is None


def test_gcide_data_dir_without_files_gives_nothing(tmp_path: Path) -> None:
    source = GcideSource(tmp_path)
    assert source.lookup("apple") == []


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "The science of weighing air; a [Obs.]\n[1913 Webster]",
            "The science of weighing air; a [Obs.]",
        ),
        ("fragile; not tough<-- contrast to flexible -->.", "fragile; not tough."),
        ("same as activation{1}.", "same as activation."),
        (
            "A gratuity; a tip\nSyn. -- gratuity, tip.\n[1913 Webster + WordNet]",
            "A gratuity; a tip",
        ),
        ("Abounding; -- used mostly with in\n[PJC]", "Abounding; -- used mostly with in"),
    ],
)
def test_clean_definition_text_removes_editorial_residue(raw: str, clean: str) -> None:
    assert clean_definition_text(raw) == clean


@pytest.mark.parametrize(
    ("label", "pos"),
    [
        ("n.", "noun"),
        ("n. pl.", "noun"),
        ("a.", "adjective"),
        ("adj.", "adjective"),
        ("v. t.", "verb"),
        ("v. i. & t.", "verb"),
        ("imp. & p. p.", "verb"),
        ("p. a.", "adjective"),
        ("adv.", "adverb"),
        ("prop. n.", "proper noun"),
        ("a. & n.", "adjective"),
        ("prep.", "preposition"),
        ("interj.", "interjection"),
        ("pron.", "pronoun"),
        ("definite article.", "determiner"),
        ("suff.", "suffix"),
        ("noun", "noun"),
        ("", None),
        (None, None),
        ("fem.", None),
    ],
)
def test_normalize_pos(label: str | None, pos: str | None) -> None:
    assert normalize_pos(label) == pos


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(
        b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in rows) + b"\n"
    )
    return path


def test_user_jsonl_source(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"word": "Apple", "definition": "A round fruit.", "part_of_speech": "n."},
            b"",
            {"word": "apple", "definition": "A tech  company.", "source": "notes"},
            {"word": "pear", "definition": "Another fruit.", "part_of_speech": "noun"},
        ],
    )
    source = JsonlSource(path)
    assert len(source) == 3
    found = source.lookup("APPLE")
    assert [s.text for s in found] == ["A round fruit.", "A tech company."]
    assert found[0].part_of_speech == "noun"
    assert found[0].source == "mine.jsonl"
    assert found[0].provenance.line == 1
    assert found[0].provenance.dictionary == str(path)
    assert found[1].source == "notes"
    assert found[1].provenance.line == 3
    assert found[1].part_of_speech is None
    assert source.lookup("kiwi") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"word": "x"}', '"definition" must be a non-empty string'),
        (b'{"word": "", "definition": "d"}', '"word" must be a non-empty string'),
        (b'{"word": "x", "definition": "d", "part_of_speech": 3}', '"part_of_speech" must be'),
    ],
)
def test_user_jsonl_errors_name_file_and_line(tmp_path: Path, line: bytes, message: str) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"word": "ok", "definition": "fine"}, line])
    with pytest.raises(InputError) as err:
        JsonlSource(path)
    assert f"{path}:2:" in str(err.value)
    assert message in str(err.value)


def test_unreadable_user_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read source definitions"):
        JsonlSource(tmp_path / "missing.jsonl")


def test_build_sources_puts_user_files_before_gcide(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", [{"word": "apple", "definition": "Mine."}])
    sources = build_sources([path])
    assert isinstance(sources, CombinedSources)
    found = sources.lookup("apple")
    assert found[0].text == "Mine."
    assert found[1].source == "gcide"
    assert sources.name == "mine.jsonl+gcide"
    assert sources.etymology("apple")
    only_user = build_sources([path], gcide=False)
    assert [s.text for s in only_user.lookup("apple")] == ["Mine."]
    assert only_user.etymology("apple") is None


def test_a_server_loads_gcide_in_a_thread_of_its_own_and_lookups_go_on() -> None:
    import threading

    source = GcideSource()
    sources = CombinedSources([source])
    thread = sources.preload_in_background()
    assert thread is not None and thread.daemon and thread is not threading.current_thread()
    # A lookup beside it finds what it always finds.
    assert sources.lookup("apple")
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert set(source._letters) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert CombinedSources([]).preload_in_background() is None
