"""The run's spend against ``batch.budget_usd``: estimates committed, and given back.

A shard's estimate is committed when it is journaled, before its batch can
be paid for. It is given back when the batch is known never to be billed
(refused whole, failed before it was created, split as too large), and
stays spent once its results are stored. A request re-routed to an
immediate call commits that call's full price.
"""

from __future__ import annotations

from providers.errors import BudgetExceededError

__all__ = ["BatchBudget"]


class BatchBudget:
    """What this run has committed against the budget (``limit``; ``None``: no budget)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self.committed = 0.0
        # Each budgeted shard's estimate, until its batch is known to be billed or refused.
        self._shards: dict[str, float] = {}

    def refusal(self, cost: float) -> BudgetExceededError | None:
        """The error refusing ``cost`` more, or ``None`` when it fits (or there is no budget)."""
        if self.limit is not None and self.committed + cost > self.limit:
            return BudgetExceededError(self.committed + cost, self.limit)
        return None

    def commit(self, cost: float, shard_id: str | None = None) -> None:
        """Count ``cost`` as spent; a shard's estimate can be given back later."""
        self.committed += cost
        if shard_id is not None and cost:
            self._shards[shard_id] = cost

    def give_back(self, shard_id: str) -> None:
        """The shard's batch will never be billed: its estimate leaves the budget."""
        self.committed -= self._shards.pop(shard_id, 0.0)

    def spent(self, shard_id: str) -> None:
        """The shard's batch is billed: its estimate stays counted, no longer tracked."""
        self._shards.pop(shard_id, None)
