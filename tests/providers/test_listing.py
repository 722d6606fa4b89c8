"""Finding a shard's batch in a newest-first list of batches."""

from __future__ import annotations

from typing import Any

import pytest

from providers.errors import ProviderError
from providers.listing import CLOCK_SKEW_S, Page, find_listed


def _batch(batch_id: str, created_at: Any, shard: str | None = None) -> dict[str, Any]:
    return {"id": batch_id, "created_at": created_at, "metadata": {"lexibatch_shard": shard}}


async def test_a_service_that_ignores_the_cursor_is_not_read_for_ever() -> None:
    fetched: list[str | None] = []

    async def same_page(after: str | None) -> Page:
        fetched.append(after)
        return [_batch("batch_a", 10), _batch("batch_b", 9)], True, "batch_b"

    # Not "none found": that would create the batch again.
    with pytest.raises(ProviderError, match="does not page past batch_b"):
        await find_listed(same_page, "s-1", None)
    assert fetched == [None, "batch_b"]


async def test_a_batch_stamped_within_the_clock_margin_before_the_shard_is_found() -> None:
    journaled = 1_000_000.0
    pages = {
        None: ([_batch("batch_x", journaled - 1)], True, "batch_x"),
        "batch_x": ([_batch("batch_ours", journaled - CLOCK_SKEW_S + 1, "s-1")], False, None),
    }

    async def fetch(after: str | None) -> Page:
        return pages[after]

    found = await find_listed(fetch, "s-1", journaled)
    assert found is not None and found["id"] == "batch_ours"


async def test_an_unreadable_stamp_does_not_end_the_search() -> None:
    pages = {
        None: ([_batch("batch_x", "yesterday")], True, "batch_x"),
        "batch_x": ([_batch("batch_ours", 5.0, "s-1")], False, None),
    }

    async def fetch(after: str | None) -> Page:
        return pages[after]

    # "yesterday" could be any age: the next page is read, and names the shard.
    found = await find_listed(fetch, "s-1", 1_000_000.0)
    assert found is not None and found["id"] == "batch_ours"
