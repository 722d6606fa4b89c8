"""The plugin manager: built-ins through the hooks, entry points, the allow-list, bad plugins."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from plugins.config import Settings
from plugins.factory import open_connector
from plugins.manager import DEFAULT_PLUGINS, PluginManager
from providers.errors import ConfigError, UnknownPluginError
from tests.support.plugindist import install_plugin, plugin_env

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
    install_plugin(
        site,
        "lexi_echo_plugin",
        PLUGIN_SOURCE,
        dist="lexi-echo-plugin",
        version="0.3",
        entry="echo",
    )
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


def _left_out_of(manager: PluginManager, name: str, tmp_path: Path) -> str:
    """Why a run naming provider ``name`` is refused (it must be: it was left out)."""
    settings = Settings.model_validate(
        {"connector": {"provider": name, "db": str(tmp_path / "s.db")}}
    )
    with pytest.raises(UnknownPluginError) as info:
        open_connector(settings, manager=manager)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_name_registered_twice_by_one_distribution_goes_to_neither(
    installed_plugin: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A second module of the same distribution, under a second entry point, registers
    # "echo" again: which would run is an accident of load order, so neither does.
    (installed_plugin / "lexi_echo_plugin_two.py").write_text(PLUGIN_SOURCE)
    entry_points = installed_plugin / "lexi_echo_plugin-0.3.dist-info" / "entry_points.txt"
    entry_points.write_text("[lexibatch]\necho = lexi_echo_plugin\necho2 = lexi_echo_plugin_two\n")
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "lexi-echo-plugin")
    manager = PluginManager()
    with caplog.at_level(logging.WARNING, logger="lexibatch.plugins"):
        registry = manager.registry()
        manager.registry()
    assert "echo" not in registry.providers and "openai" in registry.providers
    why = "provider 'echo' is registered twice by lexi-echo-plugin 0.3"
    assert manager.left_out == [why]
    assert caplog.messages == [
        f"lexibatch: {why} — left out (fix or uninstall it, or leave it out of "
        "LEXIBATCH_LOAD_PLUGINS)"
    ]
    assert _left_out_of(manager, "echo", tmp_path).endswith(f"; left out: {why}")


def test_a_name_registered_by_two_distributions_goes_to_neither_and_others_run(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_plugin(
        installed_plugin,
        "other_echo",
        PLUGIN_SOURCE,
        dist="other-echo",
        version="2.0",
        entry="other",
    )
    monkeypatch.delenv("LEXIBATCH_LOAD_PLUGINS", raising=False)
    manager = PluginManager()
    assert "echo" not in manager.registry().providers
    message = _left_out_of(manager, "echo", tmp_path)
    assert "provider 'echo' is registered twice (" in message, message
    assert "lexi-echo-plugin 0.3" in message and "other-echo 2.0" in message
    # A provider neither plugin touches is built as if they were not installed.
    settings = Settings.model_validate(
        {"connector": {"provider": "sandbox", "db": str(tmp_path / "t.db")}}
    )
    import asyncio

    async def build_and_close() -> str:
        connector = open_connector(settings, manager=manager)
        await connector.aclose()
        return connector.provider_name

    assert asyncio.run(build_and_close()) == "sandbox"


def test_a_plugin_taking_a_built_in_name_is_left_out_for_that_name_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def register_providers(register: Any) -> None:
        register("openai", _Complete, description="not OpenAI")
        register("acme", _Complete, description="Acme")

    manager = _registry_of(register_providers)
    with caplog.at_level(logging.WARNING, logger="lexibatch.plugins"):
        registry = manager.registry()
    assert registry.provider("openai").origin == "built-in"
    assert registry.provider("acme").origin == "acme 1.0"
    assert manager.left_out == [
        "provider 'openai' of acme 1.0 takes the name of a built-in one, which is used instead"
    ]
    assert len(caplog.messages) == 1


def test_allow_list_excludes_entry_points(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "")
    manager = PluginManager()
    assert "echo" not in manager.registry().providers
    # A run naming its provider is told why it is unknown.
    settings = Settings.model_validate({"connector": {"provider": "echo", "db": ":memory:"}})
    with pytest.raises(UnknownPluginError) as info:
        open_connector(settings, manager=manager)
    assert str(info.value).endswith("; left out: installed but not in LEXIBATCH_LOAD_PLUGINS: echo")
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "something-else")
    with caplog.at_level(logging.WARNING, logger="lexibatch.plugins"):
        assert "echo" not in PluginManager().registry().providers
    assert caplog.messages == [
        "lexibatch: LEXIBATCH_LOAD_PLUGINS names something-else, which no installed plugin "
        "is called"
    ]
    # A distribution's name as pip compares them: case, "-", "_" and "." alike.
    for name in ("lexi-echo-plugin", "lexi_echo_plugin", "Lexi-Echo.Plugin", " ECHO "):
        monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", f"other,{name}")
        assert "echo" in PluginManager().registry().providers, name


def _listed(site: Path, load: str) -> list[str]:
    """What ``lexibatch plugins`` prints with the plugins in ``site`` (``load`` of them)."""
    done = subprocess.run(
        [sys.executable, "-m", "synthesis.cli", "plugins"],
        capture_output=True,
        text=True,
        env=plugin_env(site, load),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_cli_lists_plugins_with_their_origin(installed_plugin: Path) -> None:
    out = "\n".join(_listed(installed_plugin, "echo"))
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "built-in" in lines["openai"] and "[batch]" in lines["openai"]
    assert "lexi-echo-plugin 0.3" in lines["echo"] and "[no batch]" in lines["echo"]
    assert "built-in" in lines["batch"] and "built-in" in lines["immediate"]


def test_cli_lists_what_was_left_out_and_why(installed_plugin: Path) -> None:
    # A second distribution whose registration fails: listed with why, the rest still runs.
    source = (
        "from plugins import hookimpl\n\n"
        "@hookimpl\n"
        "def register_providers(register):\n"
        "    register('broken', 'not callable')\n"
    )
    install_plugin(
        installed_plugin, "broken_echo", source, dist="broken-echo", version="1.0", entry="broken"
    )
    listed = _listed(installed_plugin, "broken")
    left = listed[listed.index("left out:") + 1 :]
    assert left == [
        "  plugin broken:broken_echo (broken-echo 1.0) failed in register_providers: TypeError: "
        "provider 'broken': factory must be callable, got 'not callable'",
        "  installed but not in LEXIBATCH_LOAD_PLUGINS: echo",
    ]
    assert any(line.startswith("  openai ") for line in listed)


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


class _Complete:
    """A provider with everything the protocol asks for, and no batch endpoint."""

    batch = None

    def __init__(self, name: str) -> None:
        self.name = name

    async def complete(self, request: object) -> None:
        raise AssertionError("not called")

    async def aclose(self) -> None:
        pass


def _registry_of(register_providers: object) -> Any:
    from plugins import hookimpl

    class Plugin:
        pass

    Plugin.register_providers = staticmethod(hookimpl(register_providers))  # type: ignore[attr-defined]
    manager = PluginManager(load_entrypoints=False)
    manager.register(Plugin(), name="acme-plugin", origin="acme 1.0")
    return manager


@pytest.mark.parametrize(
    ("register_providers", "said"),
    [
        (
            lambda register: register("acme", _Complete, "a description"),
            "failed in <lambda>: TypeError: ",
        ),
        (
            lambda register: register("acme", _Complete, spec={"key_env": "ACME_KEY"}),
            "provider 'acme': spec must be a ProviderSpec, got dict",
        ),
        (
            lambda register: register("acme", "not callable"),
            "provider 'acme': factory must be callable",
        ),
        (
            lambda register: (_ for _ in ()).throw(RuntimeError("no network at import")),
            "failed in <lambda>: RuntimeError: no network at import",
        ),
    ],
)
def test_a_plugin_registering_wrongly_is_left_out_in_one_line_naming_it(
    register_providers: object, said: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = _registry_of(register_providers)
    with caplog.at_level(logging.WARNING, logger="lexibatch.plugins"):
        registry = manager.registry()
    # Nothing it registered is kept; the built-ins are all there.
    assert "acme" not in registry.providers and "openai" in registry.providers
    [why] = manager.left_out
    assert why.startswith("plugin acme-plugin (acme 1.0)") and said in why, why
    assert "\n" not in why and len(caplog.messages) == 1
    message = _left_out_of(manager, "acme", tmp_path)
    assert message.startswith("unknown provider 'acme'") and message.endswith(why)


def test_a_built_in_plugin_registering_wrongly_stops_everything() -> None:
    from plugins import hookimpl

    class Builtin:
        @staticmethod
        @hookimpl
        def register_providers(register: Any) -> None:
            register("broken", "not callable")

    manager = PluginManager(load_entrypoints=False)
    manager.register(Builtin(), name="builtin-broken", origin="built-in")
    with pytest.raises(ConfigError, match="factory must be callable"):
        manager.registry()


def test_a_provider_spec_is_checked_as_the_plugin_registers() -> None:
    from pydantic import BaseModel

    from plugins.provideroptions import ProviderSettings
    from plugins.providerspec import BatchSpec, ProviderSpec

    class Plain(BaseModel):
        region: str = "eu"

    class Needy(ProviderSettings):
        region: str

    with pytest.raises(TypeError, match="options must be a ProviderSettings subclass"):
        ProviderSpec(options=Plain)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="region must have defaults"):
        ProviderSpec(options=Needy)
    with pytest.raises(ValueError, match="must name an environment variable") as pasted:
        ProviderSpec(key_env="sk-proj-abc123")
    assert "abc123" not in str(pasted.value)  # a pasted key is not echoed
    with pytest.raises(ValueError, match="max_requests must be a positive integer"):
        BatchSpec(max_requests=0, max_bytes=10)
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        BatchSpec(max_requests=10, max_bytes=-5)
    assert ProviderSpec(key_env="ACME_API_KEY").key_env == "ACME_API_KEY"


class _NoClose:
    batch = None
    name = "acme"

    async def complete(self, request: object) -> None:
        raise AssertionError("not called")


class _HalfEndpoint:
    limits = None

    def encode(self, request: object, custom_id: str) -> bytes:
        return b"{}"


class _HalfBatch(_Complete):
    batch = _HalfEndpoint()


@pytest.mark.parametrize(
    ("factory", "said"),
    [
        (lambda name, settings: _NoClose(), "is incomplete: it has no aclose (see"),
        (
            lambda name, settings: _HalfBatch(name),
            "is incomplete: it has no batch.upload, batch.create, batch.find, batch.poll, "
            "batch.results, batch.cancel (see providers.protocol)",
        ),
        (lambda name: _Complete(name), "could not be built: TypeError: "),
    ],
)
def test_a_provider_is_checked_whole_when_it_is_built(
    tmp_path: Path, factory: object, said: str
) -> None:
    manager = _registry_of(lambda register: register("acme", factory))
    settings = Settings.model_validate(
        {"connector": {"provider": "acme", "db": str(tmp_path / "s.db")}}
    )
    with pytest.raises(ConfigError) as info:
        open_connector(settings, manager=manager)
    message = str(info.value)
    assert message.startswith("provider 'acme' (acme 1.0) ") and said in message, message
    assert message.endswith("fix or uninstall its plugin, or choose another provider")


async def test_a_choose_strategy_answer_that_is_no_mode_is_refused(tmp_path: Path) -> None:
    from plugins import hookimpl

    class Warp:
        @hookimpl
        def choose_strategy(self, workload: object) -> str:
            return "warp"

    manager = PluginManager(load_entrypoints=False)
    manager.register(Warp(), name="warp", origin="test")
    settings = Settings.model_validate(
        {"connector": {"mode": "auto", "db": str(tmp_path / "store.db")}}
    )
    connector = open_connector(settings, manager=manager)
    try:
        with pytest.raises(ConfigError, match="a choose_strategy hook answered 'warp'"):
            connector.choose_mode(1, announce=False)
    finally:
        await connector.aclose()


def test_a_price_map_provider_the_map_does_not_have_is_warned_about_once_and_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins import factory
    from plugins.estimate import unknown_prices
    from plugins.providerspec import ProviderSpec
    from providers.pricing import PriceTable

    table = PriceTable.from_mapping(
        {"gpt-4o-mini": {"litellm_provider": "openai", "input_cost_per_token": 1e-7}}
    )
    assert unknown_prices(ProviderSpec(prices="openai"), table) is None
    assert unknown_prices(ProviderSpec(), table) is None
    assert unknown_prices(ProviderSpec(prices="acmecorp"), PriceTable.from_mapping({})) is None
    said = unknown_prices(ProviderSpec(prices="acmecorp"), table)
    assert said == (
        "prices='acmecorp' names no provider of the price map: its models are priced by "
        "their names alone"
    )

    monkeypatch.setattr(factory, "_warned_prices", set())
    manager = _registry_of(
        lambda register: register(
            "acme", lambda name, settings: _Complete(name), spec=ProviderSpec(prices="acmecorp")
        )
    )
    settings = Settings.model_validate(
        {"connector": {"provider": "acme", "db": str(tmp_path / "s.db")}}
    )

    async def open_twice() -> None:
        for _ in range(2):
            connector = open_connector(settings, manager=manager)
            await connector.aclose()

    import asyncio

    with caplog.at_level(logging.WARNING, logger="lexibatch.plugins"):
        asyncio.run(open_twice())
    warned = [r.getMessage() for r in caplog.records if "names no provider" in r.getMessage()]
    assert warned == [
        "lexibatch: provider acme (acme 1.0): prices='acmecorp' names no provider of "
        "the price map: its models are priced by their names alone"
    ]
    # `lexibatch plugins` says it under the provider (the installed price map knows
    # every built-in provider's name, so only acme's line is a warning).
    from plugins.cli.listing import plugin_lines

    monkeypatch.setattr("plugins.manager.get_plugin_manager", lambda: manager)
    lines = list(plugin_lines())
    warnings = [line for line in lines if "warning:" in line]
    assert warnings == [
        "      warning: prices='acmecorp' names no provider of the price map: its models are "
        "priced by their names alone"
    ]
    assert lines.index(warnings[0]) > next(
        i for i, line in enumerate(lines) if line.startswith("  acme ")
    )
