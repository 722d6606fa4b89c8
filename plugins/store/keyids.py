"""Each request key's one id, under which the journal and the cache both keep its rows.

``keys``
    every ``(provider, request key)`` the store has journaled or cached,
    under its id, in the order keys were first seen, and found by key
    through the unique index ``keys_key``: the only index of request keys
    in the store, so a new key costs one insert at a random place. A key's
    journal row (``requests``) and its cached result (``results``) both
    take its id as their row id: a shard's rows and their answers are
    matched by id, and the rows of both tables are appended as keys come.
    Rows are never deleted, so an id is never given twice, even after the
    rows under it were (a retired answer).

A row is found by its key through :data:`BY_KEY` and :data:`BY_KEYS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from plugins.store.backend import Backend

__all__ = ["BY_KEY", "BY_KEYS", "KeyIds"]

#: The condition "this row is key ``?2`` of provider ``?1``'s" for a table of
#: rows under key ids (``{t}``: the row's table or alias): one probe of ``keys_key``.
BY_KEY: Final = "{t}.id = (SELECT id FROM keys WHERE provider = ? AND key = ?)"
#: As :data:`BY_KEY` for any of the keys in ``{{marks}}`` (see ``Backend._read_for_keys``).
BY_KEYS: Final = "{t}.id IN (SELECT id FROM keys WHERE provider = ? AND key IN ({{marks}}))"


class KeyIds(Backend):
    """The ``keys`` table (a mixin of :class:`~plugins.store.Store`)."""

    def _key_ids(self, provider: str, cells: Iterable[bytes | str]) -> dict[bytes | str, int]:
        """The ids of the keys stored as ``cells`` that have one (others are absent)."""
        sql = "SELECT key, id FROM keys WHERE provider = ? AND key IN ({marks})"
        return {key: int(i) for key, i in self._read_for_keys(sql, provider, cells)}

    def _enter_keys(self, provider: str, cells: Sequence[bytes | str]) -> None:
        """Inside a write: give each of ``cells`` (keys as stored) not known yet an id.

        One probe of the index a key, and no read back: for a caller whose
        rows then take their key's id inside SQLite (``SELECT id FROM keys``).
        """
        self._execute_many(
            "INSERT OR IGNORE INTO keys (provider, key) VALUES (?, ?)",
            [(provider, cell) for cell in cells],
        )

    def _give_key_ids(self, provider: str, cells: Sequence[bytes | str]) -> tuple[list[int], bool]:
        """Inside a write: the id of each of ``cells``, giving new keys the next ids in turn.

        For keys that are most likely new (a journal write after the cache
        missed them): they are inserted first, and looked up only if some
        were known. Returns the ids in the order of ``cells`` and whether
        every key was new.
        """
        if not cells:
            return [], True
        first = int(self._fetch_one("SELECT COALESCE(MAX(id), 0) + 1 FROM keys")[0])
        given = self._execute_many(
            "INSERT OR IGNORE INTO keys (id, provider, key) VALUES (?, ?, ?)",
            [(first + i, provider, cell) for i, cell in enumerate(cells)],
        )
        if given == len(cells):
            return list(range(first, first + len(cells))), True
        ids = self._key_ids(provider, cells)
        return [ids[cell] for cell in cells], False
