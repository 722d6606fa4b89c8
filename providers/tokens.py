"""Token counts estimated before a request is sent (for ``--estimate``, budgets and the queue cap).

Input tokens are counted with tiktoken when its encoding file is on disk:
LiteLLM ships tiktoken's cache files (cl100k_base, o200k_base, p50k_base)
inside its package, and ``TIKTOKEN_CACHE_DIR`` is pointed there unless the
user set it. An encoding is only used when its file is already present, so
counting never touches the network; otherwise a chars / 4 heuristic is used.
Output tokens are a guess: what the schema's shape suggests, capped by
``max_tokens``. The queue cap counts the input alone, as the providers
count their queues; the emulator's queue counts with the same tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from providers.types import Request

__all__ = ["count_tokens", "estimate_output_tokens", "estimate_tokens", "litellm_tiktoken_dir"]

_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"

# Chat framing per message and for the reply's start (OpenAI's published counting).
_PER_MESSAGE = 3
_PER_REPLY = 3

# Output tokens guessed for a request with neither schema nor max_tokens.
_DEFAULT_OUTPUT = 256


def litellm_data_path(relative: str) -> Path | None:
    """A file or folder shipped inside the installed ``litellm``, found without importing it."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    return None


def litellm_tiktoken_dir() -> Path | None:
    """The tiktoken cache LiteLLM bundles, found without importing litellm."""
    found = litellm_data_path("litellm_core_utils/tokenizers")
    return found if found is not None and found.is_dir() else None


def _cache_dir() -> Path:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return Path(os.environ["TIKTOKEN_CACHE_DIR"])
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return Path(os.environ["DATA_GYM_CACHE_DIR"])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _encoding_on_disk(name: str) -> bool:
    key = hashlib.sha1(_ENCODING_URL.format(name).encode()).hexdigest()
    return (_cache_dir() / key).is_file()


@cache
def _encoding_name(model: str) -> str:
    bare = model.rsplit("/", 1)[-1]
    try:
        import tiktoken

        return tiktoken.encoding_name_for_model(bare)
    except (ImportError, KeyError):
        # Non-OpenAI models: o200k_base is a close enough stand-in for estimates.
        return "o200k_base"


@cache
def _encoder(name: str) -> Callable[[str], int] | None:
    bundled = litellm_tiktoken_dir()
    if bundled is not None and "TIKTOKEN_CACHE_DIR" not in os.environ:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    if not _encoding_on_disk(name):
        return None
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(name)
    except Exception:
        return None

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    return count


def _heuristic(text: str) -> int:
    return (len(text) + 3) // 4


def count_tokens(text: str, model: str = "gpt-4o") -> int:
    """Tokens in ``text`` for ``model`` (tiktoken offline, else chars / 4)."""
    encoder = _encoder(_encoding_name(model))
    return encoder(text) if encoder is not None else _heuristic(text)


def _schema_guess(node: Any, defs: Mapping[str, Any], depth: int = 0) -> int:
    if not isinstance(node, Mapping) or depth > 8:
        return 4
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _schema_guess(defs.get(ref.rsplit("/", 1)[-1], {}), defs, depth + 1)
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            return max(_schema_guess(option, defs, depth + 1) for option in options)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    props = node.get("properties")
    if kind == "object" or isinstance(props, Mapping):
        # Key, quotes and punctuation cost about three tokens per property.
        return 2 + sum(3 + _schema_guess(sub, defs, depth + 1) for sub in (props or {}).values())
    if kind == "array":
        items = node.get("items", {})
        count = node.get("minItems") or 3
        return 2 + int(count) * (1 + _schema_guess(items, defs, depth + 1))
    if kind == "string":
        if "enum" in node:
            return 3
        return 12 if node.get("maxLength") is None else min(12, int(node["maxLength"]) // 4 + 1)
    return 2


def estimate_output_tokens(request: Request) -> int:
    """A guess of the output tokens: the schema's likely size, capped by max_tokens."""
    if request.json_schema is not None:
        schema = request.json_schema
        guess = _schema_guess(schema, schema.get("$defs") or {})
        return min(guess, request.max_tokens) if request.max_tokens else guess
    return request.max_tokens or _DEFAULT_OUTPUT


def estimate_tokens(request: Request) -> tuple[int, int]:
    """``(input_tokens, output_tokens_guess)`` of ``request`` before it is sent.

    The input counts the messages, their chat framing and the response
    schema (which the provider adds to the prompt).
    """
    encoder = _encoder(_encoding_name(request.model))
    count = encoder if encoder is not None else _heuristic
    tokens = _PER_REPLY
    for message in request.messages:
        tokens += _PER_MESSAGE + count(message.content) + 1
    if request.json_schema is not None:
        tokens += count(orjson.dumps(request.json_schema).decode())
    return tokens, estimate_output_tokens(request)
