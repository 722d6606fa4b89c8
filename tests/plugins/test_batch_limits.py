"""A shard never passes the limits its provider declared when it registered, whatever its
endpoint says: a plugin's endpoint that reports looser ones (or forgets the user's options)
is bounded by them."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.factory import open_connector
from providers.types import BatchLimits

_MB = 1024 * 1024


@pytest.mark.parametrize(("option", "expected"), [(None, 50_000), (7, 7)])
async def test_the_declared_limits_and_the_options_bound_what_the_endpoint_says(
    fresh_emulator: Any,
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    option: int | None,
    expected: int,
) -> None:
    from providers.openai import OpenAIBatchEndpoint

    # An endpoint that says more than OpenAI's declared 50,000 requests and one model a batch.
    loose = BatchLimits(max_requests=10**9, max_bytes=10**12, mixed_models=True)
    monkeypatch.setattr(OpenAIBatchEndpoint, "limits", property(lambda self: loose))
    options = {} if option is None else {"max_batch_requests": option}
    connector = open_connector(make_settings(fresh_emulator, providers={"openai": options}))
    try:
        connector.enable_batch_mode()
        limits = connector.batch_strategy().limits
    finally:
        await connector.aclose()
    assert limits.max_requests == expected
    assert limits.max_bytes == 200 * _MB
    assert not limits.mixed_models


@pytest.mark.parametrize(
    ("speaks", "requests", "mixed"),
    [("openai", 50_000, False), ("anthropic", 100_000, True), ("mistral", 1_000_000, False)],
)
async def test_the_sandbox_batches_within_the_limits_of_the_api_it_speaks(
    tmp_path: Any, speaks: str, requests: int, mixed: bool
) -> None:
    from plugins.config import Settings

    settings = Settings.model_validate(
        {
            "connector": {"provider": "sandbox", "db": str(tmp_path / "s.db")},
            "providers": {"sandbox": {"speaks": speaks}},
        }
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        limits = connector.batch_strategy().limits
    finally:
        await connector.aclose()
    assert (limits.max_requests, limits.mixed_models) == (requests, mixed)


def test_every_api_the_sandbox_speaks_has_its_limits_and_is_offered_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from plugins.builtin_providers import _SPOKEN, SandboxOptions
    from plugins.config import Settings
    from plugins.provideroptions import ProviderSettings
    from plugins.sandbox import SPOKEN_APIS
    from providers.errors import MissingAPIKeyError

    # One list: what `speaks` accepts is what has limits, and what a missing key offers.
    assert set(_SPOKEN) == set(SPOKEN_APIS)
    for api in SPOKEN_APIS:
        assert SandboxOptions(speaks=api).speaks == api
    with pytest.raises(ValidationError, match="'openai', 'anthropic', 'gemini' or 'mistral'"):
        Settings.model_validate({"providers": {"sandbox": {"speaks": "acme"}}})
    monkeypatch.delenv("ACME_KEY", raising=False)
    for provider, offered in [*((api, True) for api in SPOKEN_APIS), ("litellm", True)]:
        with pytest.raises(MissingAPIKeyError) as missing:
            ProviderSettings(api_key_env="ACME_KEY").api_key(provider)
        assert ("--provider sandbox" in str(missing.value)) is offered, provider
    with pytest.raises(MissingAPIKeyError) as missing:
        ProviderSettings(api_key_env="ACME_KEY").api_key("acme")
    assert "--provider sandbox" not in str(missing.value)
