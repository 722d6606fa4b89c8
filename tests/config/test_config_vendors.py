"""Configuration of the gemini and mistral providers: key variables, their options, the factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.config import Settings, load_settings
from providers.errors import ConfigError, MissingAPIKeyError


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "lexibatch.toml"
    path.write_text(text)
    return load_settings(path, env=env or {}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("provider", "variable"), [("gemini", "GEMINI_API_KEY"), ("mistral", "MISTRAL_API_KEY")]
)
def test_default_key_variables_and_a_missing_key_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, variable: str
) -> None:
    settings = _load(tmp_path, f'[connector]\nprovider = "{provider}"\n')
    assert settings.provider_settings(provider).key_env(provider) == variable
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(MissingAPIKeyError) as missing:
        settings.provider_settings(provider).api_key(provider)
    assert variable in str(missing.value) and "--provider sandbox" in str(missing.value)


def test_inline_max_bytes_is_a_gemini_option(tmp_path: Path) -> None:
    settings = _load(tmp_path, "[providers.gemini]\ninline_max_bytes = 0\n")
    assert settings.provider_settings("gemini").inline_max_bytes == 0
    for other in ("openai", "mistral", "anthropic"):
        with pytest.raises(ConfigError) as refused:
            _load(tmp_path, f"[providers.{other}]\ninline_max_bytes = 10\n")
        assert f"providers.{other}.inline_max_bytes" in str(refused.value)
        assert "gemini" in str(refused.value)
    with pytest.raises(ConfigError) as negative:
        _load(tmp_path, "[providers.gemini]\ninline_max_bytes = -1\n")
    assert "inline_max_bytes" in str(negative.value)
    for option in ('api = "chat"', 'structured_output = "tool"'):
        with pytest.raises(ConfigError):
            _load(tmp_path, f"[providers.gemini]\n{option}\n")


async def test_the_factories_build_the_providers_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.builtin_providers import make_gemini, make_mistral

    monkeypatch.setenv("GEMINI_API_KEY", "g-key")
    monkeypatch.setenv("MISTRAL_API_KEY", "m-key")
    settings = _load(
        tmp_path,
        '[providers.gemini]\nbase_url = "http://127.0.0.1:9"\ninline_max_bytes = 0\n'
        "max_batch_requests = 7\n[providers.mistral]\nmax_batch_bytes = 1000\n",
    )
    gemini = make_gemini("gemini", settings.provider_settings("gemini"))
    mistral = make_mistral("mistral", settings.provider_settings("mistral"))
    assert gemini.name == "gemini" and gemini.batch is not None
    assert gemini.batch.limits.max_requests == 7 and not gemini.batch.limits.mixed_models
    assert mistral.batch is not None and mistral.batch.limits.max_bytes == 1000
    assert mistral.batch.limits.max_requests == 1_000_000
    await gemini.aclose()
    await mistral.aclose()
