"""Switching provider by configuration alone, from the command line, and what each can't do.

``lexibatch run`` gives the same results file whichever provider serves it;
LiteLLM's batch API follows the connector's model, and a model whose vendor
has none is refused in one line (``auto`` falls back to immediate and says
so); Anthropic keeps no journal beside the store's; the sandbox speaks any of the
emulated APIs through that provider's own adapter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

from plugins.providerspec import PROVIDER_STATE_DIR

BATCHLESS = "anthropic/claude-haiku-4-5"


class Answer(BaseModel):
    """A small response model."""

    answer: str


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No key, no ``LEXIBATCH_*`` setting and no user cache leak into a test."""
    import os

    for var in [v for v in os.environ if v.startswith("LEXIBATCH_")]:
        if var != "LEXIBATCH_LOAD_PLUGINS":
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield


def _requests_file(folder: Path, count: int) -> Path:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    path = folder / "requests.jsonl"
    lines = [
        json.dumps({"id": f"q{i}", "prompt": f"question {i}", "schema": schema, "task": "qa"})
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _lexibatch(*args: str, env: dict[str, str]) -> Result:
    from synthesis.cli import main

    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def _provider_env(provider: str, emulator: Any) -> dict[str, str]:
    base = emulator.base_url if provider == "anthropic" else emulator.base_url + "/v1"
    return {
        "OPENAI_API_KEY": "sk-test-dummy",
        "ANTHROPIC_API_KEY": "sk-ant-test-dummy",
        f"LEXIBATCH_PROVIDERS_{provider.upper()}_BASE_URL": base,
        "LEXIBATCH_BATCH_POLL_INTERVAL": "0.02",
        "LEXIBATCH_BATCH_MAX_POLL_INTERVAL": "0.05",
        "LEXIBATCH_BATCH_LINGER": "0.05",
    }


_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "litellm": "openai/gpt-4o-mini",
}


def test_run_in_batch_mode_gives_the_same_results_file_on_every_provider(
    emulator: Any, tmp_path: Path, clean_env: None
) -> None:
    requests = _requests_file(tmp_path, 6)
    shapes = {}
    for provider, model in _MODELS.items():
        out = tmp_path / f"{provider}.jsonl"
        done = _lexibatch(
            *("run", str(requests), "--provider", provider, "--model", model),
            *("--mode", "batch", "--db", str(tmp_path / f"{provider}.db"), "--out", str(out)),
            env=_provider_env(provider, emulator),
        )
        assert done.exit_code == 0, done.output
        results = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in results] == [f"q{i}" for i in range(6)]
        assert all(r["status"] == "succeeded" and r["mode"] == "batch" for r in results)
        assert all(isinstance(r["output"]["answer"], str) for r in results)
        shapes[provider] = {key for r in results for key in r}
    assert shapes["anthropic"] == shapes["openai"] == shapes["litellm"]


# --------------------------------------------------------------------------- litellm


async def test_litellm_batch_api_follows_the_connectors_model(
    fresh_emulator: Any, make_settings: Any
) -> None:
    from plugins.factory import open_connector

    settings = make_settings(fresh_emulator, provider="litellm")
    connector = open_connector(settings)
    try:
        assert connector.provider.batch is not None
        assert connector.provider.batch.vendor == "openai"
        connector.enable_batch_mode()
        answer = await connector.structured("q", Answer, model="openai/gpt-4o-mini")
        assert isinstance(answer, Answer)
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 1


async def test_litellm_model_without_a_batch_api_is_refused_in_one_line(
    fresh_emulator: Any, make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from plugins.factory import open_connector
    from providers.errors import UnsupportedError

    caplog.set_level("INFO", logger="lexibatch.notice")
    settings = make_settings(
        fresh_emulator, provider="litellm", connector={"model": BATCHLESS, "mode": "auto"}
    )
    connector = open_connector(settings)
    try:
        assert connector.provider.batch is None
        with pytest.raises(UnsupportedError) as info:
            connector.enable_batch_mode()
        message = str(info.value)
        assert "\n" not in message and "'litellm' has no batch endpoint" in message
        assert "--mode immediate" in message
        assert connector.choose_mode(10_000) == "immediate" and not connector.batch_mode
    finally:
        await connector.aclose()
    # A notice the library logs (the command line shows it on stderr).
    said = caplog.text
    assert "mode auto: immediate (the provider has no batch endpoint)" in said


def test_cli_refuses_batch_mode_for_a_litellm_model_without_one(
    emulator: Any, tmp_path: Path, clean_env: None
) -> None:
    requests = _requests_file(tmp_path, 2)
    done = _lexibatch(
        *("run", str(requests), "--provider", "litellm", "--model", BATCHLESS),
        *("--mode", "batch", "--db", str(tmp_path / "l.db"), "--out", str(tmp_path / "o.jsonl")),
        env=_provider_env("litellm", emulator),
    )
    assert done.exit_code == 2
    (line,) = done.output.strip().splitlines()
    assert "'litellm' has no batch endpoint" in line


# --------------------------------------------------------------------------- anthropic


async def _anthropic_batch(connector: Any) -> None:
    connector.enable_batch_mode()
    answer = await connector.structured("q", Answer)
    assert isinstance(answer, Answer)


async def test_anthropic_keeps_no_shard_records_of_its_own(
    fresh_emulator: Any, make_settings: Any, tmp_path: Path, clean_env: None
) -> None:
    from plugins.factory import open_connector

    settings = make_settings(
        fresh_emulator, provider="anthropic", connector={"model": "claude-haiku-4-5"}
    )
    connector = open_connector(settings)
    try:
        await _anthropic_batch(connector)
    finally:
        await connector.aclose()
    # The store's journal is the only one: nothing beside it, nothing in the cache.
    assert not (settings.connector.db.parent / PROVIDER_STATE_DIR / "anthropic").exists()
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- sandbox


@pytest.mark.parametrize("mode", ["immediate", "batch"])
@pytest.mark.parametrize(
    ("speaks", "adapter", "model"),
    [
        ("anthropic", "AnthropicProvider", "claude-haiku-4-5"),
        ("gemini", "GeminiProvider", "gemini-2.5-flash"),
        ("mistral", "MistralProvider", "mistral-small-latest"),
    ],
)
async def test_the_sandbox_speaks_any_providers_api(
    fresh_sandbox: None,
    tmp_path: Path,
    clean_env: None,
    speaks: str,
    adapter: str,
    model: str,
    mode: str,
) -> None:
    from plugins.config import Settings
    from plugins.factory import open_connector
    from plugins.sandbox import sandbox_emulator

    settings = Settings.model_validate(
        {
            "connector": {"provider": "sandbox", "model": model, "db": str(tmp_path / "s.db")},
            "providers": {"sandbox": {"speaks": speaks}},
            "batch": {"linger": 0.05},
        }
    )
    connector = open_connector(settings)
    try:
        assert type(connector.provider).__name__ == adapter
        if mode == "batch":
            connector.enable_batch_mode()
        answers = await asyncio.gather(*(connector.structured(f"q{i}", Answer) for i in range(3)))
        assert all(isinstance(a, Answer) for a in answers)
    finally:
        await connector.aclose()
    billing = sandbox_emulator().billing()
    assert billing[mode]["requests"] == 3 and billing["duplicates"] == 0
