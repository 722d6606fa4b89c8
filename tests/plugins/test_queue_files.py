"""Batches refused for the provider's queue leave no uploaded file behind at the provider."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugins.batch.cleanup import NAMESPACE
from plugins.factory import open_connector
from tests.plugins.batch_helpers import Entry, gather
from tests.plugins.test_queue_cap import PROMPTS, SHARD, _counted_by_the_emulator, _settings


def _files_listed(emu: Any) -> list[str]:
    """The ids of the files the emulator's OpenAI file listing shows."""
    answer = httpx.get(
        f"{emu.base_url}/v1/files",
        params={"limit": 10_000},
        headers={"Authorization": "Bearer sk-test-dummy"},
    )
    answer.raise_for_status()
    return [f["id"] for f in answer.json()["data"]]


async def _answer_all(settings: Any) -> Any:
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        results = await gather(connector, PROMPTS)
        assert all(isinstance(r, Entry) for r in results), results
        await connector.execute_batch()  # every deletion done, not left for the next run
        return connector.store.shards()
    finally:
        await connector.aclose()


async def test_a_shard_split_for_the_queue_has_its_uploaded_file_deleted(
    fresh_emulator: Any,
    make_settings: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # The provider's queue holds one request and no shard of three: every
    # shard of three is uploaded, refused, and given up for smaller ones.
    theirs = await _counted_by_the_emulator(make_settings, "openai", tmp_path)
    one = max(theirs) // SHARD
    fresh_emulator.configure(batch_seconds=0.1, enqueued_token_limit=one + one // 2)
    settings = _settings(make_settings, fresh_emulator, "openai")
    with caplog.at_level(logging.INFO, logger="lexibatch.batch"):
        shards = await _answer_all(settings)
    split = [s for s in shards if s.state == "failed"]
    assert split and all(s.input_file_id for s in split)
    # Nothing is left at the provider: neither the split shards' inputs nor
    # the files of the batches collected.
    listed = _files_listed(fresh_emulator)
    assert not {s.input_file_id for s in split} & set(listed)
    assert listed == []
    reopened = open_connector(settings)
    try:
        assert list(reopened.store.iter_documents(NAMESPACE)) == []
    finally:
        reopened.store.close()
