"""Entries in the store: one spelling kept per word, found in any capitals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.store import Store
from synthesis.entrystore import (
    ENTRIES,
    claim_spelling,
    entry_from_store,
    kept_spellings,
    known_spelling,
    store_entry,
)
from synthesis.models import DictionaryEntry


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.db") as opened:
        yield opened


def test_the_first_spelling_claimed_is_the_one_every_later_claim_gets(store: Store) -> None:
    assert known_spelling("Lantern", store) is None
    assert claim_spelling("Lantern", store) == "Lantern"
    assert claim_spelling("lantern", store) == "Lantern"
    assert claim_spelling("  LANTERN ", store) == "Lantern"
    assert known_spelling("lAnTeRn", store) == "Lantern"
    # Words of more than one part compare with their spacing made even.
    assert claim_spelling("Fire  Fly", store) == "Fire  Fly"
    assert claim_spelling("fire fly", store) == "Fire  Fly"


def test_a_stored_entry_keeps_the_spelling_already_claimed_and_is_found_in_any_capitals(
    store: Store,
) -> None:
    claim_spelling("meadow", store)
    store_entry(DictionaryEntry(word="meadow", facts=["a field"]), store)
    store_entry(DictionaryEntry(word="Harbour", facts=["a port"]), store)
    assert known_spelling("MEADOW", store) == "meadow"
    assert known_spelling("harbour", store) == "Harbour"
    found = entry_from_store("HARBOUR", store)
    assert found is not None and found.facts == ["a port"]
    assert entry_from_store("Meadow", store) == DictionaryEntry(word="meadow", facts=["a field"])
    assert entry_from_store("anchor", store) is None


def test_an_entry_kept_before_spellings_were_recorded_is_found_lower_case(store: Store) -> None:
    store.put_document(ENTRIES, "anchor", DictionaryEntry(word="anchor").model_dump(mode="json"))
    found = entry_from_store("Anchor", store)
    assert found is not None and found.word == "anchor"


def test_a_word_list_takes_the_kept_spellings_and_leaves_other_words_as_written(
    store: Store,
) -> None:
    claim_spelling("lantern", store)
    claim_spelling("Paris", store)
    assert kept_spellings(["LANTERN", "paris", "Meadow"], store) == ["lantern", "Paris", "Meadow"]
    assert kept_spellings([], store) == []
