"""Requests-per-minute and tokens-per-minute budgets of the immediate strategy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel

from plugins.factory import open_connector


class Answer(BaseModel):
    """A small response model."""

    text: str


async def _timed(connector: Any, n: int, tag: str) -> float:
    started = time.monotonic()
    await asyncio.gather(
        *(connector.structured(f"{tag}{i}", Answer, max_tokens=100) for i in range(n))
    )
    return time.monotonic() - started


async def test_rpm_holds_calls_past_the_burst(fresh_emulator: Any, make_settings: Any) -> None:
    free = open_connector(make_settings(fresh_emulator))
    try:
        unlimited = await _timed(free, 124, "free")
    finally:
        await free.aclose()
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"base_url": fresh_emulator.base_url + "/v1", "rpm": 120}},
    )
    limited = open_connector(settings)
    try:
        # 120 a minute: the first 120 go at once, the last 4 at two a second.
        elapsed = await _timed(limited, 124, "rpm")
    finally:
        await limited.aclose()
    # The hold is a floor whatever the machine's load: the 124th call cannot
    # leave before its slot two seconds in; without a budget nothing waits.
    assert elapsed >= 1.2
    assert elapsed < unlimited + 10


async def test_tpm_counts_estimated_tokens(fresh_emulator: Any, make_settings: Any) -> None:
    from plugins.pacing import tpm_tokens
    from providers.tokens import estimate_tokens

    probe = open_connector(make_settings(fresh_emulator))
    try:
        request = probe.build_request("tpm0", Answer, max_tokens=100)
    finally:
        await probe.aclose()
    # Each call takes its input, by the one estimator, and its whole max_tokens.
    each = tpm_tokens(request)
    assert each == estimate_tokens(request)[0] + 100
    # A budget of 100 calls a minute lets 100 go at once, then one each 0.6 s:
    # the last of 106 leaves 3.6 s in.
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"base_url": fresh_emulator.base_url + "/v1", "tpm": each * 100}},
    )
    connector = open_connector(settings)
    try:
        elapsed = await _timed(connector, 106, "tpm")
    finally:
        await connector.aclose()
    assert 2.5 <= elapsed < 12
