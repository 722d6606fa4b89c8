"""A service that needs no key (``api_key_env = ""``): every SDK-backed provider reaches it."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.factory import open_connector
from tests.plugins.batch_helpers import Entry

PATHS = {"openai": "/v1", "anthropic": "", "gemini": "", "mistral": "/mistral"}
KEY_VARIABLES = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY")


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "mistral"])
async def test_a_provider_configured_to_need_no_key_is_answered(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    for variable in KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    # As a user writes it: [providers.NAME] api_key_env = "" (a service that takes no key).
    base_url = fresh_emulator.base_url + PATHS[provider]
    settings = make_settings(
        fresh_emulator,
        provider=provider,
        providers={provider: {"base_url": base_url, "api_key_env": ""}},
    )
    assert settings.provider_settings(provider).key_env(provider) is None
    connector = open_connector(settings)
    try:
        answer = await connector.structured("keyless", Entry, task="t")
    finally:
        await connector.aclose()
    assert isinstance(answer, Entry) and answer.word
    assert fresh_emulator.billing()["immediate"]["requests"] == 1
