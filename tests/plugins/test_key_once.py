"""A batched request's key is turned into its stored form at most once after it is made.

The journal row takes the bytes the key was made from; an answer's cache and
ledger rows share one conversion. The waiting request keeps no copy of them
(memory per queued request stays flat).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import plugins.batch.answers
import plugins.store.cache
import plugins.store.costs
import plugins.store.journal
from plugins.batch.journal import SchemaBook
from plugins.factory import open_connector
from plugins.store.keys import key_cell
from providers.schema import fix_schema, make_strict
from providers.types import Message, Request
from tests.plugins.batch_helpers import Entry


async def test_journal_rows_reuse_the_key_bytes_and_an_answer_converts_its_key_once(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[str] = []

    def counted(key: str) -> bytes | str:
        converted.append(key)
        return key_cell(key)

    # Where the journal, cache and ledger rows are written, and where answers are judged.
    for module in (
        plugins.store.journal,
        plugins.store.cache,
        plugins.store.costs,
        plugins.batch.answers,
    ):
        monkeypatch.setattr(module, "key_cell", counted)
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        build = connector.build_request
        promises = [strategy.submit(build(f"word {i}", Entry, task="t")) for i in range(20)]
        await connector.execute_batch()
        assert all(isinstance(p.result().output, Entry) for p in promises)
        again = [build(f"word {i}", Entry, task="t") for i in range(20)]
        keys = [r.key for r in again]
        # Looked up by the bytes the requests keep: no conversion counted here.
        assert set(connector.store.get_results_of(connector.provider_name, again)) == set(keys)
        (row,) = connector.store.cost_report()
        assert row.requests == 20
    finally:
        await connector.aclose()
    # One conversion an answer (for its cache and ledger rows), none for the journal.
    assert sorted(converted) == sorted(keys)


async def test_submit_all_serializes_each_request_once_for_its_key_and_its_journal_row(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    serialized: list[str] = []
    plain = Request.canonical_json_without_schema

    def counted(self: Request) -> bytes:
        serialized.append(self.messages[-1].content)
        return plain(self)

    monkeypatch.setattr(Request, "canonical_json_without_schema", counted)
    encoded: list[tuple[Request, bytes]] = []
    encode = SchemaBook.encode

    def recorded(self: SchemaBook, request: Request, bare: bytes | None = None) -> bytes:
        body = encode(self, request, bare)
        encoded.append((request, body))
        return body

    monkeypatch.setattr(SchemaBook, "encode", recorded)
    schema = fix_schema(make_strict(Entry.model_json_schema()))
    requests = [
        Request("gpt-4o-mini", (Message("user", f"word {i}"),), json_schema=schema, task="t")
        for i in range(20)
    ]
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        futures = await connector.submit_all(requests, checked=True)
        await connector.execute_batch()
        assert all(f.result().output.keys() == {"word", "level"} for f in futures)
        journaled = connector.store.get_requests(connector.provider_name, [r.key for r in requests])
        assert set(journaled) == {r.key for r in requests}
    finally:
        await connector.aclose()
    assert sorted(serialized) == sorted(f"word {i}" for i in range(20))
    # Each journal row holds its own request's body: the one its key was hashed from.
    assert len(encoded) == 20
    for request, body in encoded:
        assert orjson.loads(body)["c"] == orjson.loads(plain(request))
