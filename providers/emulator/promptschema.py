"""A JSON schema given only in the prompt, as some clients ask for JSON.

Such clients send no ``response_format``, ``output_config`` or tool: the
system text (or the user's) says "answer with JSON matching this schema"
and pastes the schema. A real model answers with JSON that fits it; so does
the emulator, instead of its fixed synthetic sentence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["content_texts", "schema_in_prompt", "texts_of"]

_DECODER = json.JSONDecoder()
# Cheap test before any parsing: a schema names its types or properties.
_HINTS = ('"properties"', '"type"', '"$schema"')


def _looks_like_schema(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if "properties" in value or "$schema" in value:
        return True
    return value.get("type") in ("object", "array")


def schema_in_prompt(texts: Iterable[str]) -> dict[str, Any] | None:
    """The first JSON schema written out in ``texts``, if any."""
    for text in texts:
        if "{" not in text or not any(hint in text for hint in _HINTS):
            continue
        start = text.find("{")
        while start != -1:
            try:
                value, _ = _DECODER.raw_decode(text, start)
            except ValueError:
                value = None
            if _looks_like_schema(value):
                assert isinstance(value, dict)
                return value
            start = text.find("{", start + 1)
    return None


def content_texts(content: Any) -> list[str]:
    """The texts of a message's content: a string, or its parts' texts."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                for key in ("text", "input_text"):
                    if isinstance(part.get(key), str):
                        out.append(part[key])
            elif isinstance(part, str):
                out.append(part)
    return out


def texts_of(body: Mapping[str, Any]) -> list[str]:
    """The prompt's texts, system and instructions first, of any API's body."""
    texts = content_texts(body.get("system"))
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    messages = body.get("messages")
    inp = body.get("input")
    if isinstance(inp, str):
        texts.append(inp)
    elif isinstance(inp, list):
        messages = inp
    if isinstance(messages, list):
        ordered = sorted(
            (m for m in messages if isinstance(m, Mapping)),
            key=lambda m: m.get("role") not in ("system", "developer"),
        )
        for m in ordered:
            texts.extend(content_texts(m.get("content")))
    return texts
