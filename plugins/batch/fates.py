"""How a batched request ends when it fails: its error, its promise, its rounds used."""

from __future__ import annotations

from typing import Any

from plugins.batch.promise import BatchPromise
from providers.errors import (
    BatchCancelledError,
    BatchExpiredError,
    BatchFailedError,
    BatchItemError,
    LexibatchError,
    ProviderError,
    UnusableAnswerError,
)
from providers.types import BatchInfo, BatchState

__all__ = ["batch_fate", "error_dict", "fail_future", "misnamed_error", "retries_used"]


def fail_future(future: BatchPromise, error: BaseException) -> None:
    """Fail a request's promise with ``error``, never logged as unretrieved."""
    future.set_exception(error)
    # The error is the promise's to report: a request nobody awaits (queued
    # with submit(), or resumed from the journal) must not make asyncio log
    # it as never retrieved. An awaiting caller still receives it.
    future.exception()


def retries_used(submissions: int) -> int:
    """Retry rounds used, from the journal's count of submissions."""
    return max(submissions - 1, 0)


def batch_fate(info: BatchInfo, provider: str) -> LexibatchError:
    """The error for a request a batch ended without answering, from how the batch ended."""
    if info.state is BatchState.FAILED:
        reasons = "; ".join(info.errors) or "no reason given"
        return BatchFailedError(f"batch {info.id} failed: {reasons}", provider=provider)
    if info.state is BatchState.EXPIRED:
        return BatchExpiredError(
            f"batch {info.id} expired before this request ran", provider=provider
        )
    if info.state is BatchState.CANCELLED:
        return BatchCancelledError(
            f"batch {info.id} was cancelled before this request ran", provider=provider
        )
    return BatchItemError(f"batch {info.id} returned no result for this request", provider=provider)


def misnamed_error(info: BatchInfo, foreign: int, provider: str) -> LexibatchError:
    """The error of a request missing from a batch whose files hold lines under ids not ours."""
    return UnusableAnswerError(
        f"batch {info.id} has no line for this request but {foreign} under ids that are not "
        "ours: its answers may be paid for under other names; not sent again (run it again "
        "to pay again)",
        provider=provider,
    )


def error_dict(error: LexibatchError) -> dict[str, Any]:
    """The journal's record of a request's error."""
    if isinstance(error, ProviderError):
        return error.to_dict()
    return {"type": type(error).__name__, "message": error.message, "retryable": error.retryable}
