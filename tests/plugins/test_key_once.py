"""A batched request's key is turned into its stored form once, not for each row it writes."""

from __future__ import annotations

from typing import Any

import pytest

import plugins.batch.promise
import plugins.store.cache
import plugins.store.costs
import plugins.store.journal
from plugins.factory import open_connector
from plugins.store.keys import key_cell
from tests.plugins.batch_helpers import Entry


async def test_journal_cache_and_ledger_rows_reuse_the_key_bytes(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[str] = []

    def counted(key: str) -> bytes | str:
        converted.append(key)
        return key_cell(key)

    # Where the journal, cache and ledger rows are written, and where an answer's row is made.
    modules = (
        plugins.store.journal,
        plugins.store.cache,
        plugins.store.costs,
        plugins.batch.promise,
    )
    for module in modules:
        monkeypatch.setattr(module, "key_cell", counted)
    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        build = connector.build_request
        promises = [strategy.submit(build(f"word {i}", Entry, task="t")) for i in range(20)]
        await connector.execute_batch()
        assert all(isinstance(p.result().output, Entry) for p in promises)
        keys = [build(f"word {i}", Entry, task="t").key for i in range(20)]
        assert set(connector.store.get_results(connector.provider_name, keys)) == set(keys)
        (row,) = connector.store.cost_report()
        assert row.requests == 20
    finally:
        await connector.aclose()
    # The journal rows carry the bytes the key was made from; an answer's ledger
    # and cache rows share one conversion of its key.
    assert sorted(converted) == sorted(keys)
