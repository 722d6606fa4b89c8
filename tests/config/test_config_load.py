"""Loading settings: defaults, the TOML file, environment variables, flags, and their order."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.config import ProviderSettings, Settings, load_settings
from providers.errors import MissingAPIKeyError


def _write(tmp_path: Path, text: str, name: str = "lexibatch.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    assert s.connector.provider is None
    assert s.connector.model == "gpt-4o-mini"
    assert s.connector.mode == "immediate"
    assert s.connector.db == tmp_path / ".lexibatch" / "lexibatch.db"
    assert s.providers == {}
    assert (s.batch.linger, s.batch.poll_interval, s.batch.max_poll_interval) == (1.0, 30.0, 300.0)
    assert (s.batch.max_requests, s.batch.max_bytes, s.batch.budget_usd) == (None, None, None)
    assert (s.batch.max_retry_rounds, s.batch.retry_via, s.batch.auto_threshold) == (
        3,
        "batch",
        100,
    )
    assert (s.retry.max_attempts, s.retry.give_up_after, s.retry.timeout_retries) == (6, 30, 1)
    assert (s.retry.backoff_initial, s.retry.backoff_max, s.immediate.reask) == (0.5, 8, 1)
    assert s.models == {}
    assert s.spool_path == tmp_path / ".lexibatch" / "spool"


def test_toml_file_is_read(tmp_path: Path) -> None:
    _write(
        tmp_path,
        """
        [connector]
        provider = "openai"
        model = "gpt-4o"
        mode = "auto"
        db = "data/store.db"

        [providers.openai]
        base_url = "http://127.0.0.1:8765/v1"
        max_concurrency = 8
        rpm = 500
        tpm = 200000
        api = "responses"
        max_batch_requests = 1000

        [providers.anthropic]
        structured_output = "tool"
        api_key_env = "MY_CLAUDE_KEY"

        [batch]
        linger = 0.25
        max_requests = 5000
        budget_usd = 12.5
        retry_via = "immediate"
        spool_dir = "/var/spool/lexibatch"

        [immediate]
        reask = 0

        [retry]
        max_attempts = 3

        [models]
        define = "gpt-4o"
        enhance = "gpt-4o-mini"
        """,
    )
    s = load_settings(env={}, cwd=tmp_path)
    assert (s.connector.provider, s.connector.model, s.connector.mode) == (
        "openai",
        "gpt-4o",
        "auto",
    )
    assert s.connector.db == tmp_path / "data" / "store.db"
    openai = s.providers["openai"]
    assert openai.base_url == "http://127.0.0.1:8765/v1"
    assert (openai.max_concurrency, openai.rpm, openai.tpm) == (8, 500, 200000)
    assert (openai.api, openai.max_batch_requests, openai.api_key_env) == (
        "responses",
        1000,
        "OPENAI_API_KEY",
    )
    assert s.providers["anthropic"].structured_output == "tool"
    assert s.providers["anthropic"].api_key_env == "MY_CLAUDE_KEY"
    assert (s.batch.linger, s.batch.max_requests, s.batch.budget_usd) == (0.25, 5000, 12.5)
    assert s.batch.retry_via == "immediate"
    assert s.spool_path == Path("/var/spool/lexibatch")
    assert (s.retry.max_attempts, s.immediate.reask) == (3, 0)
    assert s.model_for("define") == "gpt-4o"
    assert s.model_for("enhance") == "gpt-4o-mini"
    assert s.model_for("other") == "gpt-4o"
    assert s.model_for(None) == "gpt-4o"


def test_explicit_config_path_and_config_variable(tmp_path: Path) -> None:
    _write(tmp_path, '[connector]\nmodel = "from-cwd"\n')
    other = _write(tmp_path, '[connector]\nmodel = "from-explicit"\n', name="other.toml")
    assert load_settings(other, env={}, cwd=tmp_path).connector.model == "from-explicit"
    assert load_settings(Path("other.toml"), env={}, cwd=tmp_path).connector.model == (
        "from-explicit"
    )
    env = {"LEXIBATCH_CONFIG": str(other)}
    assert load_settings(env=env, cwd=tmp_path).connector.model == "from-explicit"
    assert load_settings(env={}, cwd=tmp_path).connector.model == "from-cwd"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        '[connector]\nprovider = "openai"\nmodel = "a"\n[batch]\nlinger = 2\n'
        "[providers.openai]\nrpm = 10\n",
    )
    env = {
        "LEXIBATCH_PROVIDER": "anthropic",
        "LEXIBATCH_MODEL": "claude-haiku",
        "LEXIBATCH_MODE": "batch",
        "LEXIBATCH_DB": "/tmp/x.db",
        "LEXIBATCH_BATCH_LINGER": "0.5",
        "LEXIBATCH_BATCH_MAX_POLL_INTERVAL": "600",
        "LEXIBATCH_BATCH_BUDGET_USD": "7.25",
        "LEXIBATCH_RETRY_MAX_ATTEMPTS": "2",
        "LEXIBATCH_PROVIDERS_OPENAI_BASE_URL": "http://localhost:9/v1",
        "LEXIBATCH_PROVIDERS_OPENAI_MAX_BATCH_BYTES": "1000000",
        "LEXIBATCH_PROVIDERS_MY_PROXY_TIMEOUT": "30",
        "LEXIBATCH_MODELS_DEFINE_WORD": "gpt-4o",
        "LEXIBATCH_LOAD_PLUGINS": "whatever,is,here",
        "OPENAI_API_KEY": "sk-not-read-by-the-loader",
        "PATH": "/usr/bin",
    }
    s = load_settings(env=env, cwd=tmp_path)
    assert s.connector.provider == "anthropic"
    assert (s.connector.model, s.connector.mode) == ("claude-haiku", "batch")
    assert s.connector.db == Path("/tmp/x.db")
    assert (s.batch.linger, s.batch.max_poll_interval, s.batch.budget_usd) == (0.5, 600, 7.25)
    assert s.retry.max_attempts == 2
    assert s.providers["openai"].base_url == "http://localhost:9/v1"
    assert s.providers["openai"].rpm == 10  # from the file, untouched
    assert s.providers["openai"].max_batch_bytes == 1_000_000
    assert s.providers["my_proxy"].timeout == 30
    assert s.models == {"define_word": "gpt-4o"}


def test_empty_variable_unsets_a_nullable_key(tmp_path: Path) -> None:
    _write(tmp_path, '[connector]\nprovider = "openai"\n')
    s = load_settings(env={"LEXIBATCH_PROVIDER": ""}, cwd=tmp_path)
    assert s.connector.provider is None


def test_order_is_file_then_env_then_flags(tmp_path: Path) -> None:
    _write(tmp_path, "[batch]\nlinger = 1.5\nmax_retry_rounds = 1\nbudget_usd = 1\n")
    env = {"LEXIBATCH_BATCH_LINGER": "2.5", "LEXIBATCH_BATCH_MAX_RETRY_ROUNDS": "5"}
    overrides = {
        "batch.linger": 3.5,
        "batch.budget_usd": None,  # a flag not given changes nothing
        "connector.provider": "openai",
    }
    s = load_settings(env=env, overrides=overrides, cwd=tmp_path)
    assert s.batch.linger == 3.5  # flag beats env beats file
    assert s.batch.max_retry_rounds == 5  # env beats file
    assert s.batch.budget_usd == 1  # file only
    assert s.connector.provider == "openai"
    assert load_settings(env=env, cwd=tmp_path).batch.linger == 2.5
    assert load_settings(env={}, cwd=tmp_path).batch.linger == 1.5


def test_provider_settings_defaults_and_key_variables() -> None:
    s = Settings.model_validate({"providers": {"openai": {"rpm": 5}, "litellm": {}}})
    assert s.provider_settings("openai").rpm == 5
    assert s.provider_settings("openai").api_key_env == "OPENAI_API_KEY"
    assert s.provider_settings("anthropic").api_key_env == "ANTHROPIC_API_KEY"
    assert s.provider_settings("anthropic").max_concurrency == 32
    assert s.provider_settings("litellm").api_key_env is None
    assert s.provider_settings("someone-elses").api_key_env is None
    assert s.provider_settings("openai").timeout == 600


def test_api_key_is_read_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY_VAR", "sk-test-value")
    settings = ProviderSettings(api_key_env="MY_KEY_VAR")
    assert settings.api_key("openai") == "sk-test-value"
    assert ProviderSettings().api_key("litellm") == ""
    assert ProviderSettings(api_key_env="").api_key("openai") == ""


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_api_key_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", value)
    with pytest.raises(MissingAPIKeyError) as info:
        Settings().provider_settings("openai").api_key("openai")
    assert info.value.env_var == "OPENAI_API_KEY"
    message = str(info.value)
    assert "OPENAI_API_KEY" in message
    assert "--provider sandbox" in message
    assert "\n" not in message
