"""A provider whose API takes no schema asks in the prompt; the engine validates the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from plugins import hookimpl
from plugins.config import registered_spec
from plugins.factory import open_connector
from plugins.manager import get_plugin_manager, reset_plugin_manager
from plugins.provideroptions import ProviderSettings
from plugins.providerspec import ProviderSpec
from providers.errors import SchemaValidationError
from providers.jsonprompt import prompted_messages
from providers.types import Completion, Message, Request, Usage
from tests.plugins.batch_helpers import Entry


class PlainChat:
    """A chat API that cannot be told a schema: it answers what the prompt asks for."""

    def __init__(self, name: str, answer: str) -> None:
        self.name = name
        self.answer = answer
        self.sent: list[tuple[Message, ...]] = []

    @property
    def batch(self) -> None:
        return None

    async def complete(self, request: Request) -> Completion:
        messages = prompted_messages(request)
        self.sent.append(messages)
        asked = "fits this JSON schema" in messages[0].content
        return Completion(
            content=self.answer if asked else "Sure! The word is swift.",
            usage=Usage(input_tokens=9, output_tokens=7),
            model=request.model,
        )

    async def aclose(self) -> None:
        return None


class _PlainPlugin:
    def __init__(self, answer: str) -> None:
        self.made: list[PlainChat] = []
        self.answer = answer

    @hookimpl
    def register_providers(self, register: Any) -> None:
        def make(name: str, settings: ProviderSettings) -> PlainChat:
            provider = PlainChat(name, self.answer)
            self.made.append(provider)
            return provider

        spec = ProviderSpec(key_env="PLAIN_TEST_KEY", structured_output=())
        register("plain", make, description="a chat API without structured output", spec=spec)


@pytest.fixture
def plain(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_PlainPlugin]:
    """The ``plain`` provider registered from outside, answering ``request.param``."""
    monkeypatch.setenv("PLAIN_TEST_KEY", "plain-test-dummy")
    reset_plugin_manager()
    plugin = _PlainPlugin(request.param)
    get_plugin_manager().register(plugin, name="plain-plugin", origin="plain-test 1.0")
    yield plugin
    reset_plugin_manager()


def _settings(make_settings: Any, fresh_emulator: Any) -> Any:
    return make_settings(
        fresh_emulator,
        provider="plain",
        connector={"model": "plain-1"},
        providers={"plain": {}},
        retry={"max_attempts": 1},
    )


def test_the_prompt_asks_for_the_schema_in_the_system_message() -> None:
    request = Request(model="m", messages=(Message("user", "swift?"),), response_model=Entry)
    system, user = prompted_messages(request)
    assert system.role == "system" and user == Message("user", "swift?")
    assert json.dumps(request.json_schema, sort_keys=True, separators=(",", ":")) in system.content
    # An own system message keeps its words, the instruction after them.
    own = request.with_messages((Message("system", "Be brief."), Message("user", "swift?")))
    first, _ = prompted_messages(own)
    assert first.content.startswith("Be brief.\n\nAnswer with one JSON object")
    plain = Request(model="m", messages=(Message("user", "hi"),))
    assert prompted_messages(plain) == plain.messages


@pytest.mark.parametrize("plain", ['{"word": "swift", "level": "B1"}'], indirect=True)
async def test_an_answer_asked_for_in_the_prompt_is_validated_into_the_model(
    plain: _PlainPlugin, fresh_emulator: Any, make_settings: Any
) -> None:
    spec = registered_spec("plain")
    assert spec is not None
    assert "structured output: none (asked in the prompt)" in spec.describe()[0]
    connector = open_connector(_settings(make_settings, fresh_emulator))
    try:
        entry = await connector.structured("swift?", Entry, task="t")
        request = connector.build_request("swift?", Entry, task="t")
    finally:
        await connector.aclose()
    assert entry == Entry(word="swift", level="B1")
    [provider] = plain.made
    [sent] = provider.sent
    # Asked in words; the key is the provider-neutral request's.
    assert "fits this JSON schema" in sent[0].content
    assert request.messages == (Message("user", "swift?"),)


@pytest.mark.parametrize("plain", ['{"word": "swift"}'], indirect=True)
async def test_an_answer_that_does_not_fit_the_schema_is_a_schema_error(
    plain: _PlainPlugin, fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(_settings(make_settings, fresh_emulator))
    try:
        with pytest.raises(SchemaValidationError):
            await connector.structured("swift?", Entry, task="t")
    finally:
        await connector.aclose()
