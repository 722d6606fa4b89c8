"""A provider from outside: installed, found through its entry point, using public names only.

The package in ``tests/outside/acme`` is what the README's "Write a provider"
walks through; the provider suite (``test_provider_suite.py``) runs over it
in both modes as ``target`` ``acme``.
"""

from __future__ import annotations

import ast
import gc
import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner

OUTSIDE_PACKAGE = Path(__file__).resolve().parents[1] / "outside" / "acme"


def test_it_is_found_through_its_entry_point(acme_installed: None, acme_site: Path) -> None:
    from plugins.manager import get_plugin_manager

    entry = get_plugin_manager().registry().provider("acme")
    assert entry.origin == "lexibatch-acme 0.1.0"
    module = importlib.import_module("lexibatch_acme")
    assert Path(str(module.__file__)).parent == acme_site
    assert entry.spec.key_env == "ACME_API_KEY" and entry.spec.prices == "openai"


def test_its_options_and_key_are_the_configs(
    acme_installed: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.config import load_settings
    from providers.errors import ConfigError, MissingAPIKeyError

    (tmp_path / "lexibatch.toml").write_text('[providers.acme]\ncompletion_window = "48h"\n')
    options = load_settings(env={}, cwd=tmp_path).provider_settings("acme")
    assert options.completion_window == "48h"  # type: ignore[attr-defined]
    (tmp_path / "lexibatch.toml").write_text('[providers.acme]\ncompletion_window = "1w"\n')
    with pytest.raises(ConfigError) as bad:
        load_settings(env={}, cwd=tmp_path)
    assert str(bad.value) == (
        "lexibatch.toml: providers.acme.completion_window: expected one of '24h', '48h', got '1w'"
    )
    monkeypatch.delenv("ACME_API_KEY")
    with pytest.raises(MissingAPIKeyError, match="ACME_API_KEY") as missing:
        options.api_key("acme")
    # The sandbox speaks the built-in providers' APIs, not Acme's: not offered.
    assert "--provider sandbox" not in str(missing.value)


def test_lexibatch_plugins_lists_it(acme_installed: None) -> None:
    from synthesis.cli import main

    lines = CliRunner().invoke(main, ["plugins"], catch_exceptions=False).output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["acme"])
    assert "lexibatch-acme 0.1.0" in lines[at] and "[batch]" in lines[at]
    assert "key: ACME_API_KEY · prices: openai" in lines[at + 1]
    assert "completion_window ('24h' | '48h', default '24h')" in lines[at + 3]
    assert "organization (str | None, default None)" in lines[at + 3]


def test_it_uses_only_public_names() -> None:
    source = (OUTSIDE_PACKAGE / "lexibatch_acme.py").read_text()
    # Earlier tests' garbage is collected first and the collector held off while
    # parsing: a finalizer run inside CPython 3.11's AST constructor (an asyncio
    # task's "exception was never retrieved" log) fails its recursion check.
    gc.collect()
    gc.disable()
    try:
        tree = ast.parse(source)
    finally:
        gc.enable()
    ours = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").split(".")[0] in ("plugins", "providers")
    ]
    assert ours
    for node in ours:
        module = importlib.import_module(str(node.module))
        for alias in node.names:
            assert alias.name in module.__all__, f"{node.module}.{alias.name} is not public"
