"""Library callers: a bad request is an InputError before anything is journaled or sent."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plugins.batch.journal import SchemaBook
from plugins.factory import open_connector
from plugins.store import JournalRequest
from providers.errors import InputError
from providers.types import Message, Request
from tests.plugins.batch_helpers import Entry, gather

TYPO = {"type": "object", "properties": {"answer": {"type": "strin"}}}


@pytest.mark.parametrize("mode", ["immediate", "batch"])
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"json_schema": TYPO}, "schema: properties/answer/type: 'strin' is not a JSON"),
        ({"max_tokens": "ten"}, "max_tokens must be a positive integer, got 'ten'"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"model": 5}, "model must be a non-empty string, got 5 (int)"),
        ({"extras": [1]}, "extras must be an object"),
    ],
)
async def test_generate_refuses_a_bad_request_before_anything_is_journaled(
    fresh_emulator: Any, make_settings: Any, mode: str, fields: dict[str, Any], expected: str
) -> None:
    request = Request(
        **{"model": "gpt-4o-mini", "messages": (Message("user", "hi"),), **fields}  # type: ignore[arg-type]
    )
    connector = open_connector(make_settings(fresh_emulator))
    try:
        if mode == "batch":
            connector.enable_batch_mode()
        with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            await connector.generate(request)
        # The good requests around it still run.
        assert all(isinstance(r, Entry) for r in await gather(connector, ["a", "b"]))
        assert connector.store.count_requests("openai") == (
            {"succeeded": 2} if mode == "batch" else {}
        )
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()[mode]["requests"] == 2


async def test_structured_refuses_what_is_not_a_response_model(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        with pytest.raises(InputError, match="response_model must be a pydantic model class"):
            await connector.structured("x", dict, task="t")  # type: ignore[type-var]
        with pytest.raises(InputError, match="temperature must be a number from 0 to 2"):
            await connector.structured("x", Entry, task="t", temperature=7)
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["immediate"]["requests"] == 0


async def test_resume_fails_a_journaled_request_it_cannot_rebuild_or_would_refuse(
    fresh_emulator: Any, make_settings: Any
) -> None:
    """Queued by an earlier version: one body unreadable, one invalid today, two fine."""
    settings = make_settings(fresh_emulator)
    connector = open_connector(settings)
    good = [connector.build_request(f"queued {i}", Entry, task="t") for i in range(2)]
    invalid = Request("gpt-4o-mini", (Message("user", "bad"),), temperature=9)
    book = SchemaBook(connector.store)
    rows = [
        JournalRequest(r.key, r.model, r.task, book.encode(r), "queued", None, 0)
        for r in [*good, invalid]
    ]
    rows.append(JournalRequest("lb-damaged", "gpt-4o-mini", None, b'{"c": 1}', "queued", None, 0))
    connector.store.add_schemas(book.take())
    connector.store.queue_requests("openai", rows)
    try:
        sent = await asyncio.wait_for(connector.batch_strategy().resume(), 30)  # type: ignore[attr-defined]
        assert sent == 2
        store = connector.store
        assert store.count_requests("openai") == {"succeeded": 2, "failed": 2}
        errors = {
            k: r.error for k, r in store.get_requests("openai", [invalid.key, "lb-damaged"]).items()
        }
        assert "temperature must be a number" in errors[invalid.key]["message"]
        assert "cannot be rebuilt" in errors["lb-damaged"]["message"]
        assert errors["lb-damaged"]["type"] == "InputError"
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 2
