"""The connector in immediate mode against the emulator: typed calls, cache, retries, cost."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from plugins.config import Settings
from plugins.factory import open_connector
from providers.errors import (
    InputError,
    InvalidRequestError,
    MissingAPIKeyError,
    SchemaValidationError,
)


class Synonyms(BaseModel):
    """A small response model."""

    synonyms: list[str]
    level: str


async def test_structured_call_is_typed_and_a_repeat_is_free(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        first = await connector.structured("Synonyms of swift", Synonyms, task="synonyms")
        assert isinstance(first, Synonyms) and first.synonyms
        again = await connector.generate(
            connector.build_request("Synonyms of swift", Synonyms, task="synonyms")
        )
        assert again.cached and again.cost_usd == 0.0 and again.output == first
        report = connector.store.cost_report()
        assert [(r.mode, r.task, r.requests) for r in report] == [("immediate", "synonyms", 1)]
        assert report[0].cost_usd > 0  # gpt-4o-mini is priced from the table
    finally:
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["immediate"]["requests"] == 1 and billing["duplicates"] == 0


async def test_concurrent_identical_calls_are_sent_once(
    fresh_emulator: Any, make_settings: Any
) -> None:
    import asyncio

    connector = open_connector(make_settings(fresh_emulator))
    try:
        results = await asyncio.gather(
            *(connector.structured("same prompt", Synonyms) for _ in range(20))
        )
        assert len({r.model_dump_json() for r in results}) == 1
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["immediate"]["requests"] == 1


@pytest.mark.parametrize("marker", ["rate-limit-once", "server-error-once"])
async def test_transient_errors_are_retried(
    fresh_emulator: Any, make_settings: Any, marker: str
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        out = await connector.structured("retry me", Synonyms, model=f"gpt-4o-mini@{marker}")
        assert isinstance(out, Synonyms)
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["immediate"]["requests"] == 1


async def test_persistent_rate_limit_gives_up_with_a_typed_error(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from providers.errors import RateLimitError

    settings = make_settings(fresh_emulator, retry={"max_attempts": 3})
    connector = open_connector(settings)
    try:
        with pytest.raises(RateLimitError) as info:
            await connector.structured("never", Synonyms, model="gpt-4o-mini@rate-limit")
        assert info.value.status_code == 429 and info.value.retry_after is not None
    finally:
        await connector.aclose()


async def test_schema_invalid_content_is_reasked_then_fails(
    fresh_emulator: Any, make_settings: Any
) -> None:
    settings = make_settings(fresh_emulator, immediate={"reask": 2})
    connector = open_connector(settings)
    try:
        with pytest.raises(SchemaValidationError):
            await connector.structured("bad", Synonyms, model="gpt-4o-mini@schema-invalid")
        # Every paid attempt is in the ledger, though none produced a result.
        assert sum(r.requests for r in connector.store.cost_report()) == 3
        assert connector.store.count_results() == 0
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["immediate"]["requests"] == 3


async def test_permanent_errors_are_not_retried(fresh_emulator: Any, make_settings: Any) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        streamed = connector.build_request("x", Synonyms, stream=True)
        with pytest.raises(InvalidRequestError) as info:
            # The emulator, like the API, refuses a streamed structured call with a 400
            # (sent by the strategy itself: the connector refuses it before sending).
            await connector._immediate.run(streamed)
        assert info.value.status_code == 400 and not info.value.retryable
        assert fresh_emulator.billing()["immediate"]["requests"] == 0
        assert connector.store.cost_report() == []
        with pytest.raises(InputError, match="extras may not set 'stream'"):
            await connector.generate(streamed)
    finally:
        await connector.aclose()


@pytest.mark.parametrize(
    ("option", "meant"),
    [("temprature", "temperature"), ("max_token", "max_tokens"), ("sytem", "system")],
)
async def test_a_misspelt_option_is_refused_before_anything_is_sent(
    fresh_emulator: Any, make_settings: Any, option: str, meant: str
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        with pytest.raises(InputError, match=f"unknown option '{option}' — did you mean '{meant}'"):
            await connector.structured("Synonyms of swift", Synonyms, **{option: 1})
        # A name close to none of structured()'s goes to the provider as an extra.
        request = connector.build_request("Synonyms of swift", Synonyms, seed=7, top_p=0.5)
        assert dict(request.extras) == {"seed": 7, "top_p": 0.5}
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["immediate"]["requests"] == 0


def test_missing_key_names_the_variable(
    fresh_emulator: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = Settings.model_validate(
        {"connector": {"provider": "openai", "db": str(tmp_path / "s.db")}}
    )
    with pytest.raises(MissingAPIKeyError) as info:
        open_connector(settings)
    assert "OPENAI_API_KEY" in str(info.value) and "--provider sandbox" in str(info.value)
