"""A client timeout shorter than the answer: each timed-out try is billed, so few are made."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from plugins.factory import open_connector
from providers.errors import ProviderTimeoutError
from tests.plugins.batch_helpers import Entry


async def _ask_slowly(make_settings: Any, emu: Any, **retry: Any) -> ProviderTimeoutError:
    settings = make_settings(
        emu, providers={"openai": {"base_url": emu.base_url + "/v1", "timeout": 0.3}}, retry=retry
    )
    connector = open_connector(settings)
    try:
        with pytest.raises(ProviderTimeoutError) as caught:
            await connector.structured("a slow question", Entry, task="t")
    finally:
        await connector.aclose()
    # The emulator bills an abandoned call once its slow answer is ready.
    await asyncio.sleep(1.0)
    return caught.value


async def test_a_call_that_outlives_the_client_timeout_is_sent_at_most_twice(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_emulator.configure(slow=1.0, slow_seconds=0.6)
    with caplog.at_level(logging.WARNING, "lexibatch.retry"):
        error = await _ask_slowly(make_settings, fresh_emulator)
    assert "gave up after 2 tries" in str(error)
    billed = fresh_emulator.billing()
    # Each timed-out try was paid at the provider: one retry, not five.
    assert list(billed["by_key"]["immediate"].values()) == [2], billed
    said = [r.getMessage() for r in caplog.records if "may bill the call" in r.getMessage()]
    assert len(said) == 1 and "providers.openai.timeout" in said[0]


async def test_no_retry_after_a_timeout_when_timeout_retries_is_zero(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(slow=1.0, slow_seconds=0.6)
    await _ask_slowly(make_settings, fresh_emulator, timeout_retries=0)
    assert list(fresh_emulator.billing()["by_key"]["immediate"].values()) == [1]


async def test_the_emulator_can_forget_abandoned_calls(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(slow=1.0, slow_seconds=0.6, bill_abandoned=False)
    await _ask_slowly(make_settings, fresh_emulator)
    assert fresh_emulator.billing()["immediate"]["requests"] == 0
