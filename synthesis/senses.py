"""What the source definitions of a word say about its senses, for the prompts."""

from __future__ import annotations

from collections.abc import Sequence

from synthesis.models import SourceDefinition

__all__ = ["agreeing_pos", "sense_hints"]

# At most this many glosses, each cut at this many characters.
_SENSE_HINTS = 3
_SENSE_HINT_CHARS = 90


def agreeing_pos(answered: str | None, members: Sequence[SourceDefinition]) -> str | None:
    """The part of speech of a meaning: the model's, unless every source contradicts it.

    The sources' own labels are the dictionary's word; a model that files
    "To deposit in a bank" (a verb in every source) as an abbreviation is
    overruled by the label most of its sources carry.
    """
    labelled = [m.part_of_speech for m in members if m.part_of_speech]
    if not labelled or answered in labelled:
        return answered
    counts: dict[str, int] = {}
    for pos in labelled:
        counts[pos] = counts.get(pos, 0) + 1
    return max(counts, key=lambda pos: counts[pos])


def sense_hints(sources: Sequence[SourceDefinition]) -> list[str]:
    """A few short glosses, one per part of speech first, to tell homographs apart."""
    chosen: list[SourceDefinition] = []
    seen_pos: set[str | None] = set()
    for source in sources:
        if source.part_of_speech not in seen_pos:
            seen_pos.add(source.part_of_speech)
            chosen.append(source)
    for source in sources:
        if len(chosen) >= _SENSE_HINTS:
            break
        if source not in chosen:
            chosen.append(source)
    hints = []
    for source in chosen[:_SENSE_HINTS]:
        text = source.text
        if len(text) > _SENSE_HINT_CHARS:
            text = text[:_SENSE_HINT_CHARS].rsplit(" ", 1)[0] + "…"
        hints.append(text)
    return hints
