"""The ids that rows of the cache and the ledger refer to, each stored once.

``batches``
    every provider batch id a cached result or a ledger row names. A batch
    holds up to 100,000 requests, and its 40-character id would otherwise
    be repeated on each of their rows; they hold its small integer instead.
``runs``
    every :attr:`~plugins.store.backend.Backend.run_id` a ledger row names,
    for the same reason.

Both are written inside the write that first refers to an id, so a row
never points at an id that a rolled-back transaction took away.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from plugins.store.backend import Backend

__all__ = ["BATCH_ID_OF", "RUN_ID_OF", "RefTables"]

#: The batch id of a row's ``batch`` column (``{t}``: the row's table alias).
BATCH_ID_OF: Final = "(SELECT batch_id FROM batches WHERE batches.id = {t}.batch)"
#: The run id of a ledger row's ``run`` column (``{t}``: the row's table alias).
RUN_ID_OF: Final = "(SELECT run_id FROM runs WHERE runs.id = {t}.run)"


class RefTables(Backend):
    """The ``batches`` and ``runs`` tables (a mixin of :class:`~plugins.store.Store`)."""

    def _batch_refs(self, batch_ids: Iterable[str | None]) -> dict[str | None, int | None]:
        """The number of each batch id (stored if new); ``None`` stays ``None``.

        Runs inside a write (:meth:`~plugins.store.backend.Backend._write`).
        """
        refs: dict[str | None, int | None] = {None: None}
        for batch_id in sorted({b for b in batch_ids if b is not None}):
            refs[batch_id] = self._ref("batches", "batch_id", batch_id)
        return refs

    def _run_ref(self, run_id: str | None = None) -> int:
        """The number of a run id (this store's by default), stored if new, inside a write."""
        return self._ref("runs", "run_id", self.run_id if run_id is None else run_id)

    def _ref(self, table: str, column: str, value: str) -> int:
        row = self._fetch_one(f"SELECT id FROM {table} WHERE {column} = ?", (value,))
        if row is None:
            self._execute(f"INSERT INTO {table} ({column}) VALUES (?)", (value,))
            row = self._fetch_one(f"SELECT id FROM {table} WHERE {column} = ?", (value,))
        return int(row[0])

    def _batch_ref(self, batch_id: str) -> int | None:
        """The number of a stored batch id, for a read (``None``: no row refers to it)."""
        rows = self._read("SELECT id FROM batches WHERE batch_id = ?", (batch_id,))
        return int(rows[0][0]) if rows else None
