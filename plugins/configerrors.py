"""One-line messages for configuration mistakes: which source, which key, what was expected.

:func:`config_error` turns pydantic's first validation error into a
:class:`~providers.errors.ConfigError` that names the file, variable or flag
the bad value came from, the dotted key and what the key takes, in words. A
provider's own ``[providers.NAME]`` options are validated by the model it
registered, and their errors read the same. Values that could be secrets
are never repeated.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from providers.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "KeyedValueError",
    "ProviderOptionsError",
    "config_error",
    "field_at",
    "show",
    "suggest",
]

ENV_PREFIX = "LEXIBATCH_"
# Strings shaped like credentials are never repeated back in an error message.
_SECRET_RE = re.compile(r"^(sk|pk|rk|key|api|sess)[-_]|^[A-Za-z0-9_\-+/=.]{32,}$", re.IGNORECASE)

#: The settings model of provider NAME's ``[providers.NAME]`` table.
OptionsOf = Callable[[str], type[BaseModel]]
#: Who takes key KEY, when provider NAME does not: ``the gemini provider``, or ``None``.
OwnersOf = Callable[[str, str], str | None]


class KeyedValueError(ValueError):
    """A validation failure that knows the (relative) key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class ProviderOptionsError(ValueError):
    """A ``[providers.NAME]`` table its provider's options model refused."""

    def __init__(self, name: str, error: ValidationError) -> None:
        super().__init__(f"providers.{name}: {error}")
        self.name = name
        self.error = error


def config_error(
    exc: ValidationError,
    sources: Mapping[str, str],
    file_label: str,
    *,
    root: type[BaseModel],
    options_of: OptionsOf,
    owners_of: OwnersOf,
) -> ConfigError:
    """The first validation error as one line naming source, key and expectation.

    Args:
        exc: what validating ``root`` raised.
        sources: dotted key → where its value came from (a variable, ``command line``).
        file_label: the source of every other key (the config file).
        root: the model validated (the whole settings).
        options_of: the options model of a provider, by name.
        owners_of: who takes a key a provider does not (for ``this key is for ...``).
    """
    errors = exc.errors(include_url=False)
    # A misspelt key is a missing one too: the misspelling is what to fix.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(str(part) for part in error["loc"])
    inner = (error.get("ctx") or {}).get("error")
    if isinstance(inner, ProviderOptionsError):
        error = inner.error.errors(include_url=False)[0]
        loc = ("providers", inner.name, *(str(part) for part in error["loc"]))
        inner = (error.get("ctx") or {}).get("error")
    if isinstance(inner, KeyedValueError):
        loc = loc + tuple(inner.key.split("."))
    key = ".".join(loc)
    source = _source_of(key, sources, file_label)
    prefix = source if source.startswith(ENV_PREFIX) else f"{source}: {key}"
    if isinstance(inner, KeyedValueError):
        return ConfigError(f"{prefix}: {inner.message}", key=key)
    if error["type"] == "extra_forbidden":
        owners = owners_of(loc[1], loc[2]) if len(loc) == 3 and loc[0] == "providers" else None
        if owners is not None:
            return ConfigError(f"{prefix}: this key is for {owners} only", key=key)
        parent, _ = field_at(root, loc[:-1], options_of) if loc[:-1] else (root, None)
        model = _model_in(parent)
        hint = suggest(loc[-1], list(model.model_fields) if model is not None else [])
        return ConfigError(f"{source}: unknown key {key}{hint}", key=key)
    if loc[-1] == "[key]":
        # The name of a table (``[prices." "]``), not a value in it.
        table = ".".join(loc[:-2])
        return ConfigError(
            f"{source}: {table}: {loc[-2]!r} is not a name it takes ({error['msg']})", key=table
        )
    annotation, info = field_at(root, loc, options_of)
    expected = _describe(annotation, info) if annotation is not None else "a valid value"
    if error["type"] == "missing":
        return ConfigError(f"{prefix}: missing — expected {expected}", key=key)
    got = show(error.get("input"), key)
    return ConfigError(f"{prefix}: expected {expected}, got {got}", key=key)


def _source_of(key: str, sources: Mapping[str, str], file_label: str) -> str:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        label = sources.get(".".join(parts[:end]))
        if label is not None:
            return label
    return file_label


def field_at(
    root: type[BaseModel], loc: tuple[str, ...], options_of: OptionsOf
) -> tuple[Any, FieldInfo | None]:
    """The annotation and field info at a validation location (``None`` when unknown).

    ``providers.NAME`` is the options model provider ``NAME`` registered.
    """
    annotation: Any = root
    info: FieldInfo | None = None
    for depth, part in enumerate(loc):
        if depth == 1 and loc[0] == "providers":
            annotation, info = options_of(part), None
            continue
        model = _model_in(annotation)
        if model is not None and part in model.model_fields:
            info = model.model_fields[part]
            annotation = info.annotation
            continue
        origin = typing.get_origin(annotation)
        if origin is dict:
            annotation = typing.get_args(annotation)[1]
            info = None
            continue
        return None, None
    return annotation, info


def suggest(word: str, candidates: list[str]) -> str:
    """`` (did you mean X?)`` for the closest candidate, or nothing when none is close.

    Edit distance with transpositions ranks first, so ``modle`` suggests
    ``model`` rather than the shorter ``mode``; difflib's ratio breaks ties
    and catches longer words with several slips.
    """
    if not candidates:
        return ""
    lowered = word.lower()

    def rank(candidate: str) -> tuple[int, int, float]:
        distance = _edit_distance(lowered, candidate.lower())
        ratio = difflib.SequenceMatcher(None, lowered, candidate.lower()).ratio()
        return distance, abs(len(candidate) - len(word)), -ratio

    best = min(candidates, key=rank)
    distance, _, neg_ratio = rank(best)
    if distance <= max(1, len(word) // 3) or -neg_ratio >= 0.75:
        return f" (did you mean {best}?)"
    return ""


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ca != cb),
            )
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(annotation: Any, info: FieldInfo | None) -> str:
    """What a field takes, in words: ``a number ≥ 0``, ``one of 'chat', 'responses'``."""
    metadata: list[Any] = list(info.metadata) if info is not None else []
    if typing.get_origin(annotation) is Annotated:
        args = typing.get_args(annotation)
        annotation = args[0]
        for extra in args[1:]:
            metadata += getattr(extra, "metadata", [extra])
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _describe(options[0], info)
        return " or ".join(_describe(a, None) for a in options)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin is dict or _model_in(annotation) is not None:
        return "a table"
    words = {
        float: "a number",
        int: "an integer",
        str: "a string",
        bool: "true or false",
        Path: "a path",
    }
    text = words.get(annotation, "a valid value")
    if annotation is str and any(getattr(m, "min_length", None) for m in metadata):
        return "a non-empty string"
    for m in metadata:
        if isinstance(m, Ge):
            text += f" ≥ {m.ge:g}" if isinstance(m.ge, (int, float)) else f" ≥ {m.ge}"
        elif isinstance(m, Gt):
            text += f" > {m.gt:g}" if isinstance(m.gt, (int, float)) else f" > {m.gt}"
    return text


def show(value: Any, key: str) -> str:
    """``repr`` of an offending value, unless it may be a secret."""
    if "key" in key.rsplit(".", 1)[-1].lower():
        return "<hidden>"
    if isinstance(value, str) and _SECRET_RE.search(value.strip()):
        return "<hidden>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
