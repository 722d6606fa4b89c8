"""Synthesized entries in the store, and the one spelling the store keeps for a word.

Word lists and the dictionary sources compare words case-insensitively
("Lantern" and "lantern" are one word, with the same source definitions), so
the store does too: the first spelling of a word it meets is recorded before
the word's first call is sent, and a later lookup or word list in other
capitals is synthesized under that spelling. Its calls are then the ones
already made, read back from the cache instead of paid for again.

A store whose entries were made before spellings were recorded has them
recorded from its entries the first time it is used (:func:`record_old_entries`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from synthesis.models import DictionaryEntry
from synthesis.wordlist import clean_word

__all__ = [
    "ENTRIES",
    "SPELLINGS",
    "Listable",
    "Readable",
    "Writable",
    "claim_spelling",
    "claim_spellings",
    "entry_from_store",
    "fold",
    "known_spelling",
    "record_old_entries",
    "store_entry",
]

#: The document namespace of synthesized entries in the store.
ENTRIES = "entries"
#: The document namespace of the spelling each word is kept under, by :func:`fold`.
SPELLINGS = "spellings"
#: Where the store notes that the spellings of its older entries were recorded.
_RECORDED = ("spellings-state", "entries-recorded")


class Readable(Protocol):
    """The part of the store entries are read from."""

    def get_document(self, namespace: str, key: str) -> dict[str, Any] | None: ...


class Writable(Readable, Protocol):
    """The part of the store a lookup writes entries and spellings to."""

    def put_document(self, namespace: str, key: str, value: Mapping[str, Any]) -> None: ...

    def add_documents(
        self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> int: ...


class Listable(Writable, Protocol):
    """The whole of the store's documents a word list's run uses."""

    def iter_documents(self, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]: ...

    def document_keys(self, namespace: str) -> Iterator[str]: ...


def fold(word: str) -> str:
    """The form under which two spellings of one word are equal (case and spacing ignored)."""
    return " ".join(word.casefold().split())


def known_spelling(word: str, documents: Readable) -> str | None:
    """The spelling the store keeps for ``word`` in any capitals, if it has one."""
    found = documents.get_document(SPELLINGS, fold(word))
    spelling = found.get("word") if found is not None else None
    return spelling if isinstance(spelling, str) and spelling else None


def claim_spelling(word: str, documents: Writable) -> str:
    """The spelling to synthesize ``word`` under: the one already kept, else ``word``, now kept.

    Recorded before the word's first call is sent, so a crash or a later
    lookup in other capitals finds it.
    """
    known = known_spelling(word, documents)
    if known is not None:
        return known
    if documents.add_documents(SPELLINGS, [(fold(word), {"word": word})]):
        return word
    # Another process claimed the word since it was read: its spelling wins.
    return known_spelling(word, documents) or word


def claim_spellings(words: Sequence[str], documents: Listable) -> list[str]:
    """``words``, each in the spelling the store keeps for it; the others are kept as written.

    What :func:`claim_spelling` does for one word, for a word list: the
    spellings are read in one pass and the new ones written in one transaction,
    before the run's first call.
    """
    record_old_entries(documents)
    wanted = {fold(word): word for word in reversed(words)}  # the first spelling wins
    kept: dict[str, str] = {}
    for key, value in documents.iter_documents(SPELLINGS):
        spelling = value.get("word")
        if key in wanted and isinstance(spelling, str) and spelling:
            kept[key] = spelling
    new = [(key, {"word": word}) for key, word in wanted.items() if key not in kept]
    if new:
        added = documents.add_documents(SPELLINGS, new)
        kept.update((key, value["word"]) for key, value in new)
        if added < len(new):
            # Another process claimed some of them since they were read: theirs win.
            for key, _ in new:
                kept[key] = known_spelling(key, documents) or kept[key]
    return [kept[fold(word)] for word in words]


def record_old_entries(documents: Listable) -> int:
    """Record the spelling of every entry the store holds without one; returns how many.

    Entries stored before spellings were recorded keep their headword: a
    lookup in other capitals is answered from their calls. Done once a store
    (noted in it); an entry's lower-case headword wins over other capitals.
    """
    namespace, key = _RECORDED
    if documents.get_document(namespace, key) is not None:
        return 0
    found: dict[str, str] = {}
    for word in documents.document_keys(ENTRIES):
        folded = fold(word)
        if folded not in found or word == folded:
            found[folded] = word
    kept = set(documents.document_keys(SPELLINGS))
    new = [(folded, {"word": word}) for folded, word in found.items() if folded not in kept]
    if new:
        documents.add_documents(SPELLINGS, new)
    documents.put_document(namespace, key, {"entries": len(found)})
    return len(new)


def store_entry(entry: DictionaryEntry, documents: Writable) -> None:
    """Keep ``entry``, and its word's spelling unless the store has one already."""
    documents.put_document(ENTRIES, entry.word, entry.model_dump(mode="json"))
    if known_spelling(entry.word, documents) is None:
        documents.add_documents(SPELLINGS, [(fold(entry.word), {"word": entry.word})])


def entry_from_store(word: str, documents: Readable) -> DictionaryEntry | None:
    """The stored entry of ``word`` in any capitals (as written, its kept spelling, lower-case).

    ``word`` is cleaned as a word list's line is (composed accents, no
    zero-width characters), as the entries' headwords were.
    """
    word = clean_word(word)
    candidates = [word]
    known = known_spelling(word, documents)
    if known is not None:
        candidates.append(known)
    # An entry of an older store no spelling was recorded for: the usual lower-case headword.
    candidates.append(word.lower())
    for key in dict.fromkeys(candidates):
        found = documents.get_document(ENTRIES, key)
        if found is not None:
            return DictionaryEntry.model_validate(found)
    return None
