"""A schema serialized once and spliced in gives the very bytes serializing the whole body gives."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from pydantic import BaseModel

from providers.openai import OpenAIProvider
from providers.types import KEY_PREFIX, Message, Request


class Sense(BaseModel):
    """A response model with a nested part."""

    gloss: str
    examples: list[str]
    level: str | None = None


class Word(BaseModel):
    """Another one, so two schemas share the caches."""

    word: str


def _requests() -> list[Request]:
    user = (Message("user", "define 'swift' — «quick»"),)
    system = (Message("system", "be brief"), *user)
    return [
        Request("gpt-4o-mini", user, response_model=Sense),
        Request("gpt-4o-mini", system, response_model=Sense, schema_name="sense_v2"),
        Request("gpt-4o", user, response_model=Word, max_tokens=50, temperature=0.2),
        Request("gpt-4o-mini", user, response_model=Word, extras={"seed": 7, "top_p": 0.5}),
        Request("gpt-4o-mini", user, json_schema={"type": "object", "properties": {}}),
        Request("gpt-4o-mini", user),
    ]


def test_the_key_is_the_hash_of_the_whole_canonical_body() -> None:
    for request in _requests() * 2:  # the second time from the caches
        whole = orjson.dumps(request.canonical(), option=orjson.OPT_SORT_KEYS)
        assert request.canonical_json == whole
        assert request.key == KEY_PREFIX + hashlib.sha256(whole).hexdigest()[:48]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_batch_line_holds_the_whole_body_as_built(api: str) -> None:
    provider = OpenAIProvider(api_key="sk-test-1234", api=api)  # type: ignore[arg-type]
    endpoint = provider.batch
    assert endpoint is not None
    field = "response_format" if api == "chat" else "text"
    replaced = Request(
        "gpt-4o-mini",
        (Message("user", "hi"),),
        response_model=Word,
        extras={field: {"type": "json_object"}},
    )
    for request in [*_requests(), replaced] * 2:
        encoded = endpoint.encode(request, request.key)
        assert encoded.endswith(b',"body":' + orjson.dumps(provider.body(request)) + b"}")
        assert orjson.loads(encoded)["custom_id"] == request.key
