"""The store: the result cache, the cost ledger and the crash-safe journal of requests and batches.

One database (SQLite, one file) holds them all, behind one :class:`Store`
whose parts share one connection, so that one transaction can span tables
(a paid answer and its ledger row commit together). Its modules, by job:

``engine``
    the database engine, the only module that knows it is SQLite:
    connections, WAL and fsync, the checkpoint thread, transactions and
    savepoints, busy retries, SQLite's errors as ``StoreWriteError``.
``backend``
    the few calls the table modules make of the engine (so another engine
    could stand in for SQLite without them changing).
``migrations``
    the schema, as an ordered list of migrations.
``rows``
    the rows read and written (:class:`StoredResult`, :class:`CallRecord`,
    :class:`CostRow`, :class:`JournalRequest`, :class:`Shard`) and the
    journal's states.
``keyids``
    each request key's one id, under which its journal row and its cached
    result are both kept (``keys``, the one index of request keys).
``cache``
    the result cache (``results``, ``result_providers``, ``retired_results``).
``costs``
    the cost ledger (``calls``) and the cost report.
``journal``
    the request journal (``requests``) and the schemas it refers to (``schemas``).
``shards``
    the batch journal (``shards``).
``documents``
    namespaced JSON documents (``documents``).
``keys``
    request keys as stored (24 bytes for lexibatch's own keys).
``refs``
    the batch and run ids rows refer to, stored once (``batches``, ``runs``).
``claims``
    which process is sending an immediate request (``claims``; the policy is
    :mod:`plugins.claims`').

Nothing secret is stored: no headers, no API keys.
"""

from __future__ import annotations

from plugins.store.cache import CacheTables
from plugins.store.claims import ClaimTables
from plugins.store.costs import CostTables
from plugins.store.documents import DocumentTables
from plugins.store.engine import SQLiteEngine
from plugins.store.migrations import MIGRATIONS, SCHEMA_VERSION
from plugins.store.rows import (
    REQUEST_STATES,
    SHARD_STATES,
    UNFINISHED_SHARD_STATES,
    CallRecord,
    CostRow,
    JournalRequest,
    Shard,
    StoredResult,
)
from plugins.store.shards import ShardTables

__all__ = [
    "MIGRATIONS",
    "REQUEST_STATES",
    "SCHEMA_VERSION",
    "SHARD_STATES",
    "UNFINISHED_SHARD_STATES",
    "CallRecord",
    "CostRow",
    "JournalRequest",
    "Shard",
    "Store",
    "StoredResult",
]


class Store(SQLiteEngine, CacheTables, CostTables, ShardTables, DocumentTables, ClaimTables):
    """The result cache, the cost ledger and the request / batch journal, in one SQLite file.

    All methods are synchronous and quick; they may be called from the event
    loop thread. One instance may be shared by threads (calls are
    serialized); several processes may open the same file. Calls made inside
    :meth:`in_transaction` commit together, whatever tables they write.

    Args:
        path: the database file (its directory is created), or ``":memory:"``.
        busy_timeout: seconds SQLite itself waits for another writer's lock.
        lock_timeout: seconds a write keeps retrying (with backoff) before a
            ``database is locked`` error is let through.

    Raises:
        ConfigError: the file cannot be opened, is not a lexibatch store, or
            was written by a newer lexibatch.
    """
