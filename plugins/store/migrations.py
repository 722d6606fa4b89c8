"""The schema of the store, as an ordered list of migrations.

Each table is described where it is used: ``keys`` in
:mod:`plugins.store.keyids`, ``results``, ``result_providers`` and
``retired_results`` in :mod:`plugins.store.cache`, ``calls`` in
:mod:`plugins.store.costs`, ``requests``, ``request_bodies`` and
``schemas`` in :mod:`plugins.store.journal`, ``shards`` in :mod:`plugins.store.shards`,
``documents`` in :mod:`plugins.store.documents`, ``claims`` in
:mod:`plugins.store.claims`, ``batches`` and ``runs`` (the ids rows refer
to) in :mod:`plugins.store.refs`. The engine runs the
pending migrations in order inside one write transaction when a store is
opened (see :meth:`plugins.store.engine.SQLiteEngine.schema_version`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from providers.errors import ConfigError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "check_readable", "pending_statements"]

# The token counts of a version-5 ``usage`` JSON column, as columns.
_USAGE: Final = ", ".join(
    f"COALESCE(json_extract(usage, '$.{name}'), 0)"
    for name in (
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cache_creation_tokens",
        "cache_creation_1h_tokens",
    )
)

# Version 6: flat costs as the store grows. Request keys are stored as
# their 24 bytes (``lb_key``, plugins.store.keys); token counts as integer
# columns, not JSON; batch and run ids, repeated on every row of a batch
# or a run, once each in ``batches`` and ``runs``; the journal is keyed by
# ``(provider, key)`` alone (no rowid and no second copy of the key), and a
# succeeded request keeps its key, model, state and times but not its body
# or shard. Its indexes hold only the unfinished requests, the ones resume
# and the shards look for, so they do not grow with the requests answered.
_COMPACT_ROWS: Final = (
    "CREATE TABLE batches (id INTEGER PRIMARY KEY, batch_id TEXT NOT NULL UNIQUE)",
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE)",
    "INSERT OR IGNORE INTO batches (batch_id) "
    "SELECT batch_id FROM calls WHERE batch_id IS NOT NULL ORDER BY id",
    "INSERT OR IGNORE INTO batches (batch_id) "
    "SELECT batch_id FROM results WHERE batch_id IS NOT NULL",
    "INSERT OR IGNORE INTO batches (batch_id) "
    "SELECT batch_id FROM retired_results WHERE batch_id IS NOT NULL ORDER BY id",
    "INSERT OR IGNORE INTO runs (run_id) SELECT run FROM calls WHERE run IS NOT NULL ORDER BY id",
    """
    CREATE TABLE results_v6 (
        provider                 TEXT NOT NULL,
        key                      BLOB NOT NULL,
        model                    TEXT NOT NULL,
        task                     TEXT,
        mode                     TEXT NOT NULL,
        text                     TEXT NOT NULL,
        input_tokens             INTEGER NOT NULL,
        output_tokens            INTEGER NOT NULL,
        cached_tokens            INTEGER NOT NULL,
        reasoning_tokens         INTEGER NOT NULL,
        cache_creation_tokens    INTEGER NOT NULL,
        cache_creation_1h_tokens INTEGER NOT NULL,
        cost_usd                 REAL,
        request_id               TEXT,
        batch                    INTEGER,
        created_at               REAL NOT NULL,
        PRIMARY KEY (provider, key)
    ) WITHOUT ROWID
    """,
    f"INSERT INTO results_v6 SELECT provider, lb_key(key), model, task, mode, text, {_USAGE}, "
    "cost_usd, request_id, (SELECT id FROM batches b WHERE b.batch_id = results.batch_id), "
    "created_at FROM results",
    "DROP TABLE results",
    "ALTER TABLE results_v6 RENAME TO results",
    """
    CREATE TABLE retired_v6 (
        id                       INTEGER PRIMARY KEY,
        provider                 TEXT NOT NULL,
        key                      BLOB NOT NULL,
        model                    TEXT NOT NULL,
        task                     TEXT,
        mode                     TEXT NOT NULL,
        text                     TEXT NOT NULL,
        input_tokens             INTEGER NOT NULL,
        output_tokens            INTEGER NOT NULL,
        cached_tokens            INTEGER NOT NULL,
        reasoning_tokens         INTEGER NOT NULL,
        cache_creation_tokens    INTEGER NOT NULL,
        cache_creation_1h_tokens INTEGER NOT NULL,
        cost_usd                 REAL,
        request_id               TEXT,
        batch                    INTEGER,
        created_at               REAL NOT NULL,
        retired_at               REAL NOT NULL,
        reason                   TEXT NOT NULL
    )
    """,
    f"INSERT INTO retired_v6 SELECT id, provider, lb_key(key), model, task, mode, text, {_USAGE}, "
    "cost_usd, request_id, (SELECT id FROM batches b WHERE b.batch_id = r.batch_id), "
    "created_at, retired_at, reason FROM retired_results r ORDER BY id",
    "DROP TABLE retired_results",
    "ALTER TABLE retired_v6 RENAME TO retired_results",
    "CREATE INDEX retired_results_key ON retired_results (provider, key)",
    """
    CREATE TABLE calls_v6 (
        id                    INTEGER PRIMARY KEY,
        provider              TEXT NOT NULL,
        model                 TEXT NOT NULL,
        task                  TEXT,
        mode                  TEXT NOT NULL,
        key                   BLOB NOT NULL,
        input_tokens          INTEGER NOT NULL,
        output_tokens         INTEGER NOT NULL,
        cached_tokens         INTEGER NOT NULL,
        reasoning_tokens      INTEGER NOT NULL,
        cache_creation_tokens INTEGER NOT NULL,
        cost_usd              REAL,
        immediate_cost_usd    REAL,
        batch                 INTEGER,
        ts                    REAL NOT NULL,
        run                   INTEGER
    )
    """,
    "INSERT INTO calls_v6 SELECT id, provider, model, task, mode, lb_key(key), input_tokens, "
    "output_tokens, cached_tokens, reasoning_tokens, cache_creation_tokens, cost_usd, "
    "immediate_cost_usd, (SELECT id FROM batches b WHERE b.batch_id = c.batch_id), ts, "
    "(SELECT id FROM runs WHERE runs.run_id = c.run) FROM calls c ORDER BY id",
    "DROP TABLE calls",
    "ALTER TABLE calls_v6 RENAME TO calls",
    "CREATE INDEX calls_ts ON calls (ts)",
    # batch_usage() checks each ended batch against the ledger: a probe, not a scan.
    "CREATE INDEX calls_batch ON calls (batch) WHERE batch IS NOT NULL",
    """
    CREATE TABLE requests_v6 (
        provider   TEXT NOT NULL,
        key        BLOB NOT NULL,
        model      TEXT NOT NULL,
        task       TEXT,
        state      TEXT NOT NULL,
        body       BLOB,
        shard_id   TEXT,
        attempts   INTEGER NOT NULL DEFAULT 0,
        error      TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (provider, key)
    ) WITHOUT ROWID
    """,
    "INSERT INTO requests_v6 SELECT provider, lb_key(key), model, task, state, "
    "CASE WHEN state = 'succeeded' THEN NULL ELSE body END, "
    "CASE WHEN state = 'succeeded' THEN NULL ELSE shard_id END, "
    "attempts, error, created_at, updated_at FROM requests ORDER BY rowid",
    "DROP TABLE requests",
    "ALTER TABLE requests_v6 RENAME TO requests",
    # Partial: a query uses it only when it says ``state <> 'succeeded'`` in
    # so many words (plugins.store.journal.OPEN).
    "CREATE INDEX requests_open ON requests (provider, state, created_at) "
    "WHERE state <> 'succeeded'",
    "CREATE INDEX requests_shard ON requests (shard_id) WHERE shard_id IS NOT NULL",
    "UPDATE claims SET key = lb_key(key)",
)

# The columns versions 6 and 7 share (migration 7 copies them over).
_RESULT_COLUMNS: Final = (
    "provider, key, model, task, mode, text, input_tokens, output_tokens, cached_tokens, "
    "reasoning_tokens, cache_creation_tokens, cache_creation_1h_tokens, cost_usd, request_id, "
    "batch, created_at"
)
_JOURNAL_COLUMNS: Final = (
    "provider, key, model, task, state, shard_id, attempts, error, created_at, updated_at"
)

# Version 7: rows in the order they were written. A batch run journals,
# submits and settles its requests a shard at a time, and stores their
# answers as they come; with the journal and the cache keyed by their random
# request keys, every commit of ten thousand rows rewrote pages all over both
# tables, and more pages each round as the store grew. Now both are appended
# in rowid order, so a shard's rows sit together and its updates touch only
# its own pages; the random key is found through a small unique index of
# ``(provider, key)``. A request's body lives in ``request_bodies`` under the
# request's id, and is deleted when the request succeeds: the journal row
# that stays is short and its page stays full.
_ORDERED_ROWS: Final = (
    """
    CREATE TABLE results_v7 (
        id                       INTEGER PRIMARY KEY,
        provider                 TEXT NOT NULL,
        key                      BLOB NOT NULL,
        model                    TEXT NOT NULL,
        task                     TEXT,
        mode                     TEXT NOT NULL,
        text                     TEXT NOT NULL,
        input_tokens             INTEGER NOT NULL,
        output_tokens            INTEGER NOT NULL,
        cached_tokens            INTEGER NOT NULL,
        reasoning_tokens         INTEGER NOT NULL,
        cache_creation_tokens    INTEGER NOT NULL,
        cache_creation_1h_tokens INTEGER NOT NULL,
        cost_usd                 REAL,
        request_id               TEXT,
        batch                    INTEGER,
        created_at               REAL NOT NULL
    )
    """,
    f"INSERT INTO results_v7 ({_RESULT_COLUMNS}) SELECT {_RESULT_COLUMNS} FROM results "
    "ORDER BY created_at, provider, key",
    "DROP TABLE results",
    "ALTER TABLE results_v7 RENAME TO results",
    "CREATE UNIQUE INDEX results_key ON results (provider, key)",
    """
    CREATE TABLE requests_v7 (
        id         INTEGER PRIMARY KEY,
        provider   TEXT NOT NULL,
        key        BLOB NOT NULL,
        model      TEXT NOT NULL,
        task       TEXT,
        state      TEXT NOT NULL,
        shard_id   TEXT,
        attempts   INTEGER NOT NULL DEFAULT 0,
        error      TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    f"INSERT INTO requests_v7 ({_JOURNAL_COLUMNS}) SELECT {_JOURNAL_COLUMNS} FROM requests "
    "ORDER BY created_at, provider, key",
    "CREATE TABLE request_bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "INSERT INTO request_bodies (id, body) SELECT n.id, o.body FROM requests_v7 n "
    "JOIN requests o ON o.provider = n.provider AND o.key = n.key "
    "WHERE o.body IS NOT NULL ORDER BY n.id",
    "DROP TABLE requests",
    "ALTER TABLE requests_v7 RENAME TO requests",
    "CREATE UNIQUE INDEX requests_key ON requests (provider, key)",
    "CREATE INDEX requests_open ON requests (provider, state, created_at) "
    "WHERE state <> 'succeeded'",
    "CREATE INDEX requests_shard ON requests (shard_id) WHERE shard_id IS NOT NULL",
)

# Version 8: one index of request keys. The journal and the cache each kept a
# unique index of ``(provider, key)``, and every commit of a batch's rows
# inserted its random keys all over both, rewriting nearly every page of each
# once they outgrew a commit. Now ``keys`` gives each key one id, found
# through the one index of keys (see plugins.store.keyids): a key's journal
# row keeps the id it had, its cached result moves under the same id, and
# the two indexes are dropped. A shard's rows meet their answers by id; a new
# key is inserted at a random place once.
_SHARED_KEYS: Final = (
    "CREATE TABLE keys (id INTEGER PRIMARY KEY, provider TEXT NOT NULL, key BLOB NOT NULL)",
    "INSERT INTO keys (id, provider, key) SELECT id, provider, key FROM requests ORDER BY id",
    "INSERT INTO keys (id, provider, key) SELECT "
    "(SELECT COALESCE(MAX(id), 0) FROM requests) + ROW_NUMBER() OVER (ORDER BY id), provider, key "
    "FROM results r WHERE NOT EXISTS "
    "(SELECT 1 FROM requests q WHERE q.provider = r.provider AND q.key = r.key) ORDER BY id",
    "CREATE UNIQUE INDEX keys_key ON keys (provider, key)",
    _ORDERED_ROWS[0].replace("results_v7", "results_v8"),
    f"INSERT INTO results_v8 (id, {_RESULT_COLUMNS}) SELECT "
    "(SELECT id FROM keys k WHERE k.provider = r.provider AND k.key = r.key) AS kid, "
    f"{_RESULT_COLUMNS} FROM results r ORDER BY kid",
    "CREATE TABLE result_providers (provider TEXT PRIMARY KEY) WITHOUT ROWID",
    "INSERT INTO result_providers (provider) SELECT DISTINCT provider FROM results",
    "DROP TABLE results",
    "ALTER TABLE results_v8 RENAME TO results",
    "DROP INDEX requests_key",
)

# Version 9: a column that every answer and journal write of an older
# lexibatch names is renamed, so that such a process, still running when a
# newer one upgrades its store, fails at its next such write instead of
# writing in a layout it no longer has:
# version 8 took a version-7 answer under another key's id. Later versions
# are fenced by the version check at each write (plugins.store.engine).
_FENCED_COLUMNS: Final = (
    "ALTER TABLE requests RENAME COLUMN attempts TO submissions",
    "ALTER TABLE results RENAME COLUMN request_id TO provider_request_id",
    "ALTER TABLE retired_results RENAME COLUMN request_id TO provider_request_id",
)

#: The schema, as an ordered list of migrations; migration ``i`` takes
#: ``user_version`` from ``i`` to ``i + 1``. Append, never edit.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE results (
            provider   TEXT NOT NULL,
            key        TEXT NOT NULL,
            model      TEXT NOT NULL,
            task       TEXT,
            mode       TEXT NOT NULL,
            text       TEXT NOT NULL,
            usage      TEXT NOT NULL,
            cost_usd   REAL,
            request_id TEXT,
            batch_id   TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (provider, key)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE calls (
            id                    INTEGER PRIMARY KEY,
            provider              TEXT NOT NULL,
            model                 TEXT NOT NULL,
            task                  TEXT,
            mode                  TEXT NOT NULL,
            key                   TEXT NOT NULL,
            input_tokens          INTEGER NOT NULL,
            output_tokens         INTEGER NOT NULL,
            cached_tokens         INTEGER NOT NULL,
            reasoning_tokens      INTEGER NOT NULL,
            cache_creation_tokens INTEGER NOT NULL,
            cost_usd              REAL,
            immediate_cost_usd    REAL,
            batch_id              TEXT,
            ts                    REAL NOT NULL
        )
        """,
        "CREATE INDEX calls_ts ON calls (ts)",
        """
        CREATE TABLE requests (
            provider   TEXT NOT NULL,
            key        TEXT NOT NULL,
            model      TEXT NOT NULL,
            task       TEXT,
            body       BLOB NOT NULL,
            state      TEXT NOT NULL,
            shard_id   TEXT,
            attempts   INTEGER NOT NULL DEFAULT 0,
            error      TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (provider, key)
        )
        """,
        "CREATE INDEX requests_state ON requests (provider, state)",
        "CREATE INDEX requests_shard ON requests (shard_id)",
        """
        CREATE TABLE shards (
            shard_id      TEXT PRIMARY KEY,
            provider      TEXT NOT NULL,
            model         TEXT NOT NULL,
            round         INTEGER NOT NULL DEFAULT 0,
            state         TEXT NOT NULL,
            path          TEXT,
            requests      INTEGER NOT NULL DEFAULT 0,
            bytes         INTEGER NOT NULL DEFAULT 0,
            input_file_id TEXT,
            batch_id      TEXT UNIQUE,
            batch_status  TEXT,
            counts        TEXT,
            raw           TEXT,
            error         TEXT,
            created_at    REAL NOT NULL,
            updated_at    REAL NOT NULL
        )
        """,
        "CREATE INDEX shards_provider_state ON shards (provider, state)",
        """
        CREATE TABLE documents (
            namespace  TEXT NOT NULL,
            key        TEXT NOT NULL,
            value      TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID
        """,
    ),
    (
        """
        CREATE TABLE schemas (
            ref        TEXT PRIMARY KEY,
            body       BLOB NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ),
    (
        """
        CREATE TABLE retired_results (
            id         INTEGER PRIMARY KEY,
            provider   TEXT NOT NULL,
            key        TEXT NOT NULL,
            model      TEXT NOT NULL,
            task       TEXT,
            mode       TEXT NOT NULL,
            text       TEXT NOT NULL,
            usage      TEXT NOT NULL,
            cost_usd   REAL,
            request_id TEXT,
            batch_id   TEXT,
            created_at REAL NOT NULL,
            retired_at REAL NOT NULL,
            reason     TEXT NOT NULL
        )
        """,
        "CREATE INDEX retired_results_key ON retired_results (provider, key)",
    ),
    (
        # Which run (Store instance) paid a call: a run's summary sums its own calls.
        "ALTER TABLE calls ADD COLUMN run TEXT",
        # Immediate requests being sent, by the process sending them (plugins.claims).
        """
        CREATE TABLE claims (
            provider   TEXT NOT NULL,
            key        TEXT NOT NULL,
            owner      TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (provider, key)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX claims_owner ON claims (owner)",
    ),
    (
        # When the user cancelled the shard's batch (plugins.batch.usercancel):
        # its unanswered requests end as cancelled, never sent again unasked.
        "ALTER TABLE shards ADD COLUMN cancelled_by_user_at REAL",
    ),
    _COMPACT_ROWS,
    _ORDERED_ROWS,
    _SHARED_KEYS,
    _FENCED_COLUMNS,
)

#: The schema version this code reads and writes.
SCHEMA_VERSION: Final = len(MIGRATIONS)


def check_readable(version: int, path: str) -> None:
    """Raise unless this lexibatch reads a store of schema ``version``.

    Raises:
        ConfigError: the store (at ``path``) was written by a newer lexibatch.
    """
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: the store has schema version {version}, newer than this "
            f"lexibatch reads ({SCHEMA_VERSION}) — upgrade lexibatch",
            key="connector.db",
        )


def pending_statements(version: int, path: str) -> Iterator[str]:
    """The statements that take a store from schema ``version`` to :data:`SCHEMA_VERSION`.

    Raises:
        ConfigError: the store (at ``path``) was written by a newer lexibatch.
    """
    check_readable(version, path)
    for statements in MIGRATIONS[version:]:
        yield from statements
