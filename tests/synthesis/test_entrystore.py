"""Entries in the store: one spelling kept per word, found in any capitals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugins.store import Store
from synthesis.entrystore import (
    ENTRIES,
    SPELLINGS,
    claim_spelling,
    claim_spellings,
    entry_from_store,
    known_spelling,
    record_old_entries,
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


def test_a_word_list_takes_the_kept_spellings_and_keeps_its_new_ones_before_any_call(
    store: Store,
) -> None:
    claim_spelling("lantern", store)
    claim_spelling("Paris", store)
    words = ["LANTERN", "paris", "Meadow", "MEADOW", "anchor"]
    assert claim_spellings(words, store) == ["lantern", "Paris", "Meadow", "Meadow", "anchor"]
    # The new words were kept as first written in the list: a lookup in other capitals
    # (or the next list) takes them.
    assert known_spelling("meadow", store) == "Meadow"
    assert known_spelling("ANCHOR", store) == "anchor"
    assert claim_spellings([], store) == []


def test_an_older_stores_entries_keep_their_headwords_for_words_in_other_capitals(
    store: Store,
) -> None:
    def old_entry(word: str) -> None:
        store.put_document(ENTRIES, word, DictionaryEntry(word=word).model_dump(mode="json"))

    # Entries stored before spellings were recorded (and one in two capitalizations).
    for word in ("lantern", "Harbour", "March", "march"):
        old_entry(word)
    assert record_old_entries(store) == 3
    assert known_spelling("LANTERN", store) == "lantern"
    assert known_spelling("harbour", store) == "Harbour"
    assert known_spelling("MARCH", store) == "march"  # the lower-case headword wins
    assert claim_spelling("Lantern", store) == "lantern"
    assert claim_spellings(["HARBOUR"], store) == ["Harbour"]
    # Once a store: an entry added later by an older version is not looked for again.
    old_entry("meadow")
    assert record_old_entries(store) == 0
    assert store.get_document(SPELLINGS, "meadow") is None


def test_a_word_with_a_decomposed_accent_finds_its_entry(store: Store) -> None:
    store_entry(DictionaryEntry(word="café", facts=["a place"]), store)
    found = entry_from_store("Cafe\u0301", store)  # "e" then a combining acute accent
    assert found is not None and found.facts == ["a place"]
    assert entry_from_store("ca\u200bfe\u0301", store) == found  # with a zero-width space


class _ReadBeforeAnotherClaim:
    """This process's store, whose first read of spellings comes just before another
    process (a second connection to the same file) claims ``theirs``.

    The read sees the store as it was; the claim lands between it and this
    process's own write, the window two processes starting on one word share.
    """

    def __init__(self, path: Path, theirs: list[str]) -> None:
        self.ours = Store(path)
        self._other = Store(path)
        self._theirs = theirs

    def _other_claims(self) -> None:
        for word in self._theirs:
            claim_spelling(word, self._other)
        self._theirs = []

    def get_document(self, namespace: str, key: str) -> dict[str, Any] | None:
        found = self.ours.get_document(namespace, key)
        if namespace == SPELLINGS:
            self._other_claims()
        return found

    def iter_documents(self, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]:
        found = list(self.ours.iter_documents(namespace))
        if namespace == SPELLINGS:
            self._other_claims()
        return iter(found)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ours, name)

    def close(self) -> None:
        self.ours.close()
        self._other.close()


def test_a_word_claimed_by_another_process_after_this_one_read_keeps_the_first_spelling(
    tmp_path: Path,
) -> None:
    racing = _ReadBeforeAnotherClaim(tmp_path / "store.db", ["Lantern"])
    try:
        # Read "no spelling yet", then the other process claims "Lantern": ours must not
        # replace it, or the two processes would synthesize (and pay for) the word twice.
        assert claim_spelling("lantern", racing) == "Lantern"
        assert known_spelling("LANTERN", racing.ours) == "Lantern"
    finally:
        racing.close()


def test_a_word_list_claimed_in_part_by_another_process_takes_that_processs_spellings(
    tmp_path: Path,
) -> None:
    racing = _ReadBeforeAnotherClaim(tmp_path / "store.db", ["Meadow", "Paris"])
    try:
        words = ["meadow", "anchor", "PARIS"]
        assert claim_spellings(words, racing) == ["Meadow", "anchor", "Paris"]
        assert [known_spelling(w, racing.ours) for w in words] == ["Meadow", "anchor", "Paris"]
    finally:
        racing.close()


def test_a_stored_entry_does_not_replace_a_spelling_another_process_claimed(
    tmp_path: Path,
) -> None:
    racing = _ReadBeforeAnotherClaim(tmp_path / "store.db", ["Harbour"])
    try:
        store_entry(DictionaryEntry(word="harbour", facts=["a port"]), racing)
        assert known_spelling("harbour", racing.ours) == "Harbour"
    finally:
        racing.close()
