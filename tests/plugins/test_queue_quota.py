"""A provider that words a full batch queue as any exhausted quota says so in its BatchSpec."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from plugins import hookimpl
from plugins.config import registered_spec
from plugins.factory import open_connector
from plugins.manager import get_plugin_manager, reset_plugin_manager
from plugins.provideroptions import ProviderSettings
from plugins.providerspec import BatchSpec, ProviderSpec
from providers.errors import RateLimitError, error_from_status
from providers.protocol import Provider
from tests.plugins.batch_helpers import Entry

MODEL = "gemini-2.5-flash"


# How Vertex words a full batch queue: as any exhausted quota, the queue unnamed.
QUOTA = "Quota exceeded for aiplatform.googleapis.com/gemini_batch_requests. Try again later."


def make_vertex(name: str, settings: ProviderSettings) -> Provider:
    """Gemini's API under a name of its own, whose full batch queue is a 429 worded as
    any exhausted quota."""
    from providers.gemini import GeminiProvider

    provider = GeminiProvider(name=name, api_key=settings.api_key(name), base_url=settings.base_url)
    endpoint = provider.batch
    create = endpoint.create

    async def create_worded_as_quota(*args: Any, **kwargs: Any) -> Any:
        try:
            return await create(*args, **kwargs)
        except RateLimitError as exc:
            raise error_from_status(429, QUOTA, provider=name, code="RESOURCE_EXHAUSTED") from exc

    endpoint.create = create_worded_as_quota  # type: ignore[method-assign]
    return provider


class _VertexPlugin:
    def __init__(self, quota_worded: bool) -> None:
        self.spec = ProviderSpec(
            key_env="VERTEX_TEST_KEY",
            prices="gemini",
            batch=BatchSpec(
                max_requests=1_000,
                max_bytes=10_000_000,
                input="file or inline",
                queue_full_as_quota=quota_worded,
            ),
        )

    @hookimpl
    def register_providers(self, register: Any) -> None:
        register("vertex", make_vertex, description="Gemini under another name", spec=self.spec)


@pytest.fixture(params=[True, False], ids=["declared", "not-declared"])
def vertex(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """The ``vertex`` provider registered from outside, declaring the flag or not."""
    monkeypatch.setenv("VERTEX_TEST_KEY", "vertex-test-dummy")
    reset_plugin_manager()
    get_plugin_manager().register(
        _VertexPlugin(request.param), name="vertex-plugin", origin="vertex-test 1.0"
    )
    yield request.param
    reset_plugin_manager()


def test_gemini_declares_its_full_queue_worded_as_a_quota() -> None:
    gemini, openai = registered_spec("gemini"), registered_spec("openai")
    assert gemini is not None and gemini.batch is not None and gemini.batch.queue_full_as_quota
    assert openai is not None and openai.batch is not None
    assert not openai.batch.queue_full_as_quota
    assert "a lasting 429 at create is a full queue" in gemini.batch.describe()


async def test_an_outside_provider_declaring_a_quota_worded_queue_waits_for_room(
    vertex: bool,
    fresh_emulator: Any,
    make_settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Another member of the organisation holds the queue: every create is
    # refused with a 429 that reads as any exhausted quota.
    fresh_emulator.configure(enqueued_token_limit=1)
    settings = make_settings(
        fresh_emulator,
        provider="vertex",
        connector={"model": MODEL},
        providers={"vertex": {"base_url": fresh_emulator.base_url}},
        retry={"max_attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.02},
    )
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
            task = asyncio.ensure_future(connector.structured("quota word", Entry, task="t"))
            for _ in range(500):
                await asyncio.sleep(0.02)
                waiting = any("waiting for queue room" in r.getMessage() for r in caplog.records)
                if waiting or task.done():
                    break
        assert fresh_emulator.billing()["queue_refusals"] >= 1
        assert not any("Enqueued" in r.getMessage() for r in caplog.records)
        if vertex:
            # Taken for a full queue: journaled before create, waiting, nothing failed.
            assert waiting and not task.done()
            assert [s.state for s in connector.store.shards()] == ["uploaded"]
            fresh_emulator.configure(enqueued_token_limit=None)  # the queue drains
            assert isinstance(await asyncio.wait_for(task, 30), Entry)
        else:
            # A 429 like any other, given up on by the retry policy: the shard stops,
            # journaled before create for the same command to resume.
            with pytest.raises(RateLimitError):
                await asyncio.wait_for(task, 30)
            assert not waiting
            assert [s.state for s in connector.store.shards()] == ["uploaded"]
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == (1 if vertex else 0)
