"""Claims: which process is sending an immediate request, and until when.

``claims``
    one row per claimed ``(provider, request key)``: the owner (host,
    process id and a token of its own) and when its lease runs out.

When a claim may be taken over (a lease run out, an owner gone) is
:mod:`plugins.claims`' to decide; this module only reads and writes the rows,
each change in one write transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from plugins.store.backend import Backend
from plugins.store.keys import key_cell, key_text

__all__ = ["ClaimTables"]


class ClaimTables(Backend):
    """The ``claims`` table (a mixin of :class:`~plugins.store.Store`)."""

    def take_claim(
        self,
        provider: str,
        key: str,
        owner: str,
        expires_at: float,
        lapsed: Callable[[str, float], bool],
    ) -> str | None:
        """Claim ``key`` for ``owner`` until ``expires_at``, unless another owner holds it.

        Read and written in one transaction, so two processes never both take
        a claim. Another owner's claim is taken over when ``lapsed(its owner,
        its expiry)`` says so.

        Returns:
            ``None`` when ``owner`` holds the claim now; else the owner that holds it.

        Raises:
            StoreWriteError: the store cannot be written.
        """
        cell = key_cell(key)

        def run() -> str | None:
            row = self._fetch_one(
                "SELECT owner, expires_at FROM claims WHERE provider = ? AND key = ?",
                (provider, cell),
            )
            if row is not None and row[0] != owner and not lapsed(row[0], row[1]):
                return str(row[0])
            self._execute(
                "INSERT OR REPLACE INTO claims (provider, key, owner, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (provider, cell, owner, expires_at),
            )
            return None

        return self._write(run)

    def claim_on(self, provider: str, key: str) -> tuple[str, float] | None:
        """The owner of the claim on ``key`` and when its lease runs out (``None``: unclaimed)."""
        rows = self._read(
            "SELECT owner, expires_at FROM claims WHERE provider = ? AND key = ?",
            (provider, key_cell(key)),
        )
        if not rows:
            return None
        owner, expires_at = rows[0]
        return owner, expires_at

    def release_claim(self, provider: str, key: str, owner: str) -> None:
        """Let ``owner``'s claim on ``key`` go (another owner's claim stays)."""
        self._write(
            lambda: self._execute(
                "DELETE FROM claims WHERE provider = ? AND key = ? AND owner = ?",
                (provider, key_cell(key), owner),
            )
        )

    def release_claims(self, owner: str) -> None:
        """Let every claim of ``owner`` go."""
        self._write(lambda: self._execute("DELETE FROM claims WHERE owner = ?", (owner,)))

    def renew_claims(self, owner: str, lease: float) -> None:
        """Extend every claim of ``owner`` to ``lease`` seconds from the moment of the write."""
        self._write(
            lambda: self._execute(
                "UPDATE claims SET expires_at = ? WHERE owner = ?", (time.time() + lease, owner)
            )
        )

    def claims_in_shard(self, provider: str, shard_id: str) -> list[tuple[str, str, float]]:
        """The claims on ``shard_id``'s submitted requests: ``(key, owner, expires_at)`` each.

        A request a batch has sent may be sent immediately by another process
        too (:mod:`plugins.crossmode`): these are the ones someone holds.
        """
        # From the claims (the immediate requests in flight, a few at most)
        # to their journal rows, not from a shard's tens of thousands of rows
        # to claims that are seldom there: CROSS JOIN fixes that order.
        rows = self._read(
            "SELECT c.key, c.owner, c.expires_at FROM claims c "
            "CROSS JOIN keys k ON k.provider = c.provider AND k.key = c.key "
            "CROSS JOIN requests r ON r.id = k.id "
            "WHERE c.provider = ? AND r.shard_id = ? AND r.state = 'submitted'",
            (provider, shard_id),
        )
        return [(key_text(key), str(owner), float(expires)) for key, owner, expires in rows]
