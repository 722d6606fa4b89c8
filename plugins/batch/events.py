"""A batch's life told to the observers: the lifecycle hooks, for one strategy's provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.observers import GuardedHook

if TYPE_CHECKING:
    from plugins.store import Shard
    from providers.types import BatchInfo, BatchState

__all__ = ["HookEvents"]


class HookEvents:
    """Calls the ``batch_*`` hooks (see :mod:`plugins.hookspecs`) with the provider's name.

    Meets :class:`plugins.batch.interfaces.BatchEvents`; an observer that
    raises is logged and passed over (see :mod:`plugins.observers`): the
    batch's life goes on.
    """

    def __init__(self, hooks: Any, provider: str) -> None:
        self._submitted = GuardedHook(hooks.batch_submitted)
        self._status_changed = GuardedHook(hooks.batch_status_changed)
        self._waiting_for_room = GuardedHook(hooks.batch_waiting_for_room)
        self.provider = provider

    def submitted(self, info: BatchInfo, shard: Shard) -> None:
        """The shard's batch was created (or found) at the provider."""
        self._submitted(
            batch=info, shard_id=shard.shard_id, provider=self.provider, requests=shard.requests
        )

    def status_changed(self, info: BatchInfo, previous: BatchState | None) -> None:
        """A poll saw the batch's state or counts change."""
        self._status_changed(batch=info, previous=previous, provider=self.provider)

    def waiting_for_room(
        self, shard_id: str, model: str, enqueued: int, cap: int | None, waiting: bool
    ) -> None:
        """A shard starts (``waiting``) or stops waiting for room in the provider's queue."""
        self._waiting_for_room(
            shard_id=shard_id,
            provider=self.provider,
            model=model,
            enqueued=enqueued,
            cap=cap,
            waiting=waiting,
        )
