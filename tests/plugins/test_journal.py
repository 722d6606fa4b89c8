"""Journal bodies: a request rebuilt from its body is the same request; schemas are stored once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, create_model

from plugins.batch import journal
from plugins.batch.journal import SchemaBook, decode_request, encode_request, schema_ref
from plugins.store import Store
from providers.errors import ConfigError
from providers.types import Message, Request


class Entry(BaseModel):
    """A response model importable from this module."""

    word: str
    level: str


class Sense(BaseModel):
    """Another one."""

    gloss: str


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "journal.db") as opened:
        yield opened


def _request(prompt: str, model: type[BaseModel] | None = Entry, **kwargs: object) -> Request:
    return Request(
        model="gpt-4o-mini",
        messages=(Message("system", "Be brief."), Message("user", prompt)),
        response_model=model,
        task="cefr",
        **kwargs,  # type: ignore[arg-type]
    )


def _write(book: SchemaBook, store: Store) -> None:
    store.add_schemas(book.take())


def test_a_body_names_its_schema_and_decodes_to_the_same_request(store: Store) -> None:
    book = SchemaBook(store)
    request = _request("word", max_tokens=50, temperature=0.2, extras={"seed": 7})
    body = book.encode(request)
    _write(book, store)
    data = orjson.loads(body)
    assert "schema" not in data["c"] and b"properties" not in body
    assert data["s"] == schema_ref("Entry", request.json_schema or {})[0]
    back = SchemaBook(store).decode(body)  # a fresh book reads the schema from the store
    assert back.key == request.key
    assert back.response_model is Entry and back.task == "cefr"
    assert back.json_schema == request.json_schema and back.schema_name == "Entry"
    assert back.messages == request.messages and back.max_tokens == 50
    assert back.temperature == 0.2 and dict(back.extras) == {"seed": 7}


def test_a_request_without_a_schema_has_no_reference(store: Store) -> None:
    book = SchemaBook(store)
    request = _request("plain text", model=None)
    body = book.encode(request)
    assert orjson.loads(body)["s"] is None and book.take() == {}
    assert book.decode(body).key == request.key


def test_a_schema_with_no_importable_class_validates_from_the_stored_copy(store: Store) -> None:
    book = SchemaBook(store)
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    request = _request("raw", model=None, json_schema=schema, schema_name="raw")
    body = book.encode(request)
    _write(book, store)
    back = SchemaBook(store).decode(body)
    assert back.response_model is None and back.json_schema == schema
    assert back.key == request.key


def test_equal_schemas_share_one_reference(store: Store) -> None:
    book = SchemaBook(store)
    bodies = [book.encode(_request(f"w{i}")) for i in range(50)]
    bodies.append(book.encode(_request("s", model=Sense)))
    # A schema equal in content but another object (e.g. read from a file) is the same reference.
    copy = dict(_request("x").json_schema or {})
    bodies.append(book.encode(_request("c", model=None, json_schema=copy, schema_name="Entry")))
    refs = {orjson.loads(b)["s"] for b in bodies}
    schemas = book.take()
    assert len(refs) == 2 and set(schemas) == refs
    assert store.add_schemas(schemas) == 2
    assert store.add_schemas(schemas) == 0  # already stored (by this run or another): ignored
    assert store.get_schemas([*refs, "s-unknown"]) == schemas


def test_each_group_of_rows_takes_the_schemas_it_names(store: Store) -> None:
    book = SchemaBook(store)
    book.encode(_request("w1"))
    first = book.take()
    assert len(first) == 1 and book.take() == {}
    # The first group's transaction may have rolled back: the next group names the schema again.
    with pytest.raises(RuntimeError), store.in_transaction():
        store.add_schemas(first)
        raise RuntimeError("the journal rows failed to commit")
    assert store.get_schemas(first) == {}
    book.encode(_request("w2"))
    book.encode(_request("s", model=Sense))
    second = book.take()
    assert set(first) < set(second) and len(second) == 2


def test_a_raw_schema_changed_between_requests_names_its_new_content(store: Store) -> None:
    book = SchemaBook(store)
    schema: dict[str, Any] = {"type": "object", "properties": {"x": {"type": "integer"}}}
    first = _request("a", model=None, json_schema=schema, schema_name="raw")
    first_key, first_body = first.key, book.encode(first)
    schema["properties"]["y"] = {"type": "string"}  # the caller reuses and edits its dict
    second = _request("b", model=None, json_schema=schema, schema_name="raw")
    second_key, second_body = second.key, book.encode(second)
    assert orjson.loads(first_body)["s"] != orjson.loads(second_body)["s"]
    _write(book, store)
    assert [r.key for r in SchemaBook(store).decode_many([first_body, second_body])] == [
        first_key,
        second_key,
    ]


def test_the_book_remembers_a_bounded_number_of_models(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "_REMEMBERED", 8)
    book = SchemaBook(store)
    models = [create_model(f"M{i}", value=(int, ...)) for i in range(20)]
    for model in models * 2:
        book.encode(_request(model.__name__, model=model))
        assert len(book._of_model) <= 8
    assert len(book.take()) == 20


def test_a_body_written_before_schemas_were_stored_apart_still_decodes() -> None:
    request = _request("old")
    # The earlier format: the canonical body with its schema inline, no "s".
    tail = b',"t":"cefr","m":"tests.plugins.test_journal:Entry"}'
    old = b'{"c":' + request.canonical_json + tail
    back = decode_request(old, {})
    assert back.key == request.key and back.json_schema == request.json_schema


def test_a_body_naming_a_schema_the_store_lacks_is_a_clear_error(store: Store) -> None:
    body = encode_request(_request("lost"), "s-0123456789abcdef0123456789abcdef")
    with pytest.raises(ConfigError, match=r"s-0123456789abcdef.*damaged") as info:
        SchemaBook(store).decode(body)
    assert info.value.key == "connector.db"


def test_bodies_of_one_model_are_the_same_bytes_as_encoding_each_alone(store: Store) -> None:
    class Local(BaseModel):  # no importable path: its body names no model
        word: str

    book = SchemaBook(store)
    requests = [
        _request("one"),
        _request("two", max_tokens=9, temperature=0.5, extras={"seed": 3, "top_p": 0.9}),
        _request("unicode: é “quoted” \\ \n"),
        dataclasses.replace(_request("three"), task=None),
        dataclasses.replace(_request("four"), task="other"),
        _request("five", model=Local),
        _request("one"),  # the remembered end of the body, again
    ]
    for request in requests:
        ref = schema_ref(request.schema_name, request.json_schema or {})[0]
        body = book.encode(request)
        assert body == encode_request(request, ref)
        data = orjson.loads(body)
        assert data["t"] == request.task and data["s"] == ref
    assert orjson.loads(book.encode(requests[-2]))["m"] is None
    assert orjson.loads(book.encode(requests[0]))["m"] == "tests.plugins.test_journal:Entry"
