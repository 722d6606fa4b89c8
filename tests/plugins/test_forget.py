"""Giving up on a batch by hand: only one that runs no more, keeping what it answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plugins.batch.forget import forget_batch
from plugins.factory import open_connector
from plugins.store import StoredResult
from providers.errors import InputError, StoreBusyError
from providers.types import Usage
from tests.plugins.batch_helpers import Entry, break_results_once, crash_after_create, gather

PROMPTS = [f"forget {i}" for i in range(5)]


async def _stopped_after_its_batch_ended(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch run whose results download broke off: its shard stays journaled, ended."""
    break_results_once(monkeypatch)
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, PROMPTS)
        assert all(not isinstance(r, Entry) for r in results), results
    finally:
        await connector.aclose()


async def test_an_ended_batch_is_forgotten_only_when_asked_and_keeps_its_answers(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(fresh_emulator)
    await _stopped_after_its_batch_ended(settings, monkeypatch)
    connector = open_connector(settings)
    try:
        (shard,) = connector.store.shards()
        assert shard.state == "ended"
        endpoint = connector.provider.batch
        with pytest.raises(InputError, match=r"ended \(completed\) .*add --yes"):
            await forget_batch(connector.store, endpoint, shard)
        assert connector.store.get_shard(shard.shard_id).state == "ended"  # type: ignore[union-attr]

        # One answer was stored before the download broke off: it is kept.
        kept = connector.build_request(PROMPTS[0], Entry, task="t").key
        connector.store.put_results(
            "openai",
            [
                StoredResult(
                    kept, "gpt-4o-mini", "t", "batch", '{"word":"w","level":"A1"}', Usage(1, 1)
                )
            ],
        )
        done = await forget_batch(connector.store, endpoint, shard, confirmed=True)
        assert (done.provider_says, done.answered, done.resend) == ("completed", 1, 4)
        assert connector.store.get_shard(shard.shard_id).state == "failed"  # type: ignore[union-attr]
        assert connector.store.count_requests("openai") == {"succeeded": 1, "queued": 4}

        # The next run answers the four again and reads the kept one from the cache.
        connector.enable_batch_mode()
        results = await gather(connector, PROMPTS)
        assert all(isinstance(r, Entry) for r in results), results
        assert connector.store.count_requests("openai") == {"succeeded": 5}
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 5 + 4


async def test_forgetting_waits_for_no_batch_run_on_the_same_store(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(fresh_emulator)
    await _stopped_after_its_batch_ended(settings, monkeypatch)
    runner = open_connector(settings)
    try:
        runner.enable_batch_mode()
        runner.batch_strategy()  # a batch run holds the store's lease
        (shard,) = runner.store.shards()
        with pytest.raises(StoreBusyError):
            await forget_batch(runner.store, runner.provider.batch, shard, confirmed=True)
        assert runner.store.get_shard(shard.shard_id).state == "ended"  # type: ignore[union-attr]
    finally:
        await runner.aclose()


async def test_an_anthropic_create_in_doubt_whose_batch_is_gone_can_be_forgotten(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from providers.anthropic import AnthropicBatchEndpoint
    from providers.emulator import Emulator, EmulatorConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    prompts = PROMPTS[:3]
    with Emulator(EmulatorConfig(batch_seconds=0.0)) as emu:
        settings = make_settings(emu, provider="anthropic")
        await crash_after_create(settings, emu, prompts, AnthropicBatchEndpoint, monkeypatch)
        emu.reset()  # the batch is gone at the provider

        connector = open_connector(settings)
        try:
            (shard,) = connector.store.shards()
            assert shard.state == "submitting" and shard.batch_id is None
            with pytest.raises(InputError, match=r"not found .*add --yes"):
                await forget_batch(connector.store, connector.provider.batch, shard)
            done = await forget_batch(
                connector.store, connector.provider.batch, shard, confirmed=True
            )
            assert (done.provider_says, done.resend) == ("not found", 3)
            # The journal resumes them without the original input.
            assert await connector.batch_strategy().resume() == 3  # type: ignore[attr-defined]
            assert connector.store.count_requests("anthropic") == {"succeeded": 3}
        finally:
            await connector.aclose()
        assert emu.billing()["batch"]["requests"] == 3


def _file_ids(emu: Any) -> set[str]:
    import httpx

    with httpx.Client(base_url=emu.base_url, headers={"Authorization": "Bearer k"}) as http:
        return {f["id"] for f in http.get("/v1/files").json()["data"]}


async def test_a_forgotten_shard_leaves_no_input_file_but_keeps_the_paid_output(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(fresh_emulator)
    await _stopped_after_its_batch_ended(settings, monkeypatch)
    connector = open_connector(settings)
    try:
        (shard,) = connector.store.shards()
        batch = await connector.provider.batch.poll(shard.batch_id)  # type: ignore[union-attr,arg-type]
        assert shard.input_file_id and batch.output_file_id
        assert {shard.input_file_id, batch.output_file_id} <= _file_ids(fresh_emulator)
        done = await forget_batch(connector.store, connector.provider.batch, shard, confirmed=True)
        assert done.input_deleted == shard.input_file_id
        # The input is of no more use; the output holds answers that were paid for.
        left = _file_ids(fresh_emulator)
        assert shard.input_file_id not in left and batch.output_file_id in left
    finally:
        await connector.aclose()


async def test_a_forgotten_shards_input_is_kept_when_files_are_kept(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(fresh_emulator)
    await _stopped_after_its_batch_ended(settings, monkeypatch)
    connector = open_connector(settings)
    try:
        (shard,) = connector.store.shards()
        done = await forget_batch(
            connector.store, connector.provider.batch, shard, confirmed=True, delete_files=False
        )
        assert done.input_deleted is None and done.resend == len(PROMPTS)
        assert shard.input_file_id in _file_ids(fresh_emulator)
    finally:
        await connector.aclose()


async def test_a_failed_delete_of_a_forgotten_input_is_left_to_the_next_run(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    import logging

    from plugins.batch.cleanup import NAMESPACE

    settings = make_settings(fresh_emulator)
    await _stopped_after_its_batch_ended(settings, monkeypatch)
    state = fresh_emulator.app.state
    works = state.delete_file

    def broken(file_id: str) -> bool:
        raise OSError("the file service is down")  # the emulator answers a 500

    connector = open_connector(settings)
    try:
        (shard,) = connector.store.shards()
        state.delete_file = broken
        with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
            done = await forget_batch(
                connector.store, connector.provider.batch, shard, confirmed=True
            )
        # Forgotten all the same; the delete is journaled for the next run.
        assert done.input_deleted is None and done.resend == len(PROMPTS)
        assert "could not be deleted" in caplog.text
        assert [k for k, _ in connector.store.iter_documents(NAMESPACE)] == [shard.shard_id]
        state.delete_file = works
        connector.enable_batch_mode()
        results = await gather(connector, PROMPTS)
        assert all(isinstance(r, Entry) for r in results), results
        # The next batch run deletes it, beside its own work.
        for _ in range(100):
            if connector.store.get_document(NAMESPACE, shard.shard_id) is None:
                break
            await asyncio.sleep(0.05)
        assert connector.store.get_document(NAMESPACE, shard.shard_id) is None
        assert shard.input_file_id not in _file_ids(fresh_emulator)
    finally:
        await connector.aclose()
