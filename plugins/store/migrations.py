"""The schema of the store, as an ordered list of migrations.

Each table is described where it is used: ``results`` and
``retired_results`` in :mod:`plugins.store.cache`, ``calls`` in
:mod:`plugins.store.costs`, ``requests`` and ``schemas`` in
:mod:`plugins.store.journal`, ``shards`` in :mod:`plugins.store.shards`,
``documents`` in :mod:`plugins.store.documents`, ``claims`` in
:mod:`plugins.store.claims`. The engine runs the
pending migrations in order inside one write transaction when a store is
opened (see :meth:`plugins.store.engine.SQLiteEngine.schema_version`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from providers.errors import ConfigError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "pending_statements"]

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
)

#: The schema version this code reads and writes.
SCHEMA_VERSION: Final = len(MIGRATIONS)


def pending_statements(version: int, path: str) -> Iterator[str]:
    """The statements that take a store from schema ``version`` to :data:`SCHEMA_VERSION`.

    Raises:
        ConfigError: the store (at ``path``) was written by a newer lexibatch.
    """
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: the store has schema version {version}, newer than this "
            f"lexibatch reads ({SCHEMA_VERSION}) — upgrade lexibatch",
            key="connector.db",
        )
    for statements in MIGRATIONS[version:]:
        yield from statements
