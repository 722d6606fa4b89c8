"""The plugin manager: built-ins through the hooks, entry points, the allow-list, bad plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plugins.config import Settings
from plugins.factory import open_connector
from plugins.manager import DEFAULT_PLUGINS, PluginManager
from providers.errors import ConfigError, UnknownPluginError

PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A tiny third-party provider: answers every structured call from its schema."""
    import orjson
    from plugins import hookimpl
    from providers.types import Completion, Usage

    class EchoProvider:
        batch = None

        def __init__(self, name):
            self.name = name

        async def complete(self, request):
            props = (request.json_schema or {}).get("properties", {})
            answer = {k: ("echo:" + request.messages[-1].content) for k in props}
            return Completion(orjson.dumps(answer).decode(), Usage(3, 4), request.model)

        async def aclose(self):
            pass

    @hookimpl
    def register_providers(register):
        register("echo", lambda name, settings: EchoProvider(name), description="echoes")
    '''
)


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install ``lexi_echo_plugin`` as a real distribution with a ``lexibatch`` entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "lexi_echo_plugin.py").write_text(PLUGIN_SOURCE)
    dist = site / "lexi_echo_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lexi-echo-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[lexibatch]\necho = lexi_echo_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_register_through_the_hooks() -> None:
    manager = PluginManager(load_entrypoints=False)
    registry = manager.registry()
    assert set(registry.providers) >= {"openai", "anthropic", "litellm", "sandbox"}
    assert set(registry.strategies) >= {"immediate", "batch"}
    assert {e.origin for e in registry.providers.values()} == {"built-in"}
    assert all(manager.pm.has_plugin(name) for name in DEFAULT_PLUGINS)
    assert registry.provider("openai").has_batch


def test_unknown_provider_names_the_registered_ones() -> None:
    registry = PluginManager(load_entrypoints=False).registry()
    with pytest.raises(UnknownPluginError) as info:
        registry.provider("opneai")
    assert "opneai" in str(info.value) and "openai" in str(info.value)


def test_an_unknown_hook_implementation_is_refused() -> None:
    from plugins import hookimpl

    class Bad:
        @hookimpl
        def register_provider(self, register: object) -> None:  # misspelt hook
            raise AssertionError("never called")

    manager = PluginManager(load_entrypoints=False)
    with pytest.raises(ConfigError, match="register_provider"):
        manager.register(Bad(), name="bad", origin="test")
    assert not manager.pm.has_plugin("bad")


def test_entry_point_plugin_is_loaded_and_used_from_config(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "echo")
    manager = PluginManager()
    entry = manager.registry().provider("echo")
    assert entry.origin == "lexi-echo-plugin 0.3"

    from pydantic import BaseModel

    class Word(BaseModel):
        text: str

    settings = Settings.model_validate(
        {"connector": {"provider": "echo", "db": str(tmp_path / "s.db")}}
    )

    async def call() -> Word:
        connector = open_connector(settings, manager=manager)
        try:
            return await connector.structured("hello", Word)
        finally:
            await connector.aclose()

    import asyncio

    assert asyncio.run(call()) == Word(text="echo:hello")


def test_allow_list_excludes_entry_points(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "")
    assert "echo" not in PluginManager().registry().providers
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "something-else")
    assert "echo" not in PluginManager().registry().providers
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "lexi-echo-plugin")
    assert "echo" in PluginManager().registry().providers


def test_cli_lists_plugins_with_their_origin(installed_plugin: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{installed_plugin}:{Path.cwd()}",
        "LEXIBATCH_LOAD_PLUGINS": "echo",
    }
    out = subprocess.run(
        [sys.executable, "-m", "synthesis.cli", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "built-in" in lines["openai"] and "[batch]" in lines["openai"]
    assert "lexi-echo-plugin 0.3" in lines["echo"] and "[no batch]" in lines["echo"]
    assert "built-in" in lines["batch"] and "built-in" in lines["immediate"]


@pytest.mark.parametrize(
    ("mode", "expected", "asked"),
    [("auto", "batch", True), ("immediate", "immediate", False), ("batch", "batch", False)],
)
async def test_choose_strategy_decides_auto_only_and_a_named_mode_stands(
    tmp_path: Path, mode: str, expected: str, asked: bool
) -> None:
    from plugins import hookimpl

    seen: list[str] = []

    class NightBatches:
        @hookimpl
        def choose_strategy(self, workload: object) -> str | None:
            seen.append(getattr(workload, "requested", "?"))
            return "batch"  # decides for every workload it is asked about

    manager = PluginManager(load_entrypoints=False)
    manager.register(NightBatches(), name="night", origin="test")
    settings = Settings.model_validate(
        {"connector": {"mode": mode, "db": str(tmp_path / "store.db")}}
    )
    connector = open_connector(settings, manager=manager)
    try:
        # Few requests: the built-in rule would say immediate in auto.
        assert connector.choose_mode(1, announce=False) == expected
    finally:
        await connector.aclose()
    assert seen == (["auto"] if asked else [])
