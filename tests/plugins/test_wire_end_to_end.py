"""Through the whole connector: a refused key, an over-long prompt, a cut answer, rate limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import BaseModel

from plugins.factory import open_connector
from providers.emulator import Emulator, EmulatorConfig
from providers.errors import AuthenticationError, ContextLengthError, TruncatedError


class Word(BaseModel):
    word: str


async def _batch(settings: Any, prompts: list[str], **opts: Any) -> list[Any]:
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        pending = [asyncio.ensure_future(connector.structured(p, Word, **opts)) for p in prompts]
        await connector.execute_batch()
        return list(await asyncio.gather(*pending, return_exceptions=True))
    finally:
        await connector.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_refused_key_is_an_authentication_error(make_settings: Any, provider: str) -> None:
    # The api_keys fixture sets dummy keys the emulator does not hold.
    with Emulator(EmulatorConfig(api_keys=["sk-the-only-good-key"])) as emu:
        settings = make_settings(emu, provider=provider)
        connector = open_connector(settings)
        try:
            with pytest.raises(AuthenticationError) as info:
                await connector.structured("swift", Word)
        finally:
            await connector.aclose()
        assert info.value.status_code == 401
        assert "sk-test-dummy" not in str(info.value) and "sk-ant-test-dummy" not in str(info.value)
        outcomes = await _batch(settings, ["slow"])
        assert isinstance(outcomes[0], AuthenticationError)
        assert emu.billing()["batch"]["requests"] == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_over_long_prompt_fails_alone_and_for_good(
    make_settings: Any, provider: str
) -> None:
    with Emulator(EmulatorConfig(context_window=60)) as emu:
        settings = make_settings(emu, provider=provider)
        long = "word " * 400
        connector = open_connector(settings)
        try:
            with pytest.raises(ContextLengthError):
                await connector.structured(long, Word)
        finally:
            await connector.aclose()
        short, too_long = await _batch(settings, ["swift", long + "again"])
        assert isinstance(short, Word)
        assert isinstance(too_long, ContextLengthError) and not too_long.retryable
        # Not sent again in another round: it was refused for good.
        assert emu.billing()["batch"]["requests"] == 1


@pytest.mark.parametrize("mode", ["immediate", "batch"])
async def test_an_answer_cut_at_max_tokens_is_asked_again_with_more(
    make_settings: Any, mode: str
) -> None:
    with Emulator(EmulatorConfig()) as emu:
        settings = make_settings(emu, immediate={"reask": 5}, batch={"max_retry_rounds": 5})
        if mode == "immediate":
            connector = open_connector(settings)
            try:
                answer = await connector.structured("swift", Word, max_tokens=2)
            finally:
                await connector.aclose()
        else:
            (answer,) = await _batch(settings, ["swift"], max_tokens=2)
        assert isinstance(answer, Word) and answer.word
        billed = emu.billing()[mode]
        assert billed["requests"] >= 2  # cut, then asked again with more tokens
        if mode == "immediate":
            # Each retry is another body (more tokens); batches count by custom_id instead.
            assert billed["duplicates"] == 0


@pytest.mark.parametrize(
    ("reask", "asked", "hit", "offered"),
    [
        (0, 1, 1, 2),  # no room to ask again: cut at 1, 2 offered
        # Asked again with 2 and cut again: the error names the last limit and
        # offers only a larger one.
        (1, 2, 2, 4),
    ],
)
async def test_a_cut_answer_with_no_room_left_is_a_truncated_error_naming_the_last_limit(
    make_settings: Any, reask: int, asked: int, hit: int, offered: int
) -> None:
    with Emulator(EmulatorConfig()) as emu:
        settings = make_settings(emu, immediate={"reask": reask})
        connector = open_connector(settings)
        try:
            with pytest.raises(TruncatedError) as info:
                await connector.structured("swift", Word, max_tokens=1)
        finally:
            await connector.aclose()
        assert emu.billing()["immediate"]["requests"] == asked
    assert info.value.max_tokens == hit and info.value.retry_max_tokens == offered
    assert f"({hit} tokens" in str(info.value) and info.value.raw_stop_reason == "length"


async def test_immediate_calls_pause_before_the_limit_rather_than_meet_a_429(
    make_settings: Any,
) -> None:
    with Emulator(EmulatorConfig(rpm_limit=2, rate_window=1.0)) as emu:
        one_at_a_time = {"base_url": emu.base_url + "/v1", "max_concurrency": 1}
        settings = make_settings(emu, providers={"openai": one_at_a_time})
        connector = open_connector(settings)
        started = time.monotonic()
        try:
            answers = [await connector.structured(f"word {i}", Word) for i in range(5)]
        finally:
            await connector.aclose()
        elapsed = time.monotonic() - started
        assert all(a.word for a in answers)
        assert emu.app.limiter.refused == 0  # never refused: it waited for the reset instead
        assert elapsed >= 1.0  # five calls at two per second
