"""Whatever a provider's code raises, callers meet the one error tree."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import BaseModel

from plugins.factory import open_connector
from providers.errors import ProviderError


class Word(BaseModel):
    word: str


async def test_a_call_that_raises_a_non_lexibatch_error_is_a_provider_defect(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))

    async def broken(request: Any) -> Any:
        raise KeyError("choices")

    connector.provider.complete = broken
    try:
        with pytest.raises(ProviderError) as info:
            await connector.structured("swift", Word)
    finally:
        await connector.aclose()
    error = info.value
    assert error.code == "provider_defect" and not error.retryable
    assert isinstance(error.__cause__, KeyError)
    assert "the call raised KeyError: 'choices' — a defect of the provider's adapter" in str(error)


async def test_a_batch_reader_that_raises_fails_its_requests_with_a_provider_defect(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    connector = open_connector(make_settings(fresh_emulator))

    async def broken(batch: Any) -> Any:
        raise AttributeError("'dict' object has no attribute 'custom_id'")
        yield  # an async generator, as results() is

    connector.provider.batch.results = broken
    try:
        connector.enable_batch_mode()
        with (
            caplog.at_level(logging.ERROR, logger="lexibatch.batch"),
            pytest.raises(ProviderError) as info,
        ):
            await connector.structured("swift", Word)
        shard = connector.store.shards()[0]
    finally:
        await connector.aclose()
    error = info.value
    assert error.code == "provider_defect" and isinstance(error.__cause__, AttributeError)
    assert f"batch shard {shard.shard_id} raised AttributeError" in str(error)
    assert "(during the batch's download)" in str(error)  # the step it came from
    # One line, no traceback; the shard stays journaled for the next run.
    [said] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert said.exc_info is None and "a defect, not a provider failure" in said.getMessage()
    assert shard.state not in ("collected", "failed")


async def test_a_poll_that_returns_the_wrong_type_is_a_defect_naming_the_poll(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))

    async def poll(batch_id: str) -> Any:
        return {"id": batch_id, "status": "completed"}  # a dict, not a BatchInfo

    connector.provider.batch.poll = poll
    try:
        connector.enable_batch_mode()
        with pytest.raises(ProviderError) as info:
            await connector.structured("swift", Word)
        shard = connector.store.shards()[0]
    finally:
        await connector.aclose()
    assert info.value.code == "provider_defect"
    assert "raised TypeError: the batch endpoint's poll returned dict, not BatchInfo" in str(
        info.value
    )
    assert shard.state == "created"  # journaled: the next run polls it again


async def test_a_call_its_adapter_never_ends_is_ended_past_the_providers_timeout(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import time

    import plugins.immediate
    from providers.errors import ProviderTimeoutError

    monkeypatch.setattr(plugins.immediate, "_DEADLINE_GRACE", 0.3)
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"timeout": 0.2}},
        retry={"max_attempts": 2, "timeout_retries": 1, "backoff_initial": 0.05},
    )
    connector = open_connector(settings)
    tries = 0

    async def hangs(request: Any) -> Any:
        nonlocal tries
        tries += 1
        await asyncio.Event().wait()

    connector.provider.complete = hangs
    started = time.monotonic()
    try:
        with pytest.raises(ProviderTimeoutError) as info:
            await connector.structured("swift", Word)
    finally:
        await connector.aclose()
    assert tries == 2 and time.monotonic() - started < 5
    assert "did not end within 0.5 s" in str(info.value)
    assert "the provider's timeout (0.2 s)" in str(info.value)
