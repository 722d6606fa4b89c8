"""Fixtures of the provider suite: every built-in provider, in both modes, against an emulator.

A :class:`Target` is one provider wired to an emulator of this test's own, so
the emulator's billing report counts this test's traffic only:

* ``openai`` and ``litellm`` reach an in-process emulator at ``<root>/v1``;
* ``anthropic`` and ``gemini`` reach it at its root (their SDKs add ``/v1`` and ``/v1beta``);
* ``mistral`` reaches it at ``<root>/mistral`` (where the emulator serves Mistral's API);
* ``sandbox`` starts its own emulator, as it does for a user, with its state
  in the test's folder;
* ``acme`` is a provider from outside (``tests/outside/acme``): its package is
  installed for the session (setuptools writes its metadata, entry point
  included, from its ``pyproject.toml``), found through the ``lexibatch``
  entry-point group, and reaches the emulator's OpenAI API at ``<root>/v1``.

Each uses a model the price table knows, so costs are real numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

#: Provider → a model the price table prices (batch at half the immediate price).
PRICED_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "litellm": "openai/gpt-4o-mini",
    "gemini": "gemini-2.5-flash",
    "mistral": "mistral-small-latest",
    "sandbox": "gpt-4o-mini",
    "acme": "gpt-4o-mini",
}

#: The outside provider's package, as its author would publish it.
OUTSIDE_PACKAGE = Path(__file__).resolve().parents[1] / "outside" / "acme"

#: Where each provider reaches the emulator, from its root.
BASE_PATHS = {"anthropic": "", "gemini": "", "mistral": "/mistral"}

PROVIDERS = tuple(PRICED_MODELS)
MODES = ("immediate", "batch")


class Entry(BaseModel):
    """The response model every suite call asks for."""

    word: str
    level: str


@dataclass
class Target:
    """One built-in provider against an emulator, with a store in the test's folder."""

    provider: str
    tmp_path: Path
    own_emulator: Any = None

    @property
    def model(self) -> str:
        """The priced model this provider is tested with."""
        return PRICED_MODELS[self.provider]

    def marked(self, marker: str) -> str:
        """The model with an emulator fault marker (``model@marker``)."""
        return f"{self.model}@{marker}"

    @property
    def db(self) -> Path:
        """The store every connector of this test opens."""
        return self.tmp_path / "store.db"

    def settings(self, **sections: Any) -> Any:
        """Settings for this provider, brisk enough for tests; ``sections`` override."""
        from plugins.config import Settings

        data: dict[str, Any] = {
            "connector": {"provider": self.provider, "model": self.model, "db": str(self.db)},
            "batch": {"linger": 0.05, "poll_interval": 0.02, "max_poll_interval": 0.05},
            "retry": {"backoff_initial": 0.01, "backoff_max": 0.05},
        }
        if self.provider != "sandbox":
            base = self.own_emulator.base_url + BASE_PATHS.get(self.provider, "/v1")
            data["providers"] = {self.provider: {"base_url": base}}
            if self.provider == "gemini":
                # Every shard through a file: upload and download are what can break.
                data["providers"]["gemini"]["inline_max_bytes"] = 0
        for section, values in sections.items():
            data.setdefault(section, {}).update(values)
        return Settings.model_validate(data)

    def open(self, **sections: Any) -> Any:
        """A connector built the way the command line builds one (``open_connector``)."""
        from plugins.factory import open_connector

        return open_connector(self.settings(**sections))

    @property
    def emulator(self) -> Any:
        """The emulator this target talks to (the sandbox's once a connector is open)."""
        if self.provider == "sandbox":
            from plugins.sandbox import sandbox_emulator

            emu = sandbox_emulator()
            assert emu is not None, "open a connector first"
            return emu
        return self.own_emulator

    def billing(self) -> dict[str, Any]:
        """The emulator's billing report."""
        report: dict[str, Any] = self.emulator.billing()
        return report


@pytest.fixture
def fresh_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A sandbox emulator of this test's own (batches ready at the first poll)."""
    from plugins import sandbox

    monkeypatch.setattr(sandbox, "_batch_seconds", 0.0)
    sandbox.stop_sandbox_emulator()
    yield
    sandbox.stop_sandbox_emulator()


@pytest.fixture(scope="session")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the outside provider's package is installed, for ``sys.path``.

    The installed setuptools builds the package's metadata (its ``lexibatch``
    entry point included) from its ``pyproject.toml``, offline, from a copy
    (so the source folder stays clean).
    """
    root = tmp_path_factory.mktemp("acme")
    source, site = root / "source", root / "site"
    shutil.copytree(OUTSIDE_PACKAGE, source)
    site.mkdir()
    command = [sys.executable, "-c", "import setuptools; setuptools.setup()"]
    command += ["-q", "egg_info", "--egg-base", str(site)]
    subprocess.run(command, cwd=source, check=True, capture_output=True)
    shutil.copy(source / "lexibatch_acme.py", site)
    return site


@pytest.fixture
def acme_installed(acme_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The ``acme`` package on ``sys.path``, its entry point allowed, its key variable set."""
    from plugins.manager import reset_plugin_manager

    monkeypatch.syspath_prepend(str(acme_site))
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "acme")
    monkeypatch.setenv("ACME_API_KEY", "acme-test-dummy")
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(params=PROVIDERS)
def target(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    api_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Target]:
    """Each provider in turn (the built-ins and ``acme``), against an emulator of the test's own."""
    # Shard records and any other per-user cache land in the test's folder.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    provider = str(request.param)
    if provider == "acme":
        request.getfixturevalue("acme_installed")
    if provider == "sandbox":
        request.getfixturevalue("fresh_sandbox")
        target = Target(provider, tmp_path)
        yield target
        return
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=0.0)) as emu:
        yield Target(provider, tmp_path, own_emulator=emu)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """``immediate`` or ``batch``."""
    return str(request.param)
