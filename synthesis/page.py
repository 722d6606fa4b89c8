"""``lexibatch show WORD``: one entry as a dictionary page in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from providers.errors import InputError
from synthesis.models import Definition, DictionaryEntry
from synthesis.wordlist import clean_word

__all__ = ["find_entry", "print_entry", "render_entry"]


def find_entry(word: str, path: Path) -> DictionaryEntry | None:
    """The entry of ``word`` (compared case-insensitively) in the JSONL output ``path``.

    Raises:
        InputError: ``path`` holds lines but no entry at all (another kind of
            file), or the line of ``word`` is not an entry.
    """
    wanted = clean_word(word).casefold()
    lines = entries = 0
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            lines += 1
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                # A partial last line of an interrupted run: not an entry.
                continue
            if not isinstance(data, dict) or "definitions" not in data:
                continue
            entries += 1
            if str(data.get("word", "")).casefold() == wanted:
                try:
                    return DictionaryEntry.model_validate(data)
                except ValidationError as exc:
                    problem = exc.errors()[0]
                    where = ".".join(str(p) for p in problem["loc"])
                    raise InputError(
                        f"{path}:{lineno}: not a dictionary entry ({where}: {problem['msg']})"
                    ) from None
    if lines and not entries:
        raise InputError(
            f"{path} holds no dictionary entries: give --entries the output of "
            "`lexibatch synthesize`"
        )
    return None


def _labels(definition: Definition) -> list[str]:
    labels = []
    if definition.cefr_level:
        labels.append(definition.cefr_level)
    if definition.register:
        labels.append(definition.register)
    if definition.domain:
        labels.append(definition.domain)
    if definition.frequency_band is not None:
        labels.append(f"frequency band {definition.frequency_band}")
    return labels


def render_entry(entry: DictionaryEntry) -> Any:
    """The entry as a rich renderable: headword, pronunciation, senses by part of speech."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.text import Text

    parts: list[Any] = []
    head = Text(entry.word, style="bold")
    if entry.pronunciation is not None:
        head.append(f"  US /{entry.pronunciation.us}/  UK /{entry.pronunciation.uk}/", style="dim")
    parts.append(head)
    if entry.word_forms:
        forms = ", ".join(f"{f.form} ({f.kind})" for f in entry.word_forms)
        parts.append(Text(f"forms: {forms}", style="dim"))
    by_pos: dict[str, list[Definition]] = {}
    for definition in entry.definitions:
        by_pos.setdefault(definition.part_of_speech or "—", []).append(definition)
    number = 0
    for pos, definitions in by_pos.items():
        parts.append(Text(""))
        parts.append(Text(pos, style="italic cyan"))
        for definition in definitions:
            number += 1
            line = Text(f"{number}. ", style="bold")
            labels = _labels(definition)
            if labels:
                line.append(f"[{', '.join(labels)}] ", style="magenta")
            line.append(definition.text)
            parts.append(Padding(line, (0, 0, 0, 2)))
            details = []
            for example in definition.examples:
                details.append(Text(f"“{example}”", style="italic"))
            if definition.synonyms:
                details.append(Text(f"synonyms: {', '.join(definition.synonyms)}", style="green"))
            if definition.antonyms:
                details.append(Text(f"antonyms: {', '.join(definition.antonyms)}", style="red"))
            if definition.collocations:
                details.append(Text(f"collocations: {', '.join(definition.collocations)}"))
            if definition.grammar_patterns:
                details.append(Text(f"patterns: {', '.join(definition.grammar_patterns)}"))
            if definition.regional_variants:
                variants = ", ".join(f"{v.region}: {v.form}" for v in definition.regional_variants)
                details.append(Text(f"regional: {variants}"))
            if definition.usage_notes:
                details.append(Text(f"usage: {definition.usage_notes}", style="dim"))
            parts.extend(Padding(d, (0, 0, 0, 5)) for d in details)
    if not entry.definitions:
        parts.append(Text("(no definitions)", style="dim"))
    if entry.etymology:
        parts.extend([Text(""), Text(f"Etymology: {entry.etymology}")])
    if entry.facts:
        parts.append(Text(""))
        parts.extend(Text(f"• {fact}") for fact in entry.facts)
    meta = entry.metadata
    footer = []
    if meta.sources:
        footer.append(f"sources: {', '.join(meta.sources)}")
    if meta.generated:
        footer.append("defined by the model (no source had the word)")
    footer.extend(f"note: {w}" for w in meta.warnings)
    if footer:
        parts.append(Text(""))
        parts.extend(Text(f, style="dim") for f in footer)
    return Panel(Group(*parts), title=entry.word, title_align="left", expand=False)


def print_entry(entry: DictionaryEntry, file: IO[str] | None = None) -> None:
    """Print the entry's page (plain text when the output is not a terminal)."""
    from rich.console import Console

    Console(file=file, width=100, soft_wrap=False).print(render_entry(entry))
