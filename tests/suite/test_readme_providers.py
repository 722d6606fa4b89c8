"""The README's provider examples work as written: every TOML snippet loads, and runs.

Each ``lexibatch.toml`` snippet of the Configuration and OpenAI-compatible
sections is loaded with ``load_settings`` and then used for one structured
call, with only ``base_url`` pointed at the emulator; the plugin example
registers through a ``lexibatch`` entry point and serves a call.
"""

from __future__ import annotations

import re
import sys
import textwrap
from importlib import metadata
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


PLUGIN = textwrap.dedent(
    '''
    from plugins.builtin_providers import make_openai


    def MyProvider(name, settings):
        """An OpenAI-compatible service under a name of its own."""
        return make_openai(name, settings)


    '''
)


async def test_the_plugin_example_registers_through_the_entry_point(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins import manager as manager_module
    from plugins.config import load_settings
    from plugins.factory import open_connector

    (python,) = _blocks("python", "## Plugins", "## The emulator")
    (tmp_path / "myprovider_plugin.py").write_text(PLUGIN + python)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "myprovider_plugin", raising=False)
    (pyproject,) = [b for b in _blocks("toml", "## Plugins", "## The emulator") if "entry" in b]
    name, value = re.findall(r'^(\w+) = "([\w.]+)"$', pyproject, flags=re.MULTILINE)[0]
    entry = metadata.EntryPoint(name=name, value=value, group="lexibatch")
    monkeypatch.setattr(manager_module, "_entry_points", lambda: [entry])
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", name)
    manager = manager_module.PluginManager()
    assert "myprovider" in manager.registry().providers

    (config,) = [b for b in _blocks("toml", "## Plugins", "## The emulator") if "[connector]" in b]
    (tmp_path / "lexibatch.toml").write_text(config)
    monkeypatch.setenv("MYPROVIDER_API_KEY", "sk-readme-dummy")
    settings = load_settings(
        cwd=tmp_path,
        env={},
        overrides={
            "providers.myprovider.base_url": emulator.base_url + "/v1",
            "connector.db": str(tmp_path / "store.db"),
        },
    )
    assert settings.connector.provider == "myprovider"
    connector = open_connector(settings, manager=manager)
    try:
        assert isinstance(await connector.structured("question", Answer), Answer)
    finally:
        await connector.aclose()
