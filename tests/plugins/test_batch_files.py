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
