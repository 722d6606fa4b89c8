"""A user's cancel is final: what a cancelled batch did not answer ends as cancelled.

``lexibatch batches cancel`` records the user's intent on the shard's journal
row (``cancelled_by_user_at``) *before* it asks the provider, so whichever
process collects the batch — the run waiting on it, in this process or
another, or a later ``resume`` — finds the intent in the store when the batch
ends: its requests with no answer fail with :class:`CancelledByUserError`
(not retryable) instead of being sent, and paid for, again. What the batch
answered before the cancel is stored as usual.

Those requests stay failed: a later run of the same input answers them from
the journal with the same error, until the user asks for them again
(``--retry-cancelled``, i.e. ``batch.retry_cancelled``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.errors import CANCELLED_BY_USER, CancelledByUserError

if TYPE_CHECKING:
    from plugins.store import Store

__all__ = [
    "UserCancels",
    "cancelled_error",
    "cancelled_keys",
    "is_cancelled",
    "record_user_cancel",
    "requeue_cancelled",
    "user_cancelled",
]


def record_user_cancel(store: Store, shard_id: str) -> None:
    """Journal that the user cancelled the batch of ``shard_id`` (before the provider is asked)."""
    store.mark_cancelled_by_user(shard_id)


def user_cancelled(store: Store, shard_id: str) -> bool:
    """Whether the user cancelled the batch of ``shard_id``."""
    return store.cancelled_by_user(shard_id)


def cancelled_error(batch_id: str | None, provider: str) -> CancelledByUserError:
    """The error a request ends in when the user cancelled its batch before it ran."""
    batch = f"batch {batch_id}" if batch_id else "its batch"
    return CancelledByUserError(
        f"{batch} was cancelled by the user before this request ran "
        "(--retry-cancelled sends it again)",
        provider=provider,
    )


def cancelled_keys(store: Store, provider: str) -> set[str]:
    """The keys of ``provider``'s requests that ended because the user cancelled their batch."""
    # Found by the error code the journal keeps with each failed request.
    return store.failed_keys(provider, CANCELLED_BY_USER)


def is_cancelled(store: Store, provider: str, key: str) -> bool:
    """Whether ``key`` ended because the user cancelled its batch."""
    return bool(store.failed_keys(provider, CANCELLED_BY_USER, [key]))


def requeue_cancelled(store: Store, provider: str) -> int:
    """Queue again the requests the user's cancels ended (``--retry-cancelled``); how many."""
    return store.requeue_failed(provider, CANCELLED_BY_USER)


class UserCancels:
    """The requests the user's cancels ended, as a connector refuses them (read once).

    Args:
        store: the store whose journal says which requests ended so.
        provider: the provider they were sent to.
        retry: ``batch.retry_cancelled``: the user asks for them again (none is refused).
    """

    def __init__(self, store: Store, provider: str, *, retry: bool) -> None:
        self.store = store
        self.provider = provider
        self.retry = retry
        self._keys: set[str] | None = None

    def _cancelled(self) -> set[str]:
        if self._keys is None:
            self._keys = cancelled_keys(self.store, self.provider)
        return self._keys

    def any(self) -> bool:
        """Whether a request may be one whose batch the user cancelled, never to be sent again."""
        return not self.retry and bool(self._cancelled())

    def refuse(self, key: str) -> None:
        """A request whose batch the user cancelled stays cancelled unless asked again.

        Raises:
            CancelledByUserError: request ``key`` ended so, and ``retry`` is off.
        """
        if self.retry or key not in self._cancelled():
            return
        row = self.store.get_requests(self.provider, [key]).get(key)
        shard = self.store.get_shard(row.shard_id) if row and row.shard_id else None
        raise cancelled_error(shard.batch_id if shard is not None else None, self.provider)
