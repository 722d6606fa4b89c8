"""Deterministic clean-up steps of the pipeline (no model calls).

``dedupe_sources``
    Drops source definitions that repeat another one of the same part of
    speech: identical after normalization, or near-identical (their word
    sets overlap by at least :data:`NEAR_DUPLICATE` Jaccard similarity).
    The first one is kept, so definitions from earlier sources (the user's
    files) win over GCIDE's.

``assign_exclusive``
    Keeps each synonym (or antonym) on one definition only: the one where
    the model ranked it highest (its position in that definition's list,
    best first, not counting the headword); on a tie, the earlier
    definition, which is the more common meaning since meanings are ordered
    by frequency. The headword itself is never its own synonym.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from synthesis.models import Definition, SourceDefinition

__all__ = ["NEAR_DUPLICATE", "assign_exclusive", "dedupe_sources", "normalize_text"]

#: Word-set Jaccard similarity at or above which two definitions are one.
NEAR_DUPLICATE = 0.85

_NON_WORD = re.compile(r"[^\w\s]+")


def normalize_text(text: str) -> str:
    """Case-folded, NFKC, punctuation-free, single-spaced text."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def dedupe_sources(sources: Sequence[SourceDefinition]) -> list[SourceDefinition]:
    """``sources`` without exact and near duplicates, first occurrence kept, order kept."""
    kept: list[SourceDefinition] = []
    seen_exact: set[tuple[str | None, str]] = set()
    kept_sets: list[tuple[str | None, frozenset[str]]] = []
    for source in sources:
        norm = normalize_text(source.text)
        if not norm:
            continue
        key = (source.part_of_speech, norm)
        if key in seen_exact:
            continue
        words = frozenset(norm.split())
        if any(
            pos == source.part_of_speech and _jaccard(words, other) >= NEAR_DUPLICATE
            for pos, other in kept_sets
        ):
            continue
        seen_exact.add(key)
        kept_sets.append((source.part_of_speech, words))
        kept.append(source)
    return kept


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    # Cheap bound first: sets of very different sizes cannot reach the threshold.
    small, large = (len(a), len(b)) if len(a) <= len(b) else (len(b), len(a))
    if large == 0 or small / large < NEAR_DUPLICATE:
        return 0.0
    return len(a & b) / len(a | b)


def assign_exclusive(definitions: Sequence[Definition], field: str, word: str) -> None:
    """Keep each item of ``field`` (``synonyms``/``antonyms``) on one definition only.

    Modifies the definitions in place; see the module docstring for the rule.
    """
    headword = word.casefold()
    best: dict[str, tuple[int, int]] = {}
    for d_index, definition in enumerate(definitions):
        rank = 0
        for item in getattr(definition, field):
            key = item.casefold()
            if key == headword:
                continue
            place = (rank, d_index)
            rank += 1
            if key not in best or place < best[key]:
                best[key] = place
    for d_index, definition in enumerate(definitions):
        items: list[str] = getattr(definition, field)
        setattr(
            definition,
            field,
            [
                item
                for item in items
                if (found := best.get(item.casefold())) is not None and found[1] == d_index
            ],
        )
