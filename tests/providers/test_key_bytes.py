"""Request keys: the same bytes as ever, and their stored form carried from the key itself."""

from __future__ import annotations

import hashlib

import orjson
from pydantic import BaseModel

from plugins.store.keys import key_cell
from providers.types import KEY_PREFIX, Message, Request


class Entry(BaseModel):
    """The response model of the requests below (only its fields shape the schema)."""

    word: str
    level: str


# Keys made by the version before the canonical body was built in sorted
# order (the response schema, docstring included, is part of the body): a
# store written then must still find these requests in its cache.
EARLIER_KEYS = [
    (
        Request(
            "gpt-4o-mini",
            (Message("user", "Give the CEFR level of the word number 7."),),
            response_model=Entry,
        ),
        "lb-4769db46c149f65a414b399de87f2797e1c843d48ccb4579",
    ),
    (
        Request(
            "gpt-4o-mini",
            (
                Message("system", "be brief"),
                Message("user", "define 'swift' — «quick» \"q\" \\ \n"),
            ),
            response_model=Entry,
            schema_name="entry_v2",
            max_tokens=50,
            temperature=0.2,
            task="x",
        ),
        "lb-f6c56578b4fbc8fbe68eb562dc360e79570eccd009495a72",
    ),
    (
        Request(
            "gpt-4o",
            (Message("user", "hi"),),
            extras={"top_p": 0.5, "seed": 7, "metadata": {"b": 1, "a": [{"z": 1, "y": 2}]}},
        ),
        "lb-32e5c0ca4a7924af56c808f634372a02e9a9b20a623c1171",
    ),
    (
        Request(
            "gpt-4o-mini",
            (Message("user", "raw"),),
            json_schema={
                "type": "object",
                "properties": {"x": {"type": "integer"}},
                "required": ["x"],
            },
            schema_name="raw",
            temperature=0.0,
        ),
        "lb-8fcaf53d430ebf163796983765ffab7253ba28186463b79e",
    ),
    (Request("m", (), max_tokens=0), "lb-9827b93afd347e6c49683b407881c44b520355037d24a0db"),
]


def test_keys_are_the_bytes_an_earlier_version_stored() -> None:
    for request, key in EARLIER_KEYS:
        assert request.key == key


def test_the_canonical_json_is_the_sorted_dump_of_the_canonical_body() -> None:
    for request, _ in EARLIER_KEYS:
        sort = orjson.OPT_SORT_KEYS
        assert request.canonical_json == orjson.dumps(request.canonical(), option=sort)
        bare = orjson.dumps(request.canonical(schema=False), option=sort)
        assert request.canonical_json_without_schema() == bare
        digest = hashlib.sha256(request.canonical_json).hexdigest()[:48]
        assert request.key == KEY_PREFIX + digest


def test_the_key_bytes_are_what_the_store_keeps_for_the_key() -> None:
    for request, key in EARLIER_KEYS:
        assert request.key_bytes == key_cell(key) == bytes.fromhex(key[len(KEY_PREFIX) :])
    # Asked for first, the bytes come with the key all the same.
    fresh = Request("gpt-4o-mini", (Message("user", "bytes first"),), response_model=Entry)
    assert key_cell(fresh.key) == fresh.key_bytes and len(fresh.key_bytes) == 24
    # A key copied in without its bytes (a pickled request of an older version) still has them.
    copied = Request("gpt-4o-mini", (Message("user", "copied"),))
    copied.__dict__["key"] = EARLIER_KEYS[0][1]
    assert copied.key_bytes == key_cell(EARLIER_KEYS[0][1])
