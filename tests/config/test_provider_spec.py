"""A provider declares its options, key variable, prices and limits; the config obeys them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner

from plugins import hookimpl
from plugins.config import ProviderSettings, Settings, load_settings
from plugins.estimate import price_provider
from plugins.manager import get_plugin_manager, reset_plugin_manager
from plugins.providerspec import BatchSpec, ProviderContext, ProviderSpec, call_factory
from providers.errors import ConfigError, MissingAPIKeyError


class AcmeOptions(ProviderSettings):
    """The options of a provider this test registers."""

    region: Literal["eu", "us"] = "eu"
    shards_per_hour: int = 3


ACME = ProviderSpec(
    options=AcmeOptions,
    key_env="ACME_TEST_KEY",
    prices="openai",
    batch=BatchSpec(max_requests=7, max_bytes=5_000, mixed_models=True, input="inline"),
    poll_interval=0.5,
)


class _AcmePlugin:
    @hookimpl
    def register_providers(self, register: Any) -> None:
        register("acme", lambda name, settings: None, description="Acme", spec=ACME)


@pytest.fixture
def acme() -> Iterator[None]:
    """The process-wide plugin manager with the ``acme`` provider registered."""
    reset_plugin_manager()
    get_plugin_manager().register(_AcmePlugin(), name="acme-plugin", origin="acme-test 1.0")
    yield
    reset_plugin_manager()


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    (tmp_path / "lexibatch.toml").write_text(text)
    return load_settings(env=env or {}, cwd=tmp_path)


def test_a_providers_table_is_its_own_options_model(acme: None, tmp_path: Path) -> None:
    settings = _load(tmp_path, '[providers.acme]\nregion = "us"\nrpm = 9\n')
    options = settings.provider_settings("acme")
    assert isinstance(options, AcmeOptions)
    assert (options.region, options.shards_per_hour, options.rpm) == ("us", 3, 9)
    assert options.api_key_env == "ACME_TEST_KEY"
    untouched = Settings().provider_settings("acme")
    assert isinstance(untouched, AcmeOptions) and untouched.key_env("acme") == "ACME_TEST_KEY"


def test_a_providers_own_options_get_the_usual_one_line_errors(acme: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad:
        _load(tmp_path, '[providers.acme]\nregion = "mars"\n')
    assert str(bad.value) == (
        "lexibatch.toml: providers.acme.region: expected one of 'eu', 'us', got 'mars'"
    )
    assert bad.value.key == "providers.acme.region"
    with pytest.raises(ConfigError) as typo:
        _load(tmp_path, '[providers.acme]\nregoin = "eu"\n')
    assert str(typo.value) == (
        "lexibatch.toml: unknown key providers.acme.regoin (did you mean region?)"
    )
    with pytest.raises(ConfigError) as foreign:
        _load(tmp_path, '[providers.openai]\nregion = "eu"\n')
    assert str(foreign.value) == (
        "lexibatch.toml: providers.openai.region: this key is for the acme provider only"
    )
    with pytest.raises(ConfigError) as from_env:
        _load(tmp_path, "", env={"LEXIBATCH_PROVIDERS_ACME_SHARDS_PER_HOUR": "lots"})
    assert str(from_env.value) == (
        "LEXIBATCH_PROVIDERS_ACME_SHARDS_PER_HOUR: expected an integer, got 'lots'"
    )
    env = {"LEXIBATCH_PROVIDERS_ACME_SHARDS_PER_HOUR": "12"}
    assert _load(tmp_path, "", env=env).provider_settings("acme").shards_per_hour == 12


def test_the_declared_key_variable_is_read_and_named_when_missing(
    acme: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = Settings().provider_settings("acme")
    monkeypatch.delenv("ACME_TEST_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError) as missing:
        options.api_key("acme")
    assert missing.value.env_var == "ACME_TEST_KEY"
    monkeypatch.setenv("ACME_TEST_KEY", "acme-secret")
    assert options.api_key("acme") == "acme-secret"


def test_prices_and_limits_come_from_the_spec(acme: None) -> None:
    assert price_provider("acme") == "openai"
    assert price_provider("litellm") is None
    assert price_provider("nobody-registers-me") == "nobody-registers-me"
    assert ACME.batch is not None
    limits = ACME.batch.limits(AcmeOptions(max_batch_requests=3))
    assert (limits.max_requests, limits.max_bytes, limits.mixed_models) == (3, 5_000, True)


def test_a_table_for_a_provider_of_another_manager_is_checked_when_it_is_built(
    tmp_path: Path,
) -> None:
    # Validated before "acme" is known here: its own keys wait for its options model.
    reset_plugin_manager()
    settings = _load(tmp_path, '[providers.acme]\nregion = "mars"\n')
    with pytest.raises(ConfigError) as bad:
        settings.provider_settings("acme", ACME)
    assert str(bad.value) == "config: providers.acme.region: expected one of 'eu', 'us', got 'mars'"
    fine = _load(tmp_path, '[providers.acme]\nregion = "us"\n').provider_settings("acme", ACME)
    assert isinstance(fine, AcmeOptions) and fine.region == "us"


def test_a_factory_gets_the_context_only_when_it_asks_for_it(tmp_path: Path) -> None:
    seen: list[Any] = []

    def plain(name: str, settings: ProviderSettings) -> Any:
        seen.append((name, type(settings).__name__))

    def curious(name: str, settings: ProviderSettings, context: ProviderContext) -> Any:
        seen.append(context.state_dir(name))

    context = ProviderContext(model="m", db=tmp_path / "s.db")
    call_factory(plain, "acme", AcmeOptions(), context)
    call_factory(curious, "acme", AcmeOptions(), context)
    assert seen == [("acme", "AcmeOptions"), tmp_path / "provider-state" / "acme"]
    assert ProviderContext(db=Path(":memory:")).state_dir("acme") is None


def test_lexibatch_plugins_shows_each_providers_options_and_key(acme: None) -> None:
    from synthesis.cli import main

    out = CliRunner().invoke(main, ["plugins"], catch_exceptions=False).output
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["acme"])
    assert "acme-test 1.0" in lines[at]
    block = "\n".join(lines[at + 1 : at + 4])
    assert "key: ACME_TEST_KEY" in block and "prices: openai" in block
    assert "7 requests / 5,000 bytes a batch, models mixed per batch, inline input" in block
    assert "region ('eu' | 'us', default 'eu')" in block
    assert "shards_per_hour (int, default 3)" in block
    openai = next(i for i, line in enumerate(lines) if line.split()[:1] == ["openai"])
    assert "key: OPENAI_API_KEY" in lines[openai + 1]
    assert "api ('chat' | 'responses' | None, default None)" in lines[openai + 3]
    gemini = next(i for i, line in enumerate(lines) if line.split()[:1] == ["gemini"])
    assert "inline_max_bytes (int | None, default None)" in lines[gemini + 3]
    litellm = next(i for i, line in enumerate(lines) if line.split()[:1] == ["litellm"])
    assert "key: none needed · prices: by the model name" in lines[litellm + 1]
    mistral = next(i for i, line in enumerate(lines) if line.split()[:1] == ["mistral"])
    assert "priced at 50% of immediate where the price map has no batch price" in lines[mistral + 2]


@pytest.mark.parametrize(
    "module", ["plugins/config.py", "plugins/estimate.py", "plugins/factory.py"]
)
def test_the_core_names_no_provider(module: str) -> None:
    text = (Path(__file__).resolve().parents[2] / module).read_text().lower()
    for name in ("openai", "anthropic", "gemini", "mistral"):
        assert f'"{name}"' not in text, (module, name)


def test_a_batch_price_share_needs_the_price_map_provider_it_prices() -> None:
    with pytest.raises(ValueError, match="batch_price_share needs prices="):
        ProviderSpec(batch_price_share=0.5)


def test_a_plugins_batch_price_share_does_not_reprice_a_provider_that_declares_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from plugins.builtin_providers import MISTRAL
    from plugins.estimate import batch_shares

    # A reseller of Mistral's models declaring another discount than Mistral's own.
    reseller = ProviderSpec(prices="mistral", batch_price_share=0.2)
    caplog.set_level("WARNING", logger="lexibatch.plugins")
    assert batch_shares({"mistral": MISTRAL, "reseller": reseller}) == {"mistral": 0.5}
    assert "different batch price shares for the models of mistral" in caplog.text
    assert "(mistral 50%, reseller 20%): 50% is used" in caplog.text
    # Neither registered under the price map's name: the higher price is used.
    other = ProviderSpec(prices="mistral", batch_price_share=0.7)
    assert batch_shares({"a": reseller, "b": other}) == {"mistral": 0.7}
    # One declaration alone is taken as it is, without a word.
    caplog.clear()
    assert batch_shares({"reseller": reseller}) == {"mistral": 0.2}
    assert caplog.text == ""
