"""Shared fixtures: an in-process emulator and connectors pointed at it.

Entry-point plugins are not loaded under test (``LEXIBATCH_LOAD_PLUGINS`` is
empty) unless a test asks for one; no test reaches the network or needs a key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["LEXIBATCH_LOAD_PLUGINS"] = ""
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for _var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY"):
    os.environ.pop(_var, None)
for _var in [v for v in os.environ if v.startswith("LEXIBATCH_") and v != "LEXIBATCH_LOAD_PLUGINS"]:
    os.environ.pop(_var, None)

#: The variable the tests' providers read their (dummy) key from.
TEST_KEY_ENV = "LEXIBATCH_TEST_API_KEY_UNUSED"


#: Where recorded cassettes live: ``cassettes/<test module>/`` at the top level.
CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, Any]:
    """Secrets never reach a cassette; the host is not matched (the emulator's port varies)."""
    return {
        "filter_headers": [
            "authorization",
            "x-api-key",
            "x-goog-api-key",
            "cookie",
            "set-cookie",
            "openai-organization",
            "anthropic-organization-id",
        ],
        "match_on": ["method", "path", "query"],
        "allow_playback_repeats": False,
    }


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    """One folder per test module in the top-level ``cassettes/``."""
    return str(CASSETTES / Path(request.module.__file__).stem)


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """One in-process emulator for the session; batches complete at the first poll."""
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=0.0)) as emu:
        yield emu


@pytest.fixture
def fresh_emulator() -> Iterator[Any]:
    """An emulator of the test's own, so its billing report counts only this test."""
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=0.0)) as emu:
        yield emu


@pytest.fixture
def api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy keys for the providers' default variables (the emulator accepts any)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-dummy")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-test-dummy")
    monkeypatch.setenv("MISTRAL_API_KEY", "mistral-test-dummy")


@pytest.fixture
def make_settings(tmp_path: Path, api_keys: None) -> Any:
    """A factory of settings against an emulator, with a store in the test's folder."""

    def make(emu: Any, *, provider: str = "openai", **sections: Any) -> Any:
        return settings_for(emu, tmp_path, provider=provider, **sections)

    return make


def settings_for(
    emu: Any,
    tmp_path: Path,
    *,
    provider: str = "openai",
    **sections: Any,
) -> Any:
    """Settings for ``provider`` against ``emu`` with a store in ``tmp_path``."""
    from plugins.config import Settings

    base = emu.base_url if provider == "anthropic" else emu.base_url + "/v1"
    data: dict[str, Any] = {
        "connector": {"provider": provider, "db": str(tmp_path / "store.db")},
        "providers": {provider: {"base_url": base}},
        "batch": {"linger": 0.05, "poll_interval": 0.02, "max_poll_interval": 0.05},
        "retry": {"backoff_initial": 0.01, "backoff_max": 0.05},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return Settings.model_validate(data)
