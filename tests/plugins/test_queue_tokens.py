"""The queue cap's estimate of a batch is never below what the provider (the emulator) counts."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, Field

from plugins.batch.queuecap import request_tokens
from plugins.factory import open_connector
from providers.emulator import Emulator, EmulatorConfig
from providers.emulator.gemini import chat_body
from providers.emulator.queuecap import anthropic_tokens, chat_tokens, openai_tokens
from tests.plugins.test_queue_cap import MODELS, PATHS

# Short and long, prose, code, punctuation and scripts a tokenizer cuts finely.
PROMPTS = [
    "a",
    "queue word 12",
    "Define the word 'serendipity' for a learner, with two examples. " * 6,
    "Ünïcødé ✓ 漢字 — ñ, Ελληνικά, русский, العربية. " * 12,
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": None}\n" * 15,
    "x" * 3000,
    "1234567890 " * 80,
]
SYSTEM = "You are a lexicographer. Answer with JSON only, in British English."


class Sense(BaseModel):
    gloss: str
    examples: list[str] = Field(default_factory=list)


class Entry(BaseModel):
    word: str
    level: str
    senses: list[Sense]


def _emulator_count(provider: str, lines: list[bytes]) -> int:
    """The batch's enqueued tokens as the emulator's queue counts them."""
    model = MODELS[provider]
    if provider == "openai":
        return openai_tokens(b"\n".join(lines))[model]
    items = [orjson.loads(line) for line in lines]
    if provider == "anthropic":
        return anthropic_tokens(items)[model]
    if provider == "gemini":
        return chat_tokens([(i["key"], chat_body(model, i["request"])) for i in items])[model]
    return chat_tokens([(i["custom_id"], {**i["body"], "model": model}) for i in items])[model]


@pytest.mark.parametrize("provider", list(MODELS))
def test_the_estimate_of_a_batch_is_at_least_the_providers_count(
    make_settings: Any, provider: str
) -> None:
    with Emulator(EmulatorConfig()) as emu:
        settings = make_settings(
            emu,
            provider=provider,
            connector={"model": MODELS[provider]},
            providers={provider: {"base_url": emu.base_url + PATHS[provider]}},
        )
        connector = open_connector(settings)
        try:
            requests = [
                connector.build_request(p, Entry, task="t", **({"system": SYSTEM} if s else {}))
                for p in PROMPTS
                for s in (False, True)
            ]
            endpoint = connector.provider.batch
            assert endpoint is not None
            lines = [endpoint.encode(r, r.key) for r in requests]
        finally:
            connector.store.close()
    ours = sum(request_tokens(r) for r in requests)
    theirs = _emulator_count(provider, lines)
    # Never below (the cap would let a batch through that the queue refuses),
    # and not so far above that the cap leaves the queue idle.
    assert theirs <= ours <= 1.3 * theirs, (ours, theirs)
    for request, line in zip(requests, lines, strict=True):
        one = _emulator_count(provider, [line])
        assert one <= request_tokens(request) <= 1.3 * one, (request.messages, one)
