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
    # Each call is estimated at ~108 tokens (8 of framing, 100 of max_tokens):
    # 11,000 a minute lets ~101 go at once, then ~183 tokens a second.
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"base_url": fresh_emulator.base_url + "/v1", "tpm": 11_000}},
    )
    connector = open_connector(settings)
    try:
        elapsed = await _timed(connector, 106, "tpm")
    finally:
        await connector.aclose()
    assert 1.0 <= elapsed < 10
