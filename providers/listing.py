"""Finding a shard's batch in a provider's list of batches, newest first.

OpenAI and the OpenAI-shaped services LiteLLM reaches list batches newest
first, a page at a time (``has_more``, ``last_id``, an ``after`` cursor),
each batch carrying the ``metadata`` it was created with. A shard's batch,
if it exists, was created after the shard was journaled: paging stops at a
batch older than that (less a margin for the two clocks), never at a fixed
age, so a shard resumed days later behind hundreds of newer batches is found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from providers.errors import ProviderError

__all__ = ["CLOCK_SKEW_S", "Page", "find_listed", "listed_since", "not_paging"]

#: How far the provider's clock may run behind ours when it stamps a batch.
CLOCK_SKEW_S = 600.0

#: One page of the list: its batches, whether more follow, and the cursor to them.
Page = tuple[Sequence[Mapping[str, Any]], bool, str | None]


async def find_listed(
    fetch: Callable[[str | None], Awaitable[Page]], shard_id: str, since: float | None
) -> Mapping[str, Any] | None:
    """The newest listed batch whose metadata names ``shard_id``, if any.

    Args:
        fetch: reads the page after a cursor (``None``: the first page).
        shard_id: the ``lexibatch_shard`` metadata value the batch was created with.
        since: when the shard was journaled (epoch seconds); ``None`` reads every page.
    """
    horizon = None if since is None else since - CLOCK_SKEW_S
    async for raw in listed_since(fetch, horizon, shard_id):
        if (raw.get("metadata") or {}).get("lexibatch_shard") == shard_id:
            return raw
    return None


async def listed_since(
    fetch: Callable[[str | None], Awaitable[Page]],
    horizon: float | None,
    shard_id: str,
    created: Callable[[Mapping[str, Any]], float | None] | None = None,
) -> AsyncIterator[Mapping[str, Any]]:
    """Every listed batch, newest first, until a page reaches one older than ``horizon``.

    Args:
        fetch: reads the page after a cursor (``None``: the first page).
        horizon: epoch seconds; ``None`` reads every page.
        shard_id: the shard looked for (named by the error of a list that does not page).
        created: when a listed batch was made (default: its ``created_at``
            epoch seconds); ``None`` for a stamp that cannot be read, which
            never ends the listing.

    Raises:
        ProviderError: the cursor does not move (:func:`not_paging`).
    """
    created = created or _created
    after: str | None = None
    seen: set[str] = set()
    while True:
        data, has_more, last_id = await fetch(after)
        for raw in data:
            yield raw
        if not data or not has_more:
            return
        stamps = [created(raw) for raw in data]
        if horizon is not None and any(c is not None and c < horizon for c in stamps):
            return
        after = last_id or str(data[-1].get("id"))
        if after in seen:
            raise not_paging(after, shard_id)
        seen.add(after)


def not_paging(after: str, shard_id: str) -> ProviderError:
    """The error for a list of batches whose cursor does not move.

    A service that ignores the cursor serves the same page again. The
    shard's batch may be further on: "not found" would create (and pay for)
    it again, so this is an error, not an answer.
    """
    return ProviderError(
        f"the provider's list of batches does not page past {after}: whether shard "
        f"{shard_id} has a batch cannot be told; look for one made from it, then run again "
        f"(or `lexibatch batches forget {shard_id} --yes` if there is none)",
        code="list_not_paging",
    )


def _created(raw: Mapping[str, Any]) -> float | None:
    value = raw.get("created_at")
    return float(value) if isinstance(value, int | float) else None
