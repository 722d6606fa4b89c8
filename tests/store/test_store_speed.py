"""Bulk writes of 100,000 rows: measured and printed (timings are reported, not asserted)."""

from __future__ import annotations

import hashlib
import time

import pytest

from plugins.store import CallRecord, JournalRequest, Store, StoredResult
from providers.types import Usage

N = 100_000


def _keys() -> list[str]:
    # Shaped like real request keys: hashes, so they arrive in random order.
    return ["lb-" + hashlib.sha256(str(i).encode()).hexdigest()[:48] for i in range(N)]


def test_100k_rows_in_one_transaction_each(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _keys()
    usage = Usage(120, 80)
    text = '{"synonyms": ["a", "b", "c"], "cefr": "B1", "example": "An example sentence."}'
    results = [
        StoredResult(
            k, "gpt-4o-mini", "define", "batch", text, usage, 0.0001, f"req_{i}", "batch_1"
        )
        for i, k in enumerate(keys)
    ]
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Define: apple"}]}'
    requests = [JournalRequest(k, "gpt-4o-mini", "define", body) for k in keys]
    calls = [
        CallRecord("openai", "gpt-4o-mini", "define", "batch", k, usage, 0.0001, 0.0002, "batch_1")
        for k in keys
    ]

    timings: dict[str, float] = {}

    def timed(name: str, fn: object) -> object:
        started = time.perf_counter()
        value = fn()  # type: ignore[operator]
        timings[name] = time.perf_counter() - started
        return value

    assert timed("put_results", lambda: store.put_results("openai", results)) == N
    assert timed("put_results (all present)", lambda: store.put_results("openai", results)) == 0
    assert timed("add_requests", lambda: store.add_requests("openai", requests)) == N
    assert (
        timed(
            "set_request_state",
            lambda: store.set_request_state("openai", keys, "submitted", shard_id="s1"),
        )
        == N
    )
    assert timed("record_calls", lambda: store.record_calls(calls)) == N
    found = timed("get_results", lambda: store.get_results("openai", keys))
    assert len(found) == N  # type: ignore[arg-type]
    states = timed("request_states", lambda: store.request_states("openai", keys))
    assert len(states) == N  # type: ignore[arg-type]
    with capsys.disabled():
        print()
        for name, seconds in timings.items():
            print(f"  {N:,} rows {name:<28} {seconds:.3f} s")
