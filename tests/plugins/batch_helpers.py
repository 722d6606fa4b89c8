"""What the batch-strategy tests share: a response model, a gather, a crash, a full disk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from plugins.factory import open_connector
from providers.errors import ProviderConnectionError


class Entry(BaseModel):
    """A small response model."""

    word: str
    level: str


async def gather(connector: Any, prompts: list[str], model: str | None = None) -> list[Any]:
    """``structured()`` for every prompt at once; errors are returned, not raised."""
    return await asyncio.gather(
        *(connector.structured(p, Entry, task="t", model=model) for p in prompts),
        return_exceptions=True,
    )


async def crash_once(
    settings: Any, prompts: list[str], *, model: str | None = None, state: str = "created"
) -> None:
    """Batch ``prompts``, then "crash" once every new shard reached ``state`` (the process dies)."""
    first = open_connector(settings)
    first.enable_batch_mode()
    earlier = {s.shard_id for s in first.store.shards()}
    tasks = [
        asyncio.ensure_future(first.structured(p, Entry, task="t", model=model)) for p in prompts
    ]
    for _ in range(200):
        await asyncio.sleep(0.02)
        states = [s.state for s in first.store.shards() if s.shard_id not in earlier]
        if states and all(s == state for s in states):
            break
    assert states and all(s == state for s in states), states
    await _die(first, tasks)


async def crash_after_create(
    settings: Any, emu: Any, prompts: list[str], endpoint: type, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], int]:
    """Batch ``prompts``; the process dies once the provider made the batch, before it is journaled.

    ``endpoint``'s first ``create`` reaches the provider (``emu``) and gets its
    answer, then never returns. The shard is left in ``submitting``. Returns
    how many creates were sent so far (later runs' included).
    """
    original = endpoint.create  # type: ignore[attr-defined]
    calls = 0

    async def create_then_die(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        info = await original(self, *args, **kwargs)
        if calls == 1:
            await asyncio.Event().wait()  # made at the provider; the process dies here
        return info

    monkeypatch.setattr(endpoint, "create", create_then_die)
    first = open_connector(settings)
    first.enable_batch_mode()
    tasks = [asyncio.ensure_future(first.structured(p, Entry, task="t")) for p in prompts]
    for _ in range(200):
        await asyncio.sleep(0.02)
        if len(emu.app.state.batches) == 1:
            break
    await asyncio.sleep(0.2)  # its answer is in (and recorded, where the provider keeps records)
    assert calls == 1 and [s.state for s in first.store.shards()] == ["submitting"]
    await _die(first, tasks)
    return lambda: calls


async def _die(connector: Any, tasks: list[asyncio.Future[Any]]) -> None:
    await connector.aclose()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def break_results_once(monkeypatch: pytest.MonkeyPatch, *, then_slow: float = 0.0) -> None:
    """The first collection of a batch's results fails as a dropped connection.

    Every try the retry policy makes of that download (``max_attempts``, by
    default) fails, so the collection stops; the reads after it work.
    ``then_slow``: seconds every later read waits before its first line.
    """
    from plugins.config import RetrySettings
    from providers.openai import OpenAIBatchEndpoint

    original = OpenAIBatchEndpoint.results
    tries = RetrySettings().max_attempts
    state = {"broken": 0}

    async def results(self: Any, batch: Any) -> Any:
        if state["broken"] < tries:
            state["broken"] += 1
            raise ProviderConnectionError("connection reset while reading the output file")
        if then_slow:
            await asyncio.sleep(then_slow)
        async for item in original(self, batch):
            yield item

    monkeypatch.setattr(OpenAIBatchEndpoint, "results", results)


def fill_up(store: Any) -> None:
    """Cap the store at its current size: SQLite then fails as on a full disk.

    The pages its migrations freed (dropped tables) are given back first, or
    new rows would go into them under the cap.
    """
    store._conn.execute("VACUUM")
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")


def free_up(store: Any) -> None:
    """Lift the cap of :func:`fill_up`."""
    store._conn.execute("PRAGMA max_page_count = 1073741823")
