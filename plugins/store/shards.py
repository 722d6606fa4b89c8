"""The batch journal: every batch input file and the provider batch made from it.

``shards``
    one row per shard (``written`` → ``uploaded`` → ``submitting`` →
    ``created`` → ``ended`` → ``collected``, or ``failed``). Its writes are
    durable: each precedes a side effect at the provider (an upload, a
    batch creation) that a resumed run must not repeat and pay for twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

from plugins.store.backend import ConstraintError
from plugins.store.journal import JournalTables
from plugins.store.rows import (
    SHARD_STATES,
    UNFINISHED_SHARD_STATES,
    Shard,
    check_state,
    dumps,
    loads_opt,
)

__all__ = ["ShardTables"]

_SHARD_COLUMNS = (
    "shard_id, provider, model, round, state, path, requests, bytes, input_file_id, "
    "batch_id, batch_status, counts, raw, error, created_at, updated_at"
)
#: Shard columns :meth:`ShardTables.update_shard` may change.
_SHARD_MUTABLE: Final = frozenset(
    {
        "model",
        "round",
        "state",
        "path",
        "requests",
        "bytes",
        "input_file_id",
        "batch_id",
        "batch_status",
        "counts",
        "raw",
        "error",
    }
)
_SHARD_JSON: Final = frozenset({"counts", "raw"})


def _shard_from_row(row: Sequence[Any]) -> Shard:
    return Shard(
        shard_id=row[0],
        provider=row[1],
        model=row[2],
        round=row[3],
        state=row[4],
        path=row[5],
        requests=row[6],
        bytes=row[7],
        input_file_id=row[8],
        batch_id=row[9],
        batch_status=row[10],
        counts=loads_opt(row[11]),
        raw=loads_opt(row[12]),
        error=row[13],
        created_at=row[14],
        updated_at=row[15],
    )


class ShardTables(JournalTables):
    """The ``shards`` table (a mixin of :class:`~plugins.store.Store`).

    It builds on the request journal: a shard is given up on together with its requests.
    """

    def add_shard(self, shard: Shard) -> Shard:
        """Journal a new shard (durably); returns it as stored.

        Raises:
            ValueError: a shard with that id, or that batch id, exists.
        """
        check_state(shard.state, SHARD_STATES, "shard")
        now = time.time()
        stored = replace(shard, created_at=shard.created_at or now, updated_at=now)
        values = (
            stored.shard_id,
            stored.provider,
            stored.model,
            stored.round,
            stored.state,
            stored.path,
            stored.requests,
            stored.bytes,
            stored.input_file_id,
            stored.batch_id,
            stored.batch_status,
            None if stored.counts is None else dumps(stored.counts),
            None if stored.raw is None else dumps(stored.raw),
            stored.error,
            stored.created_at,
            stored.updated_at,
        )
        marks = ",".join("?" * len(values))
        try:
            self._write(
                lambda: self._execute(
                    f"INSERT INTO shards ({_SHARD_COLUMNS}) VALUES ({marks})", values
                ),
                durable=True,
            )
        except ConstraintError as exc:
            raise ValueError(f"shard {shard.shard_id!r} cannot be added: {exc}") from None
        return stored

    def update_shard(self, shard_id: str, /, **fields: Any) -> Shard:
        """Change some columns of a shard (durably, in one transaction); returns it updated.

        Raises:
            ValueError: an unknown column or state, or a batch id another shard has.
            KeyError: no shard has that id.
        """
        unknown = sorted(set(fields) - _SHARD_MUTABLE)
        if unknown:
            raise ValueError(
                f"unknown shard field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_SHARD_MUTABLE))}"
            )
        if "state" in fields:
            check_state(fields["state"], SHARD_STATES, "shard")
        columns = sorted(fields)
        values: list[Any] = []
        for name in columns:
            value = fields[name]
            if name in _SHARD_JSON and value is not None:
                value = dumps(value)
            elif name == "path" and value is not None:
                value = str(value)
            values.append(value)
        assignments = ", ".join(f"{name} = ?" for name in [*columns, "updated_at"])

        def run() -> Shard:
            changed = self._execute(
                f"UPDATE shards SET {assignments} WHERE shard_id = ?",
                (*values, time.time(), shard_id),
            )
            if changed == 0:
                raise KeyError(shard_id)
            row = self._fetch_one(
                f"SELECT {_SHARD_COLUMNS} FROM shards WHERE shard_id = ?", (shard_id,)
            )
            return _shard_from_row(row)

        try:
            return self._write(run, durable=True)
        except ConstraintError as exc:
            raise ValueError(f"shard {shard_id!r} cannot be updated: {exc}") from None

    def forget_shard(self, shard_id: str, reason: str) -> tuple[int, int]:
        """Give up on an unfinished shard whose batch can give no more results.

        In one durable transaction: its requests answered already (their
        results are cached) succeed; the others still in it are queued
        again (``reason`` noted), so the next run or ``resume`` sends them;
        the shard is journaled failed. Returns ``(answered, queued)``.

        Raises:
            KeyError: no shard has that id.
            ValueError: the shard is collected or failed already.
        """
        now = time.time()
        note = dumps({"type": "BatchForgotten", "message": reason, "retryable": True})

        def run() -> tuple[int, int]:
            row = self._fetch_one(
                "SELECT provider, state FROM shards WHERE shard_id = ?", (shard_id,)
            )
            if row is None:
                raise KeyError(shard_id)
            provider, state = row
            if state not in UNFINISHED_SHARD_STATES:
                raise ValueError(f"shard {shard_id} is {state}: there is nothing to give up")
            answered = self.mark_shard_succeeded(provider, shard_id)
            queued = self._execute(
                "UPDATE requests SET state = 'queued', error = ?, updated_at = ? "
                "WHERE provider = ? AND shard_id = ? AND state IN ('submitted', 'queued')",
                (note, now, provider, shard_id),
            )
            self._execute(
                "UPDATE shards SET state = 'failed', error = ?, updated_at = ? WHERE shard_id = ?",
                (reason, now, shard_id),
            )
            return answered, queued

        return self._write(run, durable=True)

    def mark_cancelled_by_user(self, shard_id: str) -> None:
        """Journal (durably) that the user cancelled the batch of ``shard_id``."""
        self._changes(
            "UPDATE shards SET cancelled_by_user_at = COALESCE(cancelled_by_user_at, ?) "
            "WHERE shard_id = ?",
            [(time.time(), shard_id)],
            durable=True,
        )

    def cancelled_by_user(self, shard_id: str) -> bool:
        """Whether the user cancelled the batch of ``shard_id`` (:meth:`mark_cancelled_by_user`)."""
        rows = self._read(
            "SELECT cancelled_by_user_at IS NOT NULL FROM shards WHERE shard_id = ?", (shard_id,)
        )
        return bool(rows and rows[0][0])

    def get_shard(self, shard_id: str) -> Shard | None:
        """The shard with that id, if there is one."""
        rows = self._read(f"SELECT {_SHARD_COLUMNS} FROM shards WHERE shard_id = ?", (shard_id,))
        return _shard_from_row(rows[0]) if rows else None

    def shards(
        self, provider: str | None = None, states: Iterable[str] | None = None
    ) -> list[Shard]:
        """Journaled shards, oldest first, optionally of one provider and in some states."""
        clauses: list[str] = []
        params: list[Any] = []
        if provider is not None:
            clauses.append("provider = ?")
            params.append(provider)
        if states is not None:
            wanted = list(states)
            for state in wanted:
                check_state(state, SHARD_STATES, "shard")
            if not wanted:
                return []
            clauses.append(f"state IN ({','.join('?' * len(wanted))})")
            params += wanted
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(
            f"SELECT {_SHARD_COLUMNS} FROM shards{where} ORDER BY created_at, shard_id", params
        )
        return [_shard_from_row(r) for r in rows]

    def shard_by_batch_id(self, batch_id: str) -> Shard | None:
        """The shard a provider batch was made from, if it is journaled."""
        rows = self._read(f"SELECT {_SHARD_COLUMNS} FROM shards WHERE batch_id = ?", (batch_id,))
        return _shard_from_row(rows[0]) if rows else None
