"""Why a shard's executor stopped, said once in the log.

A stopped shard stays journaled: its batch may exist at the provider (and
be paid for), so its requests wait for the shard to be collected anew —
by the next run, ``lexibatch resume``, or, when the provider no longer has
the batch, after ``lexibatch batches forget``.
"""

from __future__ import annotations

import logging

from plugins.retry import is_unreachable
from providers.errors import LexibatchError, ProviderError

__all__ = ["say_why_stopped"]

log = logging.getLogger("lexibatch.batch")


def say_why_stopped(shard_id: str, exc: BaseException) -> None:
    """Log why the executor of ``shard_id`` stopped with ``exc``, and what the user can do."""
    if isinstance(exc, ProviderError) and not exc.retryable:
        # The provider refused a batch that exists (or may): trying again
        # will not help if it is gone; only the user can give it up.
        log.error(
            "batch shard %s stopped: %s — it stays journaled; if the provider no longer "
            "has this batch, `lexibatch batches forget %s` gives it up and the next run "
            "sends its requests again",
            shard_id,
            exc,
            shard_id,
        )
    elif is_unreachable(exc):
        # Every shard stops alike when the provider cannot be reached: the
        # error reaches each waiter, and the caller says it once.
        log.info("batch shard %s stopped, stays journaled: %s", shard_id, exc)
    elif isinstance(exc, LexibatchError):
        # The store could not be written, or the provider could not be
        # reached once the batch existed: the journal resumes the shard
        # on the next run; one line says why this one stopped.
        log.error(
            "batch shard %s stopped: %s — it stays journaled; run the same command "
            "again (or lexibatch resume) to collect it",
            shard_id,
            exc,
        )
    else:
        # A defect (of the provider's adapter or plugin, or ours), not a
        # provider failure: the shard's waiters fail rather than hang; one
        # line says so, the traceback goes to the debug log.
        log.error(
            "batch shard %s stopped: %s — a defect, not a provider failure; it stays "
            "journaled, and the same command collects it once the defect is fixed",
            shard_id,
            " ".join(f"{type(exc).__name__}: {exc}".split())[:300],
        )
        log.debug("batch shard %s stopped here:", shard_id, exc_info=exc)
