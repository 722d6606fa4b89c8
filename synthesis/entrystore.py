"""Synthesized entries in the store, and the one spelling the store keeps for a word.

Word lists and the dictionary sources compare words case-insensitively
("Lantern" and "lantern" are one word, with the same source definitions), so
the store does too: the first spelling of a word it meets is recorded, and a
later lookup in other capitals is answered under that spelling. Its calls are
then the ones already made, read back from the cache instead of paid again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from synthesis.models import DictionaryEntry

__all__ = [
    "ENTRIES",
    "SPELLINGS",
    "claim_spelling",
    "entry_from_store",
    "fold",
    "kept_spellings",
    "known_spelling",
    "store_entry",
]

#: The document namespace of synthesized entries in the store.
ENTRIES = "entries"
#: The document namespace of the spelling each word is kept under, by :func:`fold`.
SPELLINGS = "spellings"


class _Documents(Protocol):
    def get_document(self, namespace: str, key: str) -> dict[str, Any] | None: ...

    def put_document(self, namespace: str, key: str, value: Mapping[str, Any]) -> None: ...


class _Readable(Protocol):
    def get_document(self, namespace: str, key: str) -> dict[str, Any] | None: ...


class _Listed(Protocol):
    def iter_documents(self, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]: ...


def fold(word: str) -> str:
    """The form under which two spellings of one word are equal (case and spacing ignored)."""
    return " ".join(word.casefold().split())


def known_spelling(word: str, documents: _Readable) -> str | None:
    """The spelling the store keeps for ``word`` in any capitals, if it has one."""
    found = documents.get_document(SPELLINGS, fold(word))
    spelling = found.get("word") if found is not None else None
    return spelling if isinstance(spelling, str) and spelling else None


def kept_spellings(words: Sequence[str], documents: _Listed) -> list[str]:
    """``words``, each in the spelling the store keeps for it where it keeps one."""
    wanted = {fold(word) for word in words}
    kept: dict[str, str] = {}
    for key, value in documents.iter_documents(SPELLINGS):
        spelling = value.get("word")
        if key in wanted and isinstance(spelling, str) and spelling:
            kept[key] = spelling
    if not kept:
        return list(words)
    return [kept.get(fold(word), word) for word in words]


def claim_spelling(word: str, documents: _Documents) -> str:
    """The spelling to synthesize ``word`` under: the one already kept, else ``word``, now kept.

    Recorded before the word's first call is sent, so a crash or a concurrent
    lookup in other capitals still finds it.
    """
    known = known_spelling(word, documents)
    if known is not None:
        return known
    documents.put_document(SPELLINGS, fold(word), {"word": word})
    return word


def store_entry(entry: DictionaryEntry, documents: _Documents) -> None:
    """Keep ``entry``, and its word's spelling unless the store has one already."""
    documents.put_document(ENTRIES, entry.word, entry.model_dump(mode="json"))
    if known_spelling(entry.word, documents) is None:
        documents.put_document(SPELLINGS, fold(entry.word), {"word": entry.word})


def entry_from_store(word: str, documents: _Readable) -> DictionaryEntry | None:
    """The stored entry of ``word`` in any capitals (as written, its kept spelling, lower-case)."""
    candidates = [word.strip()]
    known = known_spelling(word, documents)
    if known is not None:
        candidates.append(known)
    # Entries kept before spellings were recorded: the usual lower-case headword.
    candidates.append(word.strip().lower())
    for key in dict.fromkeys(candidates):
        found = documents.get_document(ENTRIES, key)
        if found is not None:
            return DictionaryEntry.model_validate(found)
    return None
