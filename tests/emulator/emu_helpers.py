"""Bodies, files and polling helpers shared by the emulator tests."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import orjson

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "word": {"type": "string", "minLength": 3, "maxLength": 40},
        "level": {"type": "string", "enum": ["A1", "A2", "B1", "B2", "C1", "C2"]},
        "frequency": {"type": "integer", "minimum": 1, "maximum": 7},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "formal": {"type": "boolean"},
        "synonyms": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "sense": {"$ref": "#/$defs/Sense"},
        "seen": {"type": "string", "format": "date"},
    },
    "required": [
        "word",
        "level",
        "frequency",
        "score",
        "formal",
        "synonyms",
        "note",
        "sense",
        "seen",
    ],
    "additionalProperties": False,
    "$defs": {
        "Sense": {
            "type": "object",
            "properties": {
                "gloss": {"type": "string"},
                "examples": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["gloss", "examples"],
            "additionalProperties": False,
        }
    },
}


def chat_body(content: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """A chat body asking for :data:`SCHEMA` in strict mode."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "Describe words."},
            {"role": "user", "content": content},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "entry", "strict": True, "schema": SCHEMA},
        },
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """JSONL bytes."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def batch_file(n: int, model: str = "gpt-4o-mini", url: str = "/v1/chat/completions") -> bytes:
    """An input file of ``n`` chat requests with custom ids ``w0`` … ``w{n-1}``."""
    return jsonl(
        [
            {
                "custom_id": f"w{i}",
                "method": "POST",
                "url": url,
                "body": chat_body(f"word {i}", model),
            }
            for i in range(n)
        ]
    )


def run_batch(oai: openai.OpenAI, data: bytes, endpoint: str = "/v1/chat/completions") -> Any:
    """Upload, create and poll until the batch is terminal."""
    f = oai.files.create(file=("in.jsonl", data), purpose="batch")
    batch = oai.batches.create(
        input_file_id=f.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
    )
    assert batch.status == "validating"
    deadline = time.time() + 20
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.time() < deadline
        time.sleep(0.01)
        batch = oai.batches.retrieve(batch.id)
    return batch


def lines_of(oai: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """The parsed lines of a file (none for ``None``)."""
    if file_id is None:
        return []
    return [orjson.loads(x) for x in oai.files.content(file_id).content.splitlines()]


PLACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "country": {"type": "string"},
        "population": {"type": "integer", "minimum": 1000},
        "districts": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["city", "country", "population", "districts"],
    "additionalProperties": False,
}
HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def params(content: str, model: str = "claude-haiku-4-5") -> dict[str, Any]:
    """Message params asking for :data:`SCHEMA` through ``output_config.format``."""
    return {
        "model": model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": content}],
        "output_config": {"format": {"type": "json_schema", "schema": PLACE_SCHEMA}},
    }


def requests_of(n: int, model: str = "claude-haiku-4-5") -> list[dict[str, Any]]:
    """``n`` batch requests with custom ids ``r0`` … ``r{n-1}``."""
    return [{"custom_id": f"r{i}", "params": params(f"city {i}", model)} for i in range(n)]


def wait_ended(ant: anthropic.Anthropic, batch_id: str) -> Any:
    """Poll until the batch has ended."""
    deadline = time.time() + 20
    batch = ant.messages.batches.retrieve(batch_id)
    while batch.processing_status != "ended":
        assert time.time() < deadline
        time.sleep(0.01)
        batch = ant.messages.batches.retrieve(batch_id)
    return batch
