"""A cached answer that no longer fits its response model is asked again and paid for once.

A response model that gains a validator keeps its JSON schema, so its
requests keep their keys and find their old answers in the cache. An answer
the model now rejects is asked again; the new answer must replace the old
one, or every later run would pay for it again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from plugins.factory import open_connector
from plugins.store import Store
from plugins.store.keys import key_cell
from tests.plugins.batch_helpers import Entry, crash_once, gather

PROMPTS = [f"stale {i}" for i in range(4)]
# Fits Entry's JSON schema's shape no more: ``level`` is missing.
STALE = '{"word": "old"}'


def _spoil_answers(db: Path, prompts: list[str], settings: Any) -> list[str]:
    """Make the cached answers of ``prompts`` ones the response model now rejects."""
    connector = open_connector(settings)
    keys = [connector.build_request(p, Entry, task="t").key for p in prompts]
    connector.store.close()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "UPDATE results SET text = ? WHERE key = ?", [(STALE, key_cell(k)) for k in keys]
        )
        assert conn.total_changes == len(keys)
    return keys


async def _run(settings: Any, prompts: list[str], *, batch: bool) -> list[Any]:
    connector = open_connector(settings)
    try:
        if batch:
            connector.enable_batch_mode()
        return await gather(connector, prompts)
    finally:
        await connector.aclose()


@pytest.mark.parametrize("batch", [False, True], ids=["immediate", "batch"])
async def test_an_answer_that_no_longer_fits_is_paid_for_once_across_runs(
    fresh_emulator: Any, make_settings: Any, tmp_path: Path, batch: bool
) -> None:
    settings = make_settings(fresh_emulator)
    mode = "batch" if batch else "immediate"
    await _run(settings, PROMPTS, batch=batch)
    keys = _spoil_answers(tmp_path / "store.db", PROMPTS, settings)

    for _ in range(3):  # asked again once; the runs after it find the new answer
        results = await _run(settings, PROMPTS, batch=batch)
        assert all(isinstance(r, Entry) for r in results), results

    billing = fresh_emulator.billing()
    assert billing[mode]["requests"] == 2 * len(PROMPTS)
    with Store(tmp_path / "store.db") as store:
        assert all(store.get_result("openai", k).text != STALE for k in keys)  # type: ignore[union-attr]
        # The old answers were paid for: they are set aside, not deleted.
        assert [[r.text for r in store.retired_results("openai", k)] for k in keys] == [
            [STALE]
        ] * len(keys)
        if batch:
            assert store.count_requests("openai") == {"succeeded": len(PROMPTS)}


async def test_an_answer_asked_again_in_a_batch_that_crashed_is_collected_not_paid_again(
    make_settings: Any, tmp_path: Path
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=1.0)) as emu:
        settings = make_settings(emu)
        await _run(settings, PROMPTS, batch=True)
        _spoil_answers(tmp_path / "store.db", PROMPTS, settings)
        # Asked again in a new batch; the process dies once that batch exists.
        await crash_once(settings, PROMPTS)

        results = await _run(settings, PROMPTS, batch=True)
        assert all(isinstance(r, Entry) for r in results), results
        billing = emu.billing()
    assert billing["batch"]["requests"] == 2 * len(PROMPTS)
    assert billing["duplicates"] == len(PROMPTS)  # the first answers, not the re-run


def test_retiring_an_answer_another_run_replaced_changes_nothing(tmp_path: Path) -> None:
    from plugins.store import StoredResult
    from providers.types import Usage

    with Store(tmp_path / "s.db") as store:
        store.put_results("openai", [StoredResult("k", "m", None, "batch", "new", Usage(1, 2))])
        assert not store.retire_result("openai", "k", text="old", reason="does not fit")
        assert store.get_result("openai", "k").text == "new"  # type: ignore[union-attr]
        assert store.retired_results("openai", "k") == []
        assert store.retire_result("openai", "k", text="new", reason="does not fit")
        assert store.get_result("openai", "k") is None
        assert [r.text for r in store.retired_results("openai", "k")] == ["new"]


async def test_an_answer_retired_while_its_batch_is_being_collected_is_billed_once(
    fresh_emulator: Any, make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugins.batch.executor as executor
    from plugins.config import RetrySettings
    from providers.errors import ProviderConnectionError
    from providers.openai import OpenAIBatchEndpoint

    # Results are stored a line at a time, and the download breaks after two, on
    # every try of the first collection: the shard stays journaled with two answers
    # stored, its requests submitted.
    monkeypatch.setattr(executor, "RESULT_CHUNK", 1)
    original = OpenAIBatchEndpoint.results
    breaks = 0

    async def results(self: Any, batch: Any) -> Any:
        nonlocal breaks
        read = 0
        async for item in original(self, batch):
            if breaks < RetrySettings().max_attempts and read == 2:
                breaks += 1
                raise ProviderConnectionError("connection reset while reading the output file")
            read += 1
            yield item

    monkeypatch.setattr(OpenAIBatchEndpoint, "results", results)
    settings = make_settings(fresh_emulator)
    await _run(settings, PROMPTS, batch=True)
    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute("UPDATE results SET text = ?", (STALE,)).rowcount == 2

    # The two stored answers no longer fit: retired, then read again from the batch.
    results_ = await _run(settings, PROMPTS, batch=False)
    assert all(isinstance(r, Entry) for r in results_), results_
    billing = fresh_emulator.billing()
    with Store(tmp_path / "store.db") as store:
        ledger = sum(r.requests for r in store.cost_report())
    assert billing["batch"]["requests"] == len(PROMPTS) and billing["duplicates"] == 0
    assert ledger == billing["batch"]["requests"] + billing["immediate"]["requests"]


async def test_an_answer_another_run_replaced_meanwhile_is_used_not_asked_again(
    fresh_emulator: Any, make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(fresh_emulator)
    await _run(settings, PROMPTS[:1], batch=False)
    _spoil_answers(tmp_path / "store.db", PROMPTS[:1], settings)
    fresh = '{"word": "new", "level": "B2"}'
    original = Store.retire_result

    def replaced_first(self: Store, provider: str, key: str, **kwargs: Any) -> bool:
        # Between our read and our retire, another run retired the stale
        # answer and stored a new one.
        with sqlite3.connect(tmp_path / "store.db") as conn:
            conn.execute("UPDATE results SET text = ? WHERE key = ?", (fresh, key_cell(key)))
        return original(self, provider, key, **kwargs)

    monkeypatch.setattr(Store, "retire_result", replaced_first)
    connector = open_connector(settings)
    try:
        answer = await connector.structured(PROMPTS[0], Entry, task="t")
    finally:
        await connector.aclose()
    assert answer == Entry(word="new", level="B2")
    assert fresh_emulator.billing()["immediate"]["requests"] == 1  # the first run only
