"""Every config problem is one ConfigError line naming the source, the key and the expectation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugins.config import load_settings
from providers.errors import ConfigError


def _error(
    tmp_path: Path,
    toml: str | None = None,
    *,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    config_path: Path | None = None,
) -> ConfigError:
    if toml is not None:
        (tmp_path / "lexibatch.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(config_path, env=env or {}, overrides=overrides, cwd=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    return info.value


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        (
            "[connector]\nmodle = 'x'\n",
            "connector.modle",
            "lexibatch.toml: unknown key connector.modle (did you mean model?)",
        ),
        (
            "[conector]\nmodel = 'x'\n",
            "conector",
            "lexibatch.toml: unknown key conector (did you mean connector?)",
        ),
        (
            "[batch]\nlingr = 1\n",
            "batch.lingr",
            "lexibatch.toml: unknown key batch.lingr (did you mean linger?)",
        ),
        (
            "[providers.openai]\nbase_ur = 'http://x'\n",
            "providers.openai.base_ur",
            "lexibatch.toml: unknown key providers.openai.base_ur (did you mean base_url?)",
        ),
        (
            "[providers.openai]\noptions = {}\n",
            "providers.openai.options",
            "lexibatch.toml: unknown key providers.openai.options",
        ),
        (
            "[batch]\nzzzzzz = 1\n",
            "batch.zzzzzz",
            "lexibatch.toml: unknown key batch.zzzzzz",
        ),
    ],
)
def test_unknown_keys(tmp_path: Path, toml: str, key: str, message: str) -> None:
    error = _error(tmp_path, toml)
    assert error.key == key
    assert str(error) == message


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        (
            "[batch]\nlinger = 'soon'\n",
            "batch.linger",
            "lexibatch.toml: batch.linger: expected a number ≥ 0, got 'soon'",
        ),
        (
            "[batch]\nlinger = -1\n",
            "batch.linger",
            "lexibatch.toml: batch.linger: expected a number ≥ 0, got -1",
        ),
        (
            "[batch]\npoll_interval = 0\n",
            "batch.poll_interval",
            "lexibatch.toml: batch.poll_interval: expected a number > 0, got 0",
        ),
        (
            "[batch]\npoll_interval = inf\n",
            "batch.poll_interval",
            "lexibatch.toml: batch.poll_interval: expected a number > 0, got inf",
        ),
        (
            "[batch]\npoll_interval = 60\nmax_poll_interval = 10\n",
            "batch.max_poll_interval",
            "lexibatch.toml: batch.max_poll_interval: expected a number ≥ batch.poll_interval "
            "(60), got 10",
        ),
        (
            "[batch]\nmax_requests = 1.5\n",
            "batch.max_requests",
            "lexibatch.toml: batch.max_requests: expected an integer ≥ 1, got 1.5",
        ),
        (
            "[batch]\nretry_via = 'carrier pigeon'\n",
            "batch.retry_via",
            "lexibatch.toml: batch.retry_via: expected one of 'batch', 'immediate', "
            "got 'carrier pigeon'",
        ),
        (
            "[connector]\nmode = 'fast'\n",
            "connector.mode",
            "lexibatch.toml: connector.mode: expected one of 'immediate', 'batch', 'auto', "
            "got 'fast'",
        ),
        (
            "[providers.openai]\nmax_concurrency = 0\n",
            "providers.openai.max_concurrency",
            "lexibatch.toml: providers.openai.max_concurrency: expected an integer ≥ 1, got 0",
        ),
        (
            "[immediate]\nreask = -1\n",
            "immediate.reask",
            "lexibatch.toml: immediate.reask: expected an integer ≥ 0, got -1",
        ),
        (
            "[models]\ndefine = 5\n",
            "models.define",
            "lexibatch.toml: models.define: expected a non-empty string, got 5",
        ),
        (
            "connector = 5\n",
            "connector",
            "lexibatch.toml: connector: expected a table, got 5",
        ),
        (
            "[providers.anthropic]\napi = 'chat'\n",
            "providers.anthropic.api",
            "lexibatch.toml: providers.anthropic.api: this key is for OpenAI-style providers only",
        ),
        (
            "[providers.openai]\nstructured_output = 'tool'\n",
            "providers.openai.structured_output",
            "lexibatch.toml: providers.openai.structured_output: this key is for the anthropic "
            "provider only",
        ),
    ],
)
def test_bad_values(tmp_path: Path, toml: str, key: str, message: str) -> None:
    error = _error(tmp_path, toml)
    assert error.key == key
    assert str(error) == message


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    error = _error(tmp_path, env={"LEXIBATCH_BATCH_LINGER": "x"})
    assert error.key == "batch.linger"
    assert str(error) == "LEXIBATCH_BATCH_LINGER: expected a number ≥ 0, got 'x'"
    error = _error(tmp_path, env={"LEXIBATCH_MODE": "later"})
    assert str(error).startswith("LEXIBATCH_MODE: expected one of 'immediate', 'batch', 'auto'")
    assert error.key == "connector.mode"


def test_the_file_is_blamed_only_for_its_own_values(tmp_path: Path) -> None:
    error = _error(tmp_path, "[batch]\nlinger = 1\n", env={"LEXIBATCH_BATCH_POLL_INTERVAL": "-2"})
    assert str(error).startswith("LEXIBATCH_BATCH_POLL_INTERVAL: ")


def test_unknown_environment_variable(tmp_path: Path) -> None:
    error = _error(tmp_path, env={"LEXIBATCH_BATCH_LINGR": "1"})
    assert str(error) == (
        "LEXIBATCH_BATCH_LINGR: unknown lexibatch setting (did you mean LEXIBATCH_BATCH_LINGER?)"
    )
    assert error.key == "batch.lingr"
    error = _error(tmp_path, env={"LEXIBATCH_PROVIDERS_OPENAI_BASE_UR": "http://x"})
    assert "did you mean LEXIBATCH_PROVIDERS_OPENAI_BASE_URL?" in str(error)
    error = _error(tmp_path, env={"LEXIBATCH_SOMETHING": "1"})
    assert str(error).startswith("LEXIBATCH_SOMETHING: unknown lexibatch setting")


def test_variables_read_elsewhere_are_not_taken_for_settings(tmp_path: Path) -> None:
    from plugins.config import NON_CONFIG_ENV

    # The serve token, the plugin switch, the tests' own switches: exported
    # in a shell, none of them stops a command from starting.
    assert {"LEXIBATCH_SERVE_TOKEN", "LEXIBATCH_CASSETTE_TARGET"} <= NON_CONFIG_ENV
    env = {name: "1" for name in NON_CONFIG_ENV - {"LEXIBATCH_CONFIG"}}
    settings = load_settings(None, env=env, cwd=tmp_path)
    assert settings.connector.provider is None


def test_bad_flag_value_and_unknown_flag_key(tmp_path: Path) -> None:
    error = _error(tmp_path, overrides={"batch.budget_usd": -5})
    assert str(error) == "command line: batch.budget_usd: expected a number ≥ 0, got -5"
    assert error.key == "batch.budget_usd"
    error = _error(tmp_path, overrides={"connector.provder": "openai"})
    assert str(error) == "command line: unknown key connector.provder (did you mean provider?)"


def test_an_empty_provider_name_is_refused_not_read_as_the_sandbox(tmp_path: Path) -> None:
    # `--provider "$PROVIDER"` with the variable unset must not run on
    # synthetic answers; an empty environment variable still unsets the key.
    error = _error(tmp_path, overrides={"connector.provider": ""})
    assert str(error) == "command line: connector.provider: expected a non-empty string, got ''"
    error = _error(tmp_path, '[connector]\nprovider = ""\n')
    assert str(error) == "lexibatch.toml: connector.provider: expected a non-empty string, got ''"
    settings = load_settings(None, env={"LEXIBATCH_PROVIDER": ""}, cwd=tmp_path)
    assert settings.connector.provider is None


def test_toml_syntax_error_has_the_line(tmp_path: Path) -> None:
    error = _error(tmp_path, '[connector]\nmodel = "ok"\nprovider = \n')
    message = str(error)
    assert message.startswith("lexibatch.toml: invalid TOML: ")
    assert "line 3" in message


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    error = _error(tmp_path, config_path=tmp_path / "nope.toml")
    assert str(error) == f"{tmp_path / 'nope.toml'}: config file not found"
    error = _error(tmp_path, env={"LEXIBATCH_CONFIG": "missing.toml"})
    assert str(error) == "missing.toml: config file not found"


def test_explicit_file_is_the_named_source(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "prod.toml"
    path.parent.mkdir()
    path.write_text("[batch]\nlinger = 'later'\n", encoding="utf-8")
    error = _error(tmp_path, config_path=path)
    assert str(error) == f"{path}: batch.linger: expected a number ≥ 0, got 'later'"


SECRET = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678"


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        (f'[providers.openai]\napi_key_env = "{SECRET}"\n', {}),
        (f'[providers.openai]\napi_key = "{SECRET}"\n', {}),
        (f'[providers.openai]\nrpm = "{SECRET}"\n', {}),
        (f'[connector]\nmode = "{SECRET}"\n', {}),
        (None, {"LEXIBATCH_PROVIDERS_OPENAI_API_KEY": SECRET}),
        (None, {"LEXIBATCH_OPENAI_API_KEY": SECRET}),
        (None, {"LEXIBATCH_PROVIDERS_OPENAI_API_KEY_ENV": SECRET}),
        (None, {"LEXIBATCH_BATCH_LINGER": SECRET}),
    ],
)
def test_secrets_never_appear_in_messages(
    tmp_path: Path, toml: str | None, env: dict[str, str]
) -> None:
    error = _error(tmp_path, toml, env=env)
    assert SECRET not in str(error)
    assert SECRET[:12] not in repr(error)
    assert SECRET not in str(error.args)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "max_enqueued_tokens = 0",
            "providers.openai.max_enqueued_tokens: expected an integer ≥ 1, got 0",
        ),
        (
            'max_enqueued_tokens_by_model = {"gpt-4o-mini" = 0}',
            "providers.openai.max_enqueued_tokens_by_model.gpt-4o-mini: "
            "expected an integer ≥ 1, got 0",
        ),
        (
            "max_enqueued_tokens_by_model = 5",
            "providers.openai.max_enqueued_tokens_by_model: expected a table, got 5",
        ),
    ],
)
def test_a_bad_queue_cap_names_its_key(tmp_path: Path, line: str, message: str) -> None:
    error = _error(tmp_path, f"[providers.openai]\n{line}\n")
    assert str(error) == f"lexibatch.toml: {message}"


def test_the_queue_cap_of_a_model_is_its_own_or_the_providers(tmp_path: Path) -> None:
    (tmp_path / "lexibatch.toml").write_text(
        "[providers.openai]\n"
        "max_enqueued_tokens = 2000000\n"
        'max_enqueued_tokens_by_model = {"gpt-4o" = 900000}\n',
        encoding="utf-8",
    )
    settings = load_settings(None, env={}, cwd=tmp_path)
    openai = settings.provider_settings("openai")
    assert openai.enqueued_token_cap("gpt-4o") == 900_000
    assert openai.enqueued_token_cap("gpt-4o-mini") == 2_000_000
    assert settings.provider_settings("anthropic").enqueued_token_cap("claude-haiku-4-5") is None


def test_a_config_path_given_as_text_is_read_like_a_path(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('[connector]\nmodel = "gpt-4o"\n', encoding="utf-8")
    settings = load_settings("mine.toml", env={}, cwd=str(tmp_path))
    assert settings.connector.model == "gpt-4o"
    with pytest.raises(ConfigError, match=r"^missing\.toml: config file not found$"):
        load_settings("missing.toml", env={}, cwd=str(tmp_path))


def test_a_base_url_that_is_no_http_url_is_a_config_error(tmp_path: Path) -> None:
    for url in ("not a url", "ftp://example.com", "https://", "http:///v1", "localhost:8000"):
        toml = f'[connector]\nprovider = "openai"\n[providers.openai]\nbase_url = "{url}"\n'
        error = _error(tmp_path, toml)
        assert str(error) == (
            "lexibatch.toml: providers.openai.base_url: expected an http:// or https:// URL "
            f"(e.g. https://api.example.com/v1), got {url!r}"
        )
    good = '[providers.openai]\nbase_url = "HTTP://127.0.0.1:8000/v1"\n'
    (tmp_path / "lexibatch.toml").write_text(good, encoding="utf-8")
    settings = load_settings(None, env={}, cwd=tmp_path)
    assert settings.provider_settings("openai").base_url == "HTTP://127.0.0.1:8000/v1"


def test_a_config_file_that_is_not_text_is_one_line_and_a_byte_order_mark_is_read(
    tmp_path: Path,
) -> None:
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    error = _error(tmp_path, config_path=Path("binary.toml"))
    assert str(error).startswith("binary.toml: not a TOML text file (byte 0 is not UTF-8)")
    (tmp_path / "bom.toml").write_bytes(b'\xef\xbb\xbf[connector]\nmodel = "gpt-4o"\n')
    settings = load_settings(Path("bom.toml"), env={}, cwd=tmp_path)
    assert settings.connector.model == "gpt-4o"


def test_a_table_named_a_slip_away_from_a_provider_is_refused(tmp_path: Path) -> None:
    # Its settings (a proxy's base_url here) meant for openai would go unused, and the
    # calls be sent and paid for at the default endpoint.
    toml = '[providers.opanai]\nbase_url = "http://127.0.0.1:9/v1"\n'
    (tmp_path / "lexibatch.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={}, cwd=tmp_path)
    assert str(caught.value) == (
        "lexibatch.toml: providers.opanai: names no registered provider (did you mean "
        "openai?): its settings would not be used — correct the name, or install the plugin "
        "that registers it (`lexibatch plugins` lists the providers)"
    )
    assert caught.value.key == "providers.opanai"


def test_a_table_of_no_registered_provider_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import plugins.config

    plugins.config._told_unknown.discard("zephyr")
    caplog.set_level("WARNING", logger="lexibatch.config")
    toml = '[providers.zephyr]\nbase_url = "http://127.0.0.1:9/v1"\n[providers.openai]\nrpm = 5\n'
    (tmp_path / "lexibatch.toml").write_text(toml, encoding="utf-8")
    for _ in range(2):
        load_settings(None, env={}, cwd=tmp_path)
    said = [r.getMessage() for r in caplog.records if r.name == "lexibatch.config"]
    assert said == [
        "[providers.zephyr] names no registered provider: its settings are not used "
        "(`lexibatch plugins` lists the providers)"
    ]
