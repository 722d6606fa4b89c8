"""The request journal: every request a batch run has accepted, and the schemas they refer to.

``requests``
    every request a batch run has accepted and its state (``queued`` →
    ``submitted`` → ``succeeded`` | ``failed``), under its key's id
    (:mod:`plugins.store.keyids`), so in the order it was journaled. A
    batch's answered requests move to ``succeeded`` together when the last
    of its results is stored; until then the cache row is the sign of an
    answer.
``request_bodies``
    the canonical body of each request that has not succeeded, under the
    request's id: enough to rebuild it without the original input. It is
    deleted when the request succeeds.
``schemas``
    each response schema the journal refers to, stored once under a hash of
    its canonical JSON: a schema is often longer than the prompt, and a
    journal of millions of requests would otherwise repeat it in every row.

The shards the requests are submitted in are :mod:`plugins.store.shards`'.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import orjson

from plugins.store.backend import PAGE
from plugins.store.keyids import BY_KEY, BY_KEYS, KeyIds
from plugins.store.keys import key_cell, key_text
from plugins.store.rows import (
    REQUEST_STATES,
    JournalRequest,
    check_state,
    dumps,
    sort_by_key,
)

__all__ = ["OPEN", "JournalTables"]

#: The condition of the partial index ``requests_open``: SQLite uses that
#: index only for a query that states it word for word, so every query
#: looking for unfinished requests by state carries it.
OPEN: Final = "state <> 'succeeded'"

_REQUEST_COLUMNS = (
    "r.key, r.model, r.task, b.body, r.state, r.shard_id, r.submissions, r.error, r.created_at, "
    "r.updated_at"
)
#: The journal's rows with the body each one still has.
_REQUESTS = "requests r LEFT JOIN request_bodies b ON b.id = r.id"
#: Journal rows found by key, through ``keys``: one key, or any of ``{marks}`` (alias ``r``).
_BY_KEY = BY_KEY.format(t="requests")
_BY_KEYS = BY_KEYS.format(t="r")
_APPEND = (
    "INSERT OR IGNORE INTO requests (id, provider, key, model, task, state, shard_id, submissions, "
    "error, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def _request_from_row(row: Sequence[Any]) -> JournalRequest:
    # Positional, and no JSON parse for the usual row without an error: this
    # runs once per request of a shard when its results are checked.
    body = row[3]
    error = row[7]
    return JournalRequest(
        key_text(row[0]),
        row[1],
        row[2],
        b"" if body is None else body if type(body) is bytes else bytes(body),
        row[4],
        row[5],
        row[6],
        None if error is None else orjson.loads(error),
        row[8],
        row[9],
    )


class JournalTables(KeyIds):
    """The ``requests``, ``request_bodies`` and ``schemas`` tables.

    A mixin of :class:`~plugins.store.Store`.

    A request that succeeded keeps its key, model, task, state and times:
    its body (its answer is in the cache) and its shard (collected) are
    dropped, so the journal of a long job holds little more than its keys.
    """

    def add_requests(self, provider: str, rows: Iterable[JournalRequest]) -> int:
        """Journal requests; returns how many were new (known keys are left as they are)."""
        now = time.time()
        values = []
        for r in rows:
            check_state(r.state, REQUEST_STATES, "request")
            done = r.state == "succeeded"
            values.append(
                (
                    provider,
                    r.cell or key_cell(r.key),
                    r.model,
                    r.task,
                    r.state,
                    None if done else r.shard_id,
                    r.attempts,
                    None if r.error is None else dumps(r.error),
                    r.created_at or now,
                    r.updated_at or now,
                    None if done else r.body,
                )
            )
        if not values:
            return 0
        sort_by_key(values, 1)
        return self._write(lambda: len(self._append(values)))

    def queue_requests(self, provider: str, rows: Iterable[JournalRequest]) -> int:
        """Journal requests as queued in their (open) shard; returns rows written.

        Unlike :meth:`add_requests`, a request already journaled as queued or
        failed (by an earlier run) is queued again in the new shard, with its
        body (a failed request whose answer was retired had none); one that
        succeeded or is in a submitted batch is left alone.
        """
        now = time.time()
        values = [
            (provider, r.cell or key_cell(r.key), r.model, r.task, "queued", r.shard_id, r.attempts,
             None,
             now, now, r.body)
            for r in rows
        ]  # fmt: skip
        if not values:
            return 0
        sort_by_key(values, 1)

        def run() -> int:
            new = self._append(values)
            if len(new) == len(values):
                return len(new)
            known = [values[i] for i in sorted(set(range(len(values))) - set(new))]
            # The shard that queues them again is the one their rows name after the update.
            again = self._execute_many(
                "UPDATE requests SET state = 'queued', shard_id = ?, updated_at = ? "
                f"WHERE {_BY_KEY} AND state IN ('queued', 'failed')",
                [(v[5], now, v[0], v[1]) for v in known],
            )
            if again:
                self._execute_many(
                    "INSERT OR REPLACE INTO request_bodies (id, body) SELECT id, ? FROM requests "
                    f"WHERE {_BY_KEY} AND state = 'queued' AND shard_id IS ?",
                    [(v[10], v[0], v[1], v[5]) for v in known],
                )
            return len(new) + again

        return self._write(run)

    def _append(self, values: Sequence[tuple[Any, ...]]) -> list[int]:
        """Journal the rows among ``values`` whose key is new, inside a write; their positions.

        ``values`` are rows of :data:`_APPEND`'s columns after the id, all
        of one provider, with the body last (``None``: none kept). A row
        takes its key's id, and a new key the next one, so the new rows of
        one write sit together at the end of the table and a shard's later
        updates touch only its own pages; its body is stored under that id.
        A row whose key is journaled already is left as it is.
        """
        ids, fresh = self._give_key_ids(values[0][0], [row[1] for row in values])
        if fresh:
            new: list[int] = list(range(len(values)))
        else:
            # The keys known already may have a journal row: those are left alone.
            rows = self._read_for_keys(
                f"SELECT id FROM requests r WHERE {_BY_KEYS}", values[0][0], [v[1] for v in values]
            )
            taken = {int(row[0]) for row in rows}
            new = []
            for i, id_ in enumerate(ids):
                if id_ not in taken:
                    taken.add(id_)
                    new.append(i)
        self._execute_many(_APPEND, [(ids[i], *values[i][:-1]) for i in new])
        bodies = [(ids[i], values[i][-1]) for i in new if values[i][-1] is not None]
        if bodies:
            self._execute_many(
                "INSERT OR REPLACE INTO request_bodies (id, body) VALUES (?, ?)", bodies
            )
        return new

    def submit_shard_requests(self, provider: str, shard_id: str) -> int:
        """Move the queued requests of ``shard_id`` to submitted (one more attempt each).

        One statement over the shard index, instead of one update per key.
        """
        now = time.time()
        return self._changes(
            "UPDATE requests SET state = 'submitted', submissions = submissions + 1, error = NULL, "
            "updated_at = ? WHERE provider = ? AND shard_id = ? AND state = 'queued'",
            [(now, provider, shard_id)],
        )

    def requeue_failed(self, provider: str, code: str) -> int:
        """Queue again ``provider``'s failed requests whose error has ``code``; how many."""
        return self._changes(
            "UPDATE requests SET state = 'queued', error = NULL, updated_at = ? "
            f"WHERE provider = ? AND state = 'failed' AND {OPEN} AND error IS NOT NULL "
            "AND json_extract(error, '$.code') = ?",
            [(time.time(), provider, code)],
        )

    def failed_keys(self, provider: str, code: str, keys: Iterable[str] | None = None) -> set[str]:
        """The keys of ``provider``'s failed requests whose error has ``code``.

        Args:
            keys: only among these (``None``: all of them).
        """
        where = (
            f"provider = ? AND state = 'failed' AND {OPEN} AND error IS NOT NULL "
            "AND json_extract(error, '$.code') = ?"
        )
        if keys is None:
            rows = self._read(f"SELECT key FROM requests WHERE {where}", (provider, code))
            return {key_text(row[0]) for row in rows}
        sql = (
            f"SELECT key, error FROM requests r WHERE {_BY_KEYS} "
            "AND state = 'failed' AND error IS NOT NULL"
        )
        return {
            key_text(key)
            for key, error in self._read_keys(sql, provider, keys)
            if orjson.loads(error).get("code") == code
        }

    def unshard_requests(self, provider: str, shard_id: str, keys: Iterable[str]) -> int:
        """Take ``keys`` out of ``shard_id`` before its batch exists; how many.

        They are queued again with no shard, and their submission is not counted.
        """
        now = time.time()
        values = [(now, provider, key_cell(key), shard_id) for key in keys]
        sort_by_key(values, 2)
        return self._changes(
            "UPDATE requests SET state = 'queued', shard_id = NULL, "
            "submissions = MAX(submissions - 1, 0), updated_at = ? "
            f"WHERE {_BY_KEY} AND shard_id = ?",
            values,
        )

    def set_request_state(
        self,
        provider: str,
        keys: Iterable[str],
        state: str,
        *,
        shard_id: str | None = None,
        error: Mapping[str, Any] | None = None,
        errors: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int:
        """Move journaled requests to ``state``; returns how many rows changed.

        A request that succeeds loses its body and its shard (see the class).

        Args:
            provider: the provider's registered name.
            keys: the request keys.
            state: the new state (see :data:`REQUEST_STATES`).
            shard_id: the shard they now belong to (``None``: unchanged).
                Moving a request to ``submitted`` in a shard other than its
                current one counts one more attempt.
            error: the error to record (``None`` clears it).
            errors: per-key errors, taking precedence over ``error``.
        """
        check_state(state, REQUEST_STATES, "request")
        now = time.time()
        if state == "succeeded":
            done = [(now, provider, key_cell(key)) for key in keys]
            if not done:
                return 0
            sort_by_key(done, -1)

            def succeed() -> int:
                self._execute_many(
                    f"DELETE FROM request_bodies WHERE {BY_KEY.format(t='request_bodies')}",
                    [row[1:] for row in done],
                )
                return self._execute_many(
                    "UPDATE requests SET state = 'succeeded', shard_id = NULL, error = NULL, "
                    f"updated_at = ? WHERE {_BY_KEY}",
                    done,
                )

            return self._write(succeed)
        shared = None if error is None else dumps(dict(error))
        per_key = errors or {}
        values = []
        for key in keys:
            own = per_key.get(key)
            values.append(
                (
                    state,
                    shard_id,
                    shared if own is None else dumps(dict(own)),
                    now,
                    provider,
                    key_cell(key),
                )
            )
        sort_by_key(values, -1)
        return self._changes(
            "UPDATE requests SET state = ?1, "
            "submissions = submissions "
            "+ (?1 = 'submitted' AND ?2 IS NOT NULL AND shard_id IS NOT ?2), "
            "shard_id = COALESCE(?2, shard_id), error = ?3, updated_at = ?4 "
            "WHERE requests.id = (SELECT id FROM keys WHERE provider = ?5 AND key = ?6)",
            values,
        )

    def requests_in_state(
        self,
        provider: str,
        state: str,
        *,
        model: str | None = None,
        limit: int | None = None,
    ) -> Iterator[JournalRequest]:
        """Journaled requests in ``state``, oldest first.

        Rows are read a page at a time, so the caller may change their state
        while iterating. Succeeded requests come without their body.
        """
        check_state(state, REQUEST_STATES, "request")
        remaining = limit
        after: tuple[float, bytes | str] | None = None
        where = "provider = ? AND state = ?"
        if state != "succeeded":
            where += f" AND {OPEN}"
        if model is not None:
            where += " AND model = ?"
        while remaining is None or remaining > 0:
            page = PAGE if remaining is None else min(PAGE, remaining)
            params: list[Any] = [provider, state]
            if model is not None:
                params.append(model)
            sql = f"SELECT {_REQUEST_COLUMNS} FROM {_REQUESTS} WHERE {where}"
            if after is not None:
                # Row values: the next page starts after the last row read, ties on time
                # broken by key (SQLite's order: text keys before blob keys).
                sql += " AND (created_at, key) > (?, ?)"
                params += after
            params.append(page)
            rows = self._read(sql + " ORDER BY created_at, key LIMIT ?", params)
            for row in rows:
                yield _request_from_row(row)
            if len(rows) < page:
                return
            after = (rows[-1][8], rows[-1][0])
            if remaining is not None:
                remaining -= len(rows)

    def requests_of_shard(self, shard_id: str) -> list[JournalRequest]:
        """The unfinished requests last submitted in ``shard_id``, in key order.

        A request that succeeded leaves its shard (see the class).
        """
        rows = self._read(
            f"SELECT {_REQUEST_COLUMNS} FROM {_REQUESTS} WHERE shard_id = ? ORDER BY key",
            (shard_id,),
        )
        return [_request_from_row(r) for r in rows]

    def shard_keys(self, shard_id: str, state: str | None = None) -> list[str]:
        """The keys of the unfinished requests last submitted in ``shard_id`` (in ``state``).

        The light form of :meth:`requests_of_shard` for finding what a batch
        left unanswered: it reads neither bodies nor errors.
        """
        if state is None:
            rows = self._read(
                "SELECT key FROM requests WHERE shard_id = ? ORDER BY key", (shard_id,)
            )
        else:
            check_state(state, REQUEST_STATES, "request")
            rows = self._read(
                "SELECT key FROM requests WHERE shard_id = ? AND state = ? ORDER BY key",
                (shard_id, state),
            )
        return [key_text(row[0]) for row in rows]

    def get_requests(self, provider: str, keys: Iterable[str]) -> dict[str, JournalRequest]:
        """The journaled requests among ``keys``, by key (a succeeded one without its body)."""
        sql = f"SELECT {_REQUEST_COLUMNS} FROM {_REQUESTS} WHERE {_BY_KEYS}"
        found = (_request_from_row(row) for row in self._read_keys(sql, provider, keys))
        return {row.key: row for row in found}

    def answered_in_shard(self, provider: str, shard_id: str) -> set[str]:
        """The keys of ``shard_id``'s submitted requests whose answer is cached already."""
        rows = self._read(
            "SELECT r.key FROM requests r JOIN results s ON s.id = r.id "
            "WHERE r.shard_id = ? AND r.provider = ? AND r.state = 'submitted'",
            (shard_id, provider),
        )
        return {key_text(row[0]) for row in rows}

    def mark_shard_succeeded(
        self, provider: str, shard_id: str, *, check_results: bool = True
    ) -> int:
        """Move the requests of ``shard_id`` still submitted and answered to succeeded.

        Called once a shard's results are all stored: one statement over the
        shard index instead of one update per key. A request counts as
        answered when its result is in the cache; ``check_results=False``
        skips that lookup when the caller knows every request still
        submitted was answered.
        """
        now = time.time()
        where = "provider = ? AND shard_id = ? AND state = 'submitted'"
        if check_results:
            where += " AND EXISTS (SELECT 1 FROM results WHERE results.id = requests.id)"

        def run() -> int:
            # The shard's rows were journaled together: their bodies sit together too.
            self._execute(
                f"DELETE FROM request_bodies WHERE id IN (SELECT id FROM requests WHERE {where})",
                (provider, shard_id),
            )
            return self._execute(
                "UPDATE requests SET state = 'succeeded', shard_id = NULL, error = NULL, "
                f"updated_at = ? WHERE {where}",
                (now, provider, shard_id),
            )

        return self._write(run)

    def request_states(self, provider: str, keys: Iterable[str]) -> dict[str, str]:
        """The state of each journaled request among ``keys`` (unknown keys are absent)."""
        sql = f"SELECT key, state FROM requests r WHERE {_BY_KEYS}"
        return {key_text(key): state for key, state in self._read_keys(sql, provider, keys)}

    def request_places(
        self, provider: str, keys: Iterable[str]
    ) -> dict[str, tuple[str, str | None]]:
        """The state and shard of each journaled request among ``keys`` (unknown: absent)."""
        sql = f"SELECT key, state, shard_id FROM requests r WHERE {_BY_KEYS}"
        rows = self._read_keys(sql, provider, keys)
        return {key_text(key): (state, shard) for key, state, shard in rows}

    def has_open_requests(self, provider: str) -> bool:
        """Whether any journaled request of ``provider`` is queued or submitted.

        One probe of the index of unfinished requests, however long the journal.
        """
        rows = self._read(
            "SELECT EXISTS (SELECT 1 FROM requests WHERE provider = ? AND state = 'queued' "
            f"AND {OPEN}) OR EXISTS (SELECT 1 FROM requests WHERE provider = ? "
            f"AND state = 'submitted' AND {OPEN})",
            (provider, provider),
        )
        return bool(rows[0][0])

    def unsettled_by_provider(self) -> dict[str, int]:
        """How many journaled requests each provider has queued or in a batch (not ended)."""
        rows = self._read(
            f"SELECT provider, COUNT(*) FROM requests WHERE {OPEN} "
            "AND state IN ('queued', 'submitted') GROUP BY provider"
        )
        return {provider: int(n) for provider, n in rows}

    def count_requests(self, provider: str) -> dict[str, int]:
        """How many journaled requests of ``provider`` are in each state."""
        rows = self._read(
            "SELECT state, COUNT(*) FROM requests WHERE provider = ? GROUP BY state", (provider,)
        )
        return {state: int(n) for state, n in rows}

    # --- schemas (referred to by journaled requests) ------------------------

    def add_schemas(self, schemas: Mapping[str, bytes]) -> int:
        """Store response schemas by reference; returns how many were new.

        A reference names its schema's content, so one already stored (by
        this run or another process) is left as it is.
        """
        now = time.time()
        rows = sorted((ref, body, now) for ref, body in schemas.items())
        return self._changes(
            "INSERT OR IGNORE INTO schemas (ref, body, created_at) VALUES (?,?,?)", rows
        )

    def get_schemas(self, refs: Iterable[str]) -> dict[str, bytes]:
        """The stored schemas among ``refs``, by reference (unknown ones are absent)."""
        sql = "SELECT ref, body FROM schemas WHERE ref IN ({marks})"
        return {ref: bytes(body) for ref, body in self._read_for_keys(sql, None, refs)}
