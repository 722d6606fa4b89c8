"""Fixtures: an in-process emulator and SDK clients pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from providers.emulator import Emulator, EmulatorConfig

# The test modules share helpers from emu_helpers.py beside this file.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A fresh emulator with batches that end at the first poll."""
    with Emulator(EmulatorConfig()) as running:
        yield running


@pytest.fixture
def oai(emu: Emulator) -> openai.OpenAI:
    """The official OpenAI SDK, no retries (so faults are visible)."""
    return openai.OpenAI(base_url=emu.base_url + "/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def ant(emu: Emulator) -> anthropic.Anthropic:
    """The official Anthropic SDK, no retries."""
    return anthropic.Anthropic(base_url=emu.base_url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
def http(emu: Emulator) -> Iterator[httpx.Client]:
    """A raw HTTP client, for wire-level checks."""
    with httpx.Client(base_url=emu.base_url, timeout=30) as client:
        yield client
