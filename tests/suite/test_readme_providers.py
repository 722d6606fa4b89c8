"""The README's provider examples work as written: every TOML snippet loads, and runs.

Each ``lexibatch.toml`` snippet of the Configuration and OpenAI-compatible
sections is loaded with ``load_settings`` and then used for one structured
call, with only ``base_url`` pointed at the emulator; the "Write a provider"
walkthrough quotes the package of ``tests/outside/acme`` (installed through its
entry point) and its config serves a call.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

README = Path(__file__).resolve().parents[2] / "README.md"


class Answer(BaseModel):
    """A small response model."""

    answer: str


def _blocks(language: str, start: str, end: str) -> list[str]:
    text = README.read_text()
    section = text[text.index(start) : text.index(end)]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _config_snippets() -> list[str]:
    snippets = _blocks("toml", "## Configuration", "## Plugins")
    assert len(snippets) >= 7, "the README lost provider examples"
    return snippets


def _snippet_id(snippet: str) -> str:
    first = snippet.strip().splitlines()[0]
    return first.lstrip("# ").split()[0] if first.startswith("#") else first


@pytest.mark.parametrize("snippet", _config_snippets(), ids=_snippet_id)
async def test_each_config_example_loads_and_serves_a_call(
    snippet: str,
    tmp_path: Path,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tomllib

    from plugins.config import load_settings
    from plugins.factory import open_connector

    (tmp_path / "lexibatch.toml").write_text(snippet)
    data = tomllib.loads(snippet)
    for provider in data.get("providers", {}).values():
        if provider.get("api_key_env"):
            monkeypatch.setenv(provider["api_key_env"], "sk-readme-dummy")
    settings = load_settings(cwd=tmp_path, env={})
    provider = settings.connector.provider or "openai"
    # Where each provider's API is on the emulator.
    paths = {
        "openai": "/v1",
        "litellm": "/v1",
        "anthropic": "",
        "gemini": "",
        "mistral": "/mistral",
    }
    if provider not in paths:
        pytest.fail(f"unexpected provider {provider!r} in a README example")
    base = emulator.base_url + paths[provider]
    settings = load_settings(
        cwd=tmp_path,
        env={},
        overrides={
            "connector.provider": provider,
            f"providers.{provider}.base_url": base,
            "connector.db": str(tmp_path / "store.db"),
            "connector.mode": "immediate",
        },
    )
    if provider == "litellm":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-readme-dummy")
    connector = open_connector(settings)
    try:
        answer = await connector.structured("question", Answer)
    finally:
        await connector.aclose()
    assert isinstance(answer, Answer)


OUTSIDE = Path(__file__).resolve().parents[1] / "outside" / "acme"


def test_the_write_a_provider_walkthrough_quotes_the_package_it_describes() -> None:

    module = (OUTSIDE / "lexibatch_acme.py").read_text()
    python = _blocks("python", "## Plugins", "## The emulator")
    assert len(python) == 2, "the walkthrough lost its code"
    for block in python:
        # Each quoted piece is the package's own code (a method quoted dedented).
        assert block in module or textwrap.indent(block, "    ") in module, block
    (entry,) = [b for b in _blocks("toml", "## Plugins", "## The emulator") if "entry" in b]
    assert entry.strip() in (OUTSIDE / "pyproject.toml").read_text()


async def test_the_walkthroughs_config_uses_the_installed_provider(
    tmp_path: Path, emulator: Any, acme_installed: None
) -> None:
    from plugins.config import load_settings
    from plugins.factory import open_connector

    (config,) = [b for b in _blocks("toml", "## Plugins", "## The emulator") if "[connector]" in b]
    (tmp_path / "lexibatch.toml").write_text(config)
    settings = load_settings(
        cwd=tmp_path,
        env={},
        overrides={
            "providers.acme.base_url": emulator.base_url + "/v1",
            "connector.db": str(tmp_path / "store.db"),
        },
    )
    assert settings.connector.provider == "acme"
    assert settings.provider_settings("acme").organization == "dictionary-team"  # type: ignore[attr-defined]
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        assert isinstance(await connector.structured("question", Answer), Answer)
    finally:
        await connector.aclose()
