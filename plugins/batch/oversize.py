"""Requests and batches too large for a provider's batch endpoint.

Two cases, both settled without paying for anything:

- One request whose batch line alone is over the per-batch byte limit
  (``batch.max_bytes``, or the provider's own): no batch can hold it. The
  strategy finds it from the one line it encodes to spool, as it spools it:
  the request is refused there with an
  :class:`~providers.errors.InputError`
  (:func:`line_problem` says why), before it is journaled, so it is never
  uploaded, and the requests around it go on. ``lexibatch run`` fails that
  line alone, names it as ``FILE:LINE`` and exits 2 once the rest is answered.
- A batch the provider refuses as too large (more requests or bytes than it
  takes; its limit may be lower than the one declared): it never ran, so it
  was not billed. Its requests are queued again and sent in batches of at
  most half as many requests (:func:`too_large`), which the strategy keeps to
  for the rest of the run. A request refused alone fails with the refusal.
- A shard bigger than the provider's queue holds by itself (its tokens pass
  ``max_enqueued_tokens``, or the provider refuses it for its queue with
  nothing else in flight; see :mod:`plugins.batch.queuecap`): it is halved
  until the share that fits is reached (:func:`halved_to_fit`), the same way.
  A single request is not split: it waits for an empty queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from providers.errors import LexibatchError, ProviderError, RateLimitError
from providers.types import BatchInfo, BatchLimits, BatchState, Request

if TYPE_CHECKING:
    from providers.protocol import BatchEndpoint

__all__ = ["halved", "halved_to_fit", "line_problem", "too_large"]

# How the providers word a refusal of a whole batch for its size: OpenAI's
# "File is too large." (upload) and "The batch input file is larger than the
# 209715200 maximum ..." (create), a failed batch's "too_many_requests";
# Anthropic's 413 "request_too_large" and a 400 on too many requests.
_TOO_LARGE: Final = re.compile(
    r"too many requests|too_many_requests|request_too_large|too large|"
    r"larger than the \d+ maximum|exceeds the maximum allowed number of bytes",
    re.IGNORECASE,
)
_TOO_LARGE_CODES: Final = frozenset(
    {"too_many_requests", "request_too_large", "file_too_large", "batch_too_large"}
)


def line_problem(endpoint: BatchEndpoint, limits: BatchLimits, request: Request) -> str | None:
    """Why no batch can hold ``request`` (its line is over the byte limit), or ``None``."""
    size = len(endpoint.encode(request, request.key)) + 1
    if size <= limits.max_bytes:
        return None
    return (
        f"the request is {size:,} bytes as a batch line, more than the {limits.max_bytes:,} "
        "bytes one batch may hold (batch.max_bytes, or the provider's limit) — shorten it, "
        "or send it with --mode immediate"
    )


def too_large(error: LexibatchError | None = None, info: BatchInfo | None = None) -> bool:
    """Whether a batch was refused (at upload or create, or failed by the provider) for its size."""
    if isinstance(error, RateLimitError):
        # A 429 is about the rate, never the batch's size.
        return False
    if isinstance(error, ProviderError):
        if error.status_code == 413 or error.code in _TOO_LARGE_CODES:
            return True
        return bool(_TOO_LARGE.search(error.message))
    if info is not None and info.state is BatchState.FAILED:
        return _any_too_large(info.errors)
    return False


def _any_too_large(reasons: Iterable[str]) -> bool:
    return any(_TOO_LARGE.search(reason) for reason in reasons)


def halved(limits: BatchLimits, requests: int) -> BatchLimits:
    """Limits under which a batch of ``requests`` refused as too large goes in two or more."""
    most = max(1, min(limits.max_requests, (requests + 1) // 2))
    return BatchLimits(most, limits.max_bytes, mixed_models=limits.mixed_models)


def halved_to_fit(limits: BatchLimits, requests: int, share: float) -> BatchLimits:
    """Limits under which a batch of ``requests``, of which only ``share`` fits, is halved
    until it fits (one halving at least, down to one request a batch)."""
    most = min(limits.max_requests, requests)
    while True:
        most = max(1, (most + 1) // 2)
        if most <= 1 or most <= requests * share:
            break
    return BatchLimits(most, limits.max_bytes, mixed_models=limits.mixed_models)
