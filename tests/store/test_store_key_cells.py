"""Rows handed the key's stored form write the very cells the store makes from the key."""

from __future__ import annotations

from plugins.store import CallRecord, JournalRequest, Store, StoredResult
from plugins.store.keys import key_cell, key_text
from providers.types import Message, Request, Usage


def _keys(n: int) -> list[tuple[str, bytes]]:
    requests = [Request("gpt-4o-mini", (Message("user", f"word {i}"),)) for i in range(n)]
    return [(r.key, r.key_bytes) for r in requests]


def _stored(store: Store, table: str) -> list[object]:
    return sorted(row[0] for row in store.query(f"SELECT key FROM {table}"))


def test_carried_and_converted_cells_are_the_same_rows(store: Store) -> None:
    carried, converted = _keys(3), _keys(6)[3:]
    usage = Usage(10, 5)
    for rows, with_cell in ((carried, True), (converted, False)):
        journal = [
            JournalRequest(k, "gpt-4o-mini", "t", b"{}", cell=cell if with_cell else None)
            for k, cell in rows
        ]
        results = [
            StoredResult(k, "gpt-4o-mini", "t", "batch", "{}", usage, 0.1, None, "b1", 0.0,
                         cell if with_cell else None)
            for k, cell in rows
        ]  # fmt: skip
        calls = [
            CallRecord("openai", "gpt-4o-mini", "t", "batch", k, usage, 0.1, 0.2, "b1", None,
                       cell if with_cell else None)
            for k, cell in rows
        ]  # fmt: skip
        assert store.queue_requests("openai", journal) == 3
        store.put_results("openai", results)
        store.record_calls(calls)
    cells = sorted(key_cell(k) for k, _ in carried + converted)
    assert all(type(c) is bytes and len(c) == 24 for c in cells)
    for table in ("requests", "results", "calls"):
        assert _stored(store, table) == cells
    keys = [k for k, _ in carried + converted]
    assert set(store.get_requests("openai", keys)) == set(keys)
    assert set(store.get_results("openai", keys)) == set(keys)
    # Queued again with its cell carried: the same row, not a second one.
    again = [JournalRequest(k, "gpt-4o-mini", "t", b"{}", cell=c) for k, c in carried]
    store.queue_requests("openai", again)
    assert _stored(store, "requests") == cells


def test_only_the_exact_form_of_a_key_is_stored_as_bytes() -> None:
    lower = "lb-" + "0a" * 24
    digits = "lb-" + "01" * 24  # no letter at all: still the exact form
    for key in (lower, digits):
        cell = key_cell(key)
        assert type(cell) is bytes and len(cell) == 24 and key_text(cell) == key
    upper = "lb-" + "0A" * 24
    mixed = "lb-" + "0a" * 23 + "0B"
    spaced = "lb-" + "0a " * 16
    short = "lb-" + "0a" * 23
    for key in (upper, mixed, spaced, short, "k1", "lb-" + "zz" * 24):
        assert key_cell(key) == key and key_text(key_cell(key)) == key
