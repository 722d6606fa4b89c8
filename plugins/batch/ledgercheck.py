"""Checking the ledger of a collected batch against the provider's own token totals.

OpenAI's batch object carries ``usage``: the input and output tokens of the
whole batch, as billed. Once a batch's results are stored, the ledger's rows
for that batch should add up to the same totals; a difference means answers
were paid for but not recorded (or recorded twice), and is reported.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plugins.store import Store
    from providers.types import BatchInfo

__all__ = ["check_ledger"]

log = logging.getLogger("lexibatch.batch")


def check_ledger(store: Store, batch: BatchInfo) -> bool | None:
    """Whether the ledger agrees with ``batch.usage``; ``None`` when the provider gave none.

    A mismatch is logged as a warning naming the batch and both totals.
    """
    billed = batch.usage
    if billed is None or (billed.input_tokens == 0 and billed.output_tokens == 0):
        return None
    calls, recorded = store.batch_usage(batch.id)
    if (recorded.input_tokens, recorded.output_tokens) == (
        billed.input_tokens,
        billed.output_tokens,
    ):
        return True
    log.warning(
        "batch %s: the provider counts %d input and %d output tokens, the ledger %d and %d "
        "over %d calls; see `lexibatch cost`",
        batch.id,
        billed.input_tokens,
        billed.output_tokens,
        recorded.input_tokens,
        recorded.output_tokens,
        calls,
    )
    return False
