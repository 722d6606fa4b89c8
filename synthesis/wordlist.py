"""Reading word lists: cleaning, de-duplication, and a report of what was odd.

A word list is text, one word (or phrase) a line. Nothing in it is fatal
except a file that cannot be read or is not text: empty lines and ``#``
comments are skipped, Unicode is NFC-normalized, control and zero-width
characters are dropped, runs of white space become one space, and repeats
(case-insensitive) are dropped, keeping the first spelling. What was
skipped or changed is counted in a :class:`WordListReport`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from providers.errors import InputError

__all__ = [
    "MAX_WORD_CHARS",
    "WordListReport",
    "clean_word",
    "parse_word_list",
    "read_word_list",
    "word_problem",
]

# Cf covers zero-width spaces and joiners, the BOM and bidi marks; Cc the C0/C1 controls.
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_MAX_EXAMPLES = 5

#: The longest headword or phrase looked up (the longest English words are about 45 letters).
MAX_WORD_CHARS = 64


def word_problem(word: str) -> str | None:
    """Why a cleaned ``word`` is no word to look up, or ``None`` when it is one.

    Nothing left, more than :data:`MAX_WORD_CHARS` characters, or no letter
    at all. The same rule for a word list and for the lookup service.
    """
    if not word:
        return "the word is empty"
    if len(word) > MAX_WORD_CHARS:
        return f"the word is {len(word)} characters long; at most {MAX_WORD_CHARS}"
    if not any(unicodedata.category(c).startswith("L") for c in word):
        return f"{word!r} has no letter: not a word"
    return None


@dataclass
class WordListReport:
    """What reading a word list skipped or changed.

    Attributes:
        source: the file name, or ``<words>`` for an in-memory list.
        lines: lines read.
        words: distinct words kept.
        empty: blank lines skipped.
        comments: ``#`` comment lines skipped.
        duplicates: repeated words dropped (as written, first few).
        duplicate_count: how many repeats were dropped.
        cleaned: ``(line, original, cleaned)`` for words whose text changed.
        unusable: ``(line, original)`` for lines that are no word after
            cleaning (see :func:`word_problem`).
    """

    source: str = "<words>"
    lines: int = 0
    words: int = 0
    empty: int = 0
    comments: int = 0
    duplicates: list[str] = field(default_factory=list)
    duplicate_count: int = 0
    cleaned: list[tuple[int, str, str]] = field(default_factory=list)
    unusable: list[tuple[int, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether nothing but blank lines and comments was skipped or changed."""
        return not (self.duplicate_count or self.cleaned or self.unusable)

    def summary(self) -> str:
        """One line saying what was kept and what was skipped or changed."""
        parts = [f"{_count(self.words, 'word')} from {self.source}"]
        if self.duplicate_count:
            shown = ", ".join(self.duplicates[:_MAX_EXAMPLES])
            parts.append(f"{_count(self.duplicate_count, 'duplicate')} dropped ({shown})")
        if self.cleaned:
            shown = ", ".join(f"line {n}: {o!r}→{c!r}" for n, o, c in self.cleaned[:_MAX_EXAMPLES])
            parts.append(f"{_count(len(self.cleaned), 'word')} cleaned of odd characters ({shown})")
        if self.unusable:
            shown = ", ".join(f"line {n}" for n, _ in self.unusable[:_MAX_EXAMPLES])
            parts.append(f"{_count(len(self.unusable), 'unusable line')} skipped ({shown})")
        if self.empty:
            parts.append(_count(self.empty, "empty line"))
        if self.comments:
            parts.append(_count(self.comments, "comment"))
        return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def clean_word(raw: str) -> str:
    """``raw`` NFC-normalized, without control or zero-width characters, spaces collapsed."""
    text = unicodedata.normalize("NFC", raw)
    if not text.isascii():
        text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROP_CATEGORIES)
    else:
        text = "".join(ch for ch in text if ch.isprintable() or ch in " \t")
    return " ".join(text.split())


def parse_word_list(
    lines: list[str] | str, *, source: str = "<words>"
) -> tuple[list[str], WordListReport]:
    """Clean and de-duplicate words given as text or as a list of lines.

    Returns:
        The words in first-seen order, and the report.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    report = WordListReport(source=source)
    seen: set[str] = set()
    words: list[str] = []
    for number, line in enumerate(lines, 1):
        report.lines += 1
        stripped = line.strip()
        if not stripped:
            report.empty += 1
            continue
        if stripped.startswith("#"):
            report.comments += 1
            continue
        word = clean_word(stripped)
        if word_problem(word) is not None:
            report.unusable.append((number, stripped))
            continue
        if word != stripped:
            report.cleaned.append((number, stripped, word))
        key = word.casefold()
        if key in seen:
            report.duplicate_count += 1
            if len(report.duplicates) < _MAX_EXAMPLES:
                report.duplicates.append(word)
            continue
        seen.add(key)
        words.append(word)
    report.words = len(words)
    return words, report


def read_word_list(path: Path | str) -> tuple[list[str], WordListReport]:
    """Read a word list file.

    Raises:
        InputError: the file cannot be read or is not UTF-8 text (one line).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read word list {path}: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise InputError(f"word list {path} is not a text file (it contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"word list {path} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    return parse_word_list(text.splitlines(), source=str(path))
