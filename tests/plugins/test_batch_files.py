"""A batch's files are deleted at the provider once its results are stored (journaled)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel

from plugins.batch.cleanup import NAMESPACE
from plugins.factory import open_connector
from plugins.store import Store
from providers.emulator import Emulator, EmulatorConfig


class Word(BaseModel):
    word: str


def _files(emu: Emulator) -> list[dict[str, Any]]:
    with httpx.Client(base_url=emu.base_url, headers={"Authorization": "Bearer k"}) as http:
        data: list[dict[str, Any]] = http.get("/v1/files").json()["data"]
        return data


async def _run(settings: Any, words: list[str]) -> list[Word]:
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        pending = [asyncio.ensure_future(connector.structured(w, Word)) for w in words]
        await connector.execute_batch()
        return [await p for p in pending]
    finally:
        await connector.aclose()


async def test_collected_batches_leave_no_files_at_the_provider(make_settings: Any) -> None:
    with Emulator(EmulatorConfig(item_error=0.5, seed=3)) as emu:
        settings = make_settings(emu, batch={"max_retry_rounds": 0})
        connector = open_connector(settings)
        try:
            connector.enable_batch_mode()
            pending = [
                asyncio.ensure_future(connector.structured(w, Word))
                for w in ("swift", "slow", "quick", "bright", "dim", "late")
            ]
            await connector.execute_batch()
            outcomes = await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await connector.aclose()
        # Both an output and an error file were made, and deleted with the input.
        assert any(isinstance(o, Word) for o in outcomes)
        assert any(isinstance(o, Exception) for o in outcomes)
        assert _files(emu) == []
        assert not list(Store(str(settings.connector.db)).iter_documents(NAMESPACE))


async def test_files_stay_when_delete_files_is_off(make_settings: Any) -> None:
    with Emulator(EmulatorConfig()) as emu:
        settings = make_settings(emu, batch={"delete_files": False})
        assert (await _run(settings, ["swift"]))[0].word
        purposes = sorted(f["purpose"] for f in _files(emu))
        assert purposes == ["batch", "batch_output"]


async def test_files_journaled_before_a_crash_are_deleted_by_the_next_run(
    make_settings: Any,
) -> None:
    with Emulator(EmulatorConfig()) as emu:
        kept = make_settings(emu, batch={"delete_files": False})
        await _run(kept, ["swift"])
        files = [f["id"] for f in _files(emu)]
        assert len(files) == 2
        # As a run leaves it when it stops between "collected" and the deletion.
        store = Store(str(kept.connector.db))
        store.put_document(
            NAMESPACE, "shard-x", {"provider": "openai", "batch_id": "b", "files": files}
        )
        store.close()
        settings = make_settings(emu)
        await _run(settings, ["slow"])
        assert _files(emu) == []
        assert not list(Store(str(settings.connector.db)).iter_documents(NAMESPACE))


async def test_the_ledger_of_a_batch_is_checked_against_the_providers_totals(
    make_settings: Any, caplog: Any
) -> None:
    from plugins.batch.ledgercheck import check_ledger
    from providers.types import BatchInfo, BatchState, Usage

    with Emulator(EmulatorConfig()) as emu:
        settings = make_settings(emu)
        await _run(settings, ["swift", "slow"])
        store = Store(str(settings.connector.db))
        batch_id = store.shards("openai")[0].batch_id
        assert batch_id is not None
        async with httpx.AsyncClient(
            base_url=emu.base_url, headers={"Authorization": "Bearer k"}
        ) as http:
            raw = (await http.get(f"/v1/batches/{batch_id}")).json()
    billed = raw["usage"]
    assert billed["input_tokens"] > 0
    calls, recorded = store.batch_usage(batch_id)
    assert calls == 2
    assert (recorded.input_tokens, recorded.output_tokens) == (
        billed["input_tokens"],
        billed["output_tokens"],
    )
    agreed = BatchInfo(batch_id, BatchState.COMPLETED, usage=recorded)
    assert check_ledger(store, agreed) is True
    short = BatchInfo(batch_id, BatchState.COMPLETED, usage=Usage(recorded.input_tokens + 7, 1))
    assert check_ledger(store, short) is False
    assert batch_id in caplog.text and "ledger" in caplog.text
    assert check_ledger(store, BatchInfo(batch_id, BatchState.COMPLETED)) is None


async def test_litellm_batches_delete_their_files_too(make_settings: Any) -> None:
    with Emulator(EmulatorConfig()) as emu:
        settings = make_settings(emu, provider="litellm", connector={"model": "openai/gpt-4o-mini"})
        assert (await _run(settings, ["swift"]))[0].word
        assert _files(emu) == []
