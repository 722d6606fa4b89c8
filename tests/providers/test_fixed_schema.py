"""Fixed schemas: a request file's schema is serialized once, with the same bytes as ever."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import orjson

from plugins.batch.journal import SchemaBook, encode_request, schema_ref
from plugins.requestfile import read_requests
from providers import schema as schema_module
from providers.schema import fix_schema, fixed_schema_part, make_strict
from providers.types import KEY_PREFIX, Message, Request

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "word": {"type": "string", "description": '«the word» "quoted"'},
        "level": {"type": "string", "enum": ["A1", "A2", "B1"]},
        "score": {"type": "number", "minimum": 1.0},
    },
}


def _request(schema: Any, **fields: Any) -> Request:
    return Request(
        "gpt-4o-mini", (Message("user", "define 'swift'"),), json_schema=schema, **fields
    )


def _plain_key(request: Request) -> str:
    # The key's definition: the SHA-256 of the whole canonical body, sorted.
    body = orjson.dumps(request.canonical(), option=orjson.OPT_SORT_KEYS)
    return KEY_PREFIX + hashlib.sha256(body).hexdigest()[:48]


def test_a_fixed_schema_gives_the_same_key_and_journal_body_as_an_unfixed_equal_one() -> None:
    fixed = fix_schema(make_strict(SCHEMA))
    loose = copy.deepcopy(dict(fixed))
    for fields in ({}, {"temperature": 0.5, "schema_name": "entry"}, {"max_tokens": 9}):
        a, b = _request(fixed, **fields), _request(loose, **fields)
        assert a.key == b.key == _plain_key(b)
        assert a.key_bytes == b.key_bytes
        book = SchemaBook(store=None)  # type: ignore[arg-type]  # encode reads no store
        body_a = book.encode(a, a.canonical_json_without_schema())
        named_a = book.take()
        body_b = encode_request(b, schema_ref(b.schema_name, loose)[0])
        assert body_a == body_b
        assert named_a == dict([schema_ref(b.schema_name, loose)])
        # The second request of the same fixed schema is encoded from what is remembered.
        again = _request(fixed, **fields)
        assert book.encode(again) == body_a
        assert book.take() == named_a


def test_a_schema_not_fixed_is_serialized_each_time_so_a_change_shows_in_the_key() -> None:
    schema = make_strict(SCHEMA)
    first = _request(schema)
    assert fixed_schema_part(schema, None) is None
    before = first.key
    assert before == _plain_key(first)
    schema["properties"]["word"]["description"] = "changed"
    changed = _request(schema)
    assert changed.key != before and changed.key == _plain_key(changed)


def test_a_fixed_schema_part_is_made_once_per_name_and_holds_the_sorted_bytes() -> None:
    fixed = fix_schema(make_strict(SCHEMA))
    part = fixed_schema_part(fixed, "entry")
    assert part == orjson.dumps({"name": "entry", "schema": fixed}, option=orjson.OPT_SORT_KEYS)
    assert fixed_schema_part(fixed, "entry") is part
    assert fixed_schema_part(fixed, None) != part


def test_the_fixed_schemas_are_bounded_and_a_forgotten_one_is_serialized_again(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(schema_module, "_FIXED", {})
    monkeypatch.setattr(schema_module, "FIXED_SCHEMAS_MAX", 3)
    kept = [fix_schema({"type": "object", "title": str(i)}) for i in range(3)]
    assert all(fixed_schema_part(s, None) is not None for s in kept)
    newest = fix_schema({"type": "string"})  # a fourth: the remembered ones are let go
    assert fixed_schema_part(newest, None) is not None
    assert fixed_schema_part(kept[0], None) is None
    # A forgotten schema still gives its request the key of its bytes.
    request = _request(kept[0])
    assert request.key == _plain_key(request)


def test_a_request_files_identical_schemas_are_one_fixed_object(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    reordered = {"properties": SCHEMA["properties"], "type": "object"}
    lines = [
        {"prompt": "one", "schema": SCHEMA},
        {"prompt": "two", "schema": reordered, "temperature": 0.5},
        {"prompt": "three", "schema": {**SCHEMA, "title": "other"}},
    ]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    items = read_requests(path, default_model="gpt-4o-mini")
    one, two, three = (item.request for item in items)
    assert one.json_schema is two.json_schema and three.json_schema is not one.json_schema
    for request in (one, two, three):
        assert request.json_schema is not None
        assert fixed_schema_part(request.json_schema, request.schema_name) is not None
        assert request.key == _plain_key(request)
