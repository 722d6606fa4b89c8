"""The SQLite store: the result cache and the crash-safe journal of requests and batches.

One file holds seven tables:

``results``
    the cache, keyed by ``(provider, request key)``. The first stored result
    wins: a later identical request never overwrites a paid answer, unless
    that answer was retired first (``retired_results``).
``calls``
    the usage ledger, one row per paid call (never for a cache hit), which
    the cost report sums.
``requests``
    the request journal: every request a batch run has accepted, with the
    canonical body needed to rebuild it without the original input, and its
    state (``queued`` → ``submitted`` → ``succeeded`` | ``failed``). A
    batch's answered requests move to ``succeeded`` together when the last
    of its results is stored; until then the cache row is the sign of an
    answer.
``shards``
    the batch journal: every batch input file and the provider batch made
    from it (``written`` → ``uploaded`` → ``submitting`` → ``created`` →
    ``ended`` → ``collected``, or ``failed``).
``schemas``
    each response schema the journal refers to, stored once under a hash of
    its canonical JSON: a schema is often longer than the prompt, and a
    journal of millions of requests would otherwise repeat it in every row.
``retired_results``
    cached answers set aside because they no longer fit their response
    model (see :meth:`Store.retire_result`); kept, since they were paid for.
``documents``
    a namespaced JSON key-value table (synthesized entries, run metadata).

Durability and concurrency
--------------------------
The database runs in WAL mode with ``synchronous=NORMAL``: a commit survives
the process being killed at any moment, and only an OS crash or power loss
can roll back the newest commits. That is the right price for the cache and
ledger, which are written at thousands of rows a second. The batch journal
(:meth:`Store.add_shard`, :meth:`Store.update_shard`, and any
``in_transaction(durable=True)``) is different: its commits precede a side
effect at the provider (an upload, a batch creation), and losing one after
the side effect happened would make a resumed run submit and pay twice. Those
commits run with ``synchronous=FULL``, which fsyncs the WAL; since the WAL is
append-only, that also makes every earlier commit durable, so the journal
never gets ahead of the rows it refers to.

A write SQLite refuses (a full disk, a read-only or damaged file, a lock held
past the timeout) raises :class:`~providers.errors.StoreWriteError`, one line
saying what to do; what was committed before stays.

Every write takes the write lock up front (``BEGIN IMMEDIATE``) and retries
with a short, jittered backoff when another process holds it past the busy
timeout, so several processes may share one store. Writes of many rows run
in one transaction with ``executemany``. The schema is versioned with
``PRAGMA user_version``; migrations run in order inside one write
transaction when the store is opened, so two processes opening a fresh file
at once migrate it exactly once.

Nothing secret is stored: no headers, no API keys.
"""

from __future__ import annotations

import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import orjson

from providers.errors import ConfigError, StoreWriteError, os_error_reason
from providers.types import Usage

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

T = TypeVar("T")

#: States of a journaled request.
REQUEST_STATES: Final = frozenset({"queued", "submitted", "succeeded", "failed"})
#: States of a journaled shard (one batch input file and the provider batch made from it).
SHARD_STATES: Final = frozenset(
    {"written", "uploaded", "submitting", "created", "ended", "collected", "failed"}
)
#: Shard states whose batch may still run at the provider (and be billed): to be resumed.
UNFINISHED_SHARD_STATES: Final = ("written", "uploaded", "submitting", "created", "ended")

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

_MEMORY = ":memory:"
# SQLite's primary result codes for a write the file or the disk refused.
_WRITE_FAILURES: Final = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    }
)
# What SQLite says when the file or its folder refuses to be opened for writing.
_OPEN_REFUSALS: Final = frozenset(
    {
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)
# Bound parameters per IN (...) query: under SQLite's historical limit of 999.
_CHUNK = 900
# Rows fetched per query by the iterators, so no read cursor stays open across a yield.
_PAGE = 5000


# ---------------------------------------------------------------------------
# rows
#
# The rows written once per request (results, ledger, journal) are named
# tuples: a hundred thousand of them are made per batch, and a frozen
# dataclass costs several times as much to build.


class StoredResult(NamedTuple):
    """One cached result.

    Attributes:
        key: the request key.
        model: the model that answered.
        task: the request's task tag.
        mode: ``immediate`` or ``batch``.
        text: the raw content the model produced.
        usage: token counts of the call that produced it.
        cost_usd: what that call cost (``None``: unpriced).
        request_id: the provider's id of the call.
        batch_id: the provider's batch id, when batched.
        created_at: when it was stored (Unix time; 0 until stored).
    """

    key: str
    model: str
    task: str | None
    mode: str
    text: str
    usage: Usage
    cost_usd: float | None = None
    request_id: str | None = None
    batch_id: str | None = None
    created_at: float = 0.0


class CallRecord(NamedTuple):
    """One paid call, as recorded in the usage ledger.

    Attributes:
        provider: the provider's registered name.
        model: the model billed.
        task: the request's task tag.
        mode: ``immediate`` or ``batch``.
        key: the request key.
        usage: token counts.
        cost_usd: the price paid (``None``: the model is unpriced).
        immediate_cost_usd: what the same call would cost immediately
            (``None``: unknown; an immediate call's own cost counts then).
        batch_id: the provider's batch id, when batched.
        ts: when the call finished (Unix time; ``None``: now).
    """

    provider: str
    model: str
    task: str | None
    mode: str
    key: str
    usage: Usage = Usage()
    cost_usd: float | None = None
    immediate_cost_usd: float | None = None
    batch_id: str | None = None
    ts: float | None = None


@dataclass(frozen=True, slots=True)
class CostRow:
    """One line of the cost report: calls of one mode, task and model.

    Attributes:
        mode: ``immediate`` or ``batch``.
        task: the task tag (``None``: untagged).
        model: the model billed.
        requests: paid calls.
        input_tokens: input tokens, summed.
        output_tokens: output tokens, summed.
        cached_tokens: cached input tokens, summed.
        reasoning_tokens: reasoning tokens, summed.
        cost_usd: what the priced calls cost.
        immediate_cost_usd: what the priced calls would have cost immediately.
        unpriced: calls whose model has no price (not counted as free).
    """

    mode: str
    task: str | None
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float
    immediate_cost_usd: float
    unpriced: int

    @property
    def saving_usd(self) -> float:
        """What running these calls this way saved against immediate mode."""
        return self.immediate_cost_usd - self.cost_usd


class JournalRequest(NamedTuple):
    """One request in the request journal.

    Attributes:
        key: the request key (the batch ``custom_id``).
        model: the model it is sent to.
        task: its task tag.
        body: the canonical request JSON, enough to rebuild the request.
        state: ``queued``, ``submitted``, ``succeeded`` or ``failed``.
        shard_id: the shard it was last submitted in.
        attempts: how many shards it has been submitted in (batch rounds).
        error: the last error (``ProviderError.to_dict()`` form), if any.
        created_at: when it was journaled (0 until stored).
        updated_at: when its state last changed (0 until stored).
    """

    key: str
    model: str
    task: str | None
    body: bytes
    state: str = "queued"
    shard_id: str | None = None
    attempts: int = 0
    error: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Shard:
    """One batch input file and the provider batch made from it.

    Attributes:
        shard_id: our id of the shard.
        provider: the provider's registered name.
        model: the one model its requests go to.
        round: the retry round it belongs to (0: first submission).
        state: see :data:`SHARD_STATES`.
        path: the JSONL input file.
        requests: how many requests it holds.
        bytes: the input file's size.
        input_file_id: the provider's id of the uploaded file.
        batch_id: the provider's batch id, once created.
        batch_status: the provider's last reported status.
        counts: the provider's last reported request counts.
        raw: the provider's last batch object.
        error: why the shard failed, if it did.
        created_at: when it was journaled (0 until stored).
        updated_at: when it last changed (0 until stored).
    """

    shard_id: str
    provider: str
    model: str
    round: int = 0
    state: str = "written"
    path: str | None = None
    requests: int = 0
    bytes: int = 0
    input_file_id: str | None = None
    batch_id: str | None = None
    batch_status: str | None = None
    counts: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


_RESULT_COLUMNS = "key, model, task, mode, text, usage, cost_usd, request_id, batch_id, created_at"
_REQUEST_COLUMNS = (
    "key, model, task, body, state, shard_id, attempts, error, created_at, updated_at"
)
_SHARD_COLUMNS = (
    "shard_id, provider, model, round, state, path, requests, bytes, input_file_id, "
    "batch_id, batch_status, counts, raw, error, created_at, updated_at"
)
#: Shard columns :meth:`Store.update_shard` may change.
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


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads_opt(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _usage_json(usage: Usage) -> str:
    # Hour-long cache writes are rare: written only when there are some.
    hour = usage.cache_creation_1h_tokens
    return (
        f'{{"input_tokens":{usage.input_tokens},"output_tokens":{usage.output_tokens},'
        f'"cached_tokens":{usage.cached_tokens},"reasoning_tokens":{usage.reasoning_tokens},'
        f'"cache_creation_tokens":{usage.cache_creation_tokens}'
        + (f',"cache_creation_1h_tokens":{hour}}}' if hour else "}")
    )


def _result_from_row(row: Sequence[Any], memo: dict[str, Usage]) -> StoredResult:
    return StoredResult(
        key=row[0],
        model=row[1],
        task=row[2],
        mode=row[3],
        text=row[4],
        usage=_usage_from_json(row[5], memo),
        cost_usd=row[6],
        request_id=row[7],
        batch_id=row[8],
        created_at=row[9],
    )


def _request_from_row(row: Sequence[Any]) -> JournalRequest:
    # Positional, and no JSON parse for the usual row without an error: this
    # runs once per request of a shard when its results are checked.
    body = row[3]
    error = row[7]
    return JournalRequest(
        row[0],
        row[1],
        row[2],
        body if type(body) is bytes else bytes(body),
        row[4],
        row[5],
        row[6],
        None if error is None else orjson.loads(error),
        row[8],
        row[9],
    )


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
        counts=_loads_opt(row[11]),
        raw=_loads_opt(row[12]),
        error=row[13],
        created_at=row[14],
        updated_at=row[15],
    )


def _second(row: tuple[Any, ...]) -> Any:
    return row[1]


def _last(row: tuple[Any, ...]) -> Any:
    return row[-1]


def _usage_from_json(text: str, memo: dict[str, Usage]) -> Usage:
    # Rows often share token counts (same template, same answer size): parse each once.
    usage = memo.get(text)
    if usage is None:
        data = orjson.loads(text)
        get = data.get
        usage = memo[text] = Usage(
            get("input_tokens", 0),
            get("output_tokens", 0),
            get("cached_tokens", 0),
            get("reasoning_tokens", 0),
            get("cache_creation_tokens", 0),
            get("cache_creation_1h_tokens", 0),
        )
    return usage


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _check_state(state: str, allowed: frozenset[str], what: str) -> None:
    if state not in allowed:
        raise ValueError(f"unknown {what} state {state!r}; expected one of {sorted(allowed)}")


# ---------------------------------------------------------------------------
# the store

# WAL pages after which a committing connection checkpoints in line (about 80 MB).
_BACKSTOP_CHECKPOINT_PAGES = 20000
# Shortest pause between two background checkpoints. A checkpoint copies
# every page written since the last one, and batch results rewrite the same
# index pages over and over: checkpointing every half second cost a 100,000-
# request batch run an eighth of its CPU, every two seconds a fifth of that,
# for a WAL of a few tens of megabytes at most.
_CHECKPOINT_PAUSE = 2.0


class _Checkpointer:
    """Copies the WAL back into the database file on a thread of its own.

    SQLite's automatic checkpoint runs inside whichever commit crosses the
    threshold, and with it the fsyncs of the WAL and the database: hundreds
    of milliseconds charged to one unlucky write on the event loop thread. A
    passive checkpoint on a separate connection does the same work without
    blocking writers or readers, and the GIL is released while it runs.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="lexibatch-store-checkpoint", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        """Say that a commit happened (cheap; called after every commit)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the checkpoint in progress, if any, and end the thread."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=0.1, isolation_level=None)
        except sqlite3.Error:
            return
        try:
            while not self._stopping.is_set():
                self._wake.wait()
                if self._stopping.is_set():
                    break
                self._wake.clear()
                with suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self._stopping.wait(_CHECKPOINT_PAUSE)
        finally:
            conn.close()


class Store:
    """The result cache and the request / batch journal, in one SQLite file.

    All methods are synchronous and quick; they may be called from the event
    loop thread. One instance may be shared by threads (calls are
    serialized); several processes may open the same file.

    Args:
        path: the database file (its directory is created), or ``":memory:"``.
        busy_timeout: seconds SQLite itself waits for another writer's lock.
        lock_timeout: seconds a write keeps retrying (with backoff) before a
            ``database is locked`` error is let through.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = 5.0,
        lock_timeout: float = 120.0,
    ) -> None:
        self.path = str(path)
        #: Unique to this instance: the ledger rows it writes carry it (``cost_report(run=)``).
        self.run_id = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._memory = self.path == _MEMORY
        if not self._memory:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreWriteError(
                    f"cannot create the folder of the store {self.path} "
                    f"({os_error_reason(exc)}): set connector.db (or --db) to a file in a "
                    "writable folder"
                ) from None
        self._lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._depth = 0
        # Set when a durable write joins a transaction that did not start durable.
        self._sync_after_commit = False
        self._durable_tx = False
        self._checkpointer: _Checkpointer | None = None
        try:
            self._conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=128,
            )
        except sqlite3.Error as exc:
            raise ConfigError(
                f"{self.path}: cannot open the store: {exc}", key="connector.db"
            ) from None
        try:
            self._setup(busy_timeout)
        except sqlite3.DatabaseError as exc:
            self.close()
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                raise
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _OPEN_REFUSALS:
                # SQLite keeps its -wal and -shm files beside the store: the
                # folder must be writable, not only the file.
                raise StoreWriteError(
                    f"the store {self.path} cannot be opened for writing ({exc}): its folder "
                    "must be writable (read-only mount? full disk? permissions?) — fix it or "
                    "set connector.db (or --db) to a writable place"
                ) from None
            raise ConfigError(
                f"{self.path}: not a usable lexibatch store: {exc}", key="connector.db"
            ) from None
        except BaseException:
            self.close()
            raise

    # --- lifecycle ---------------------------------------------------------

    def _setup(self, busy_timeout: float) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if not self._memory:
            mode = self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError(f"cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32000")
        if self.schema_version() != SCHEMA_VERSION:
            self._write(self._migrate)
        if not self._memory:
            # Checkpoints run on their own thread (see _Checkpointer); the
            # in-line one stays only as a backstop should the WAL outgrow it.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_BACKSTOP_CHECKPOINT_PAGES}")
            self._checkpointer = _Checkpointer(self.path)

    def _migrate(self) -> None:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path}: the store has schema version {version}, newer than this "
                f"lexibatch reads ({SCHEMA_VERSION}) — upgrade lexibatch",
                key="connector.db",
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                self._conn.execute(statement)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        """The schema version of the open file (``PRAGMA user_version``)."""
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            with suppress(sqlite3.Error):
                self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` verdict (``"ok"`` when sound)."""
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    # --- transactions ------------------------------------------------------

    @contextmanager
    def in_transaction(self, *, durable: bool = False) -> Iterator[Store]:
        """Group several calls into one atomic commit.

        Everything written inside the block commits together, or, if the
        block raises, none of it does. Nested blocks are savepoints: an
        exception caught inside the outer block undoes only the inner one.

        The block holds the store for its thread: do not ``await`` inside it.

        Args:
            durable: commit with ``synchronous=FULL`` — use it for journal
                writes that precede a side effect at the provider. A durable
                call (e.g. :meth:`update_shard`) inside a block that is not
                makes the commit durable too.
        """
        with self._lock:
            if self._depth:
                with self._savepoint():
                    if durable:
                        self._sync_after_commit = True
                    yield self
                return
            with self._writing():
                self._begin(durable)
            try:
                yield self
            except BaseException:
                self._rollback()
                raise
            with self._writing():
                self._commit()

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self._check_open()
        name = f"lb_sp{self._depth}"
        self._conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            # On a full disk or an I/O error SQLite may have rolled the whole
            # transaction back already; the error that did it is the one to raise.
            if self._conn.in_transaction:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
            raise
        self._depth -= 1
        self._conn.execute(f"RELEASE {name}")

    def _begin(self, durable: bool) -> None:
        if durable:
            # Only settable outside a transaction; reset in _end.
            self._conn.execute("PRAGMA synchronous = FULL")
        try:
            self._retry(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        except BaseException:
            if durable:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            raise
        self._depth = 1
        self._durable_tx = durable
        self._sync_after_commit = False

    def _check_open(self) -> None:
        """Raise if SQLite rolled the open transaction back on its own.

        It does so after some failures (a full disk, an I/O error). A caller
        that caught such an error inside :meth:`in_transaction` must neither
        go on writing (each write would commit alone, outside the block) nor
        take the block as committed.
        """
        if not self._conn.in_transaction:
            raise StoreWriteError(
                f"the store {self.path} rolled back a transaction after a failed write: "
                "nothing written in it was kept; run the same command again"
            )

    def _commit(self) -> None:
        try:
            self._check_open()
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        sync = self._sync_after_commit and not self._durable_tx
        self._end()
        if sync:
            self._fsync_wal()
        if self._checkpointer is not None:
            self._checkpointer.poke()

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        finally:
            self._end()

    def _end(self) -> None:
        self._depth = 0
        self._sync_after_commit = False
        if self._durable_tx:
            self._durable_tx = False
            self._conn.execute("PRAGMA synchronous = NORMAL")

    def _fsync_wal(self) -> None:
        # What synchronous=FULL would have done at that commit: make the WAL durable.
        if self._memory:
            return
        try:
            fd = os.open(self.path + "-wal", os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying while another connection holds the lock."""
        deadline = time.monotonic() + self._lock_timeout
        delay = 0.002
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """SQLite's write failures (disk full, read-only or damaged file) as one typed error."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            # Only what the file or the disk did; anything else (no such table,
            # a constraint) is a bug to see whole, not advice to free space.
            if exc.sqlite_errorcode & 0xFF not in _WRITE_FAILURES:
                raise
            if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                advice = (
                    f"another process held its write lock for over {self._lock_timeout:g} s — "
                    "let it finish"
                )
            else:
                advice = "free disk space or set connector.db to a writable file"
            raise StoreWriteError(
                f"the store {self.path} could not be written ({exc}): {advice}, then run the "
                "same command again; what was stored before is kept"
            ) from exc

    def _write(self, fn: Callable[[], T], *, durable: bool = False) -> T:
        """Run ``fn`` in its own write transaction (a savepoint inside an open one)."""
        with self._lock, self._writing():
            if self._depth:
                with self._savepoint():
                    if durable:
                        self._sync_after_commit = True
                    return fn()

            def attempt() -> T:
                self._begin(durable)
                try:
                    value = fn()
                except BaseException:
                    self._rollback()
                    raise
                self._commit()
                return value

            return self._retry(attempt)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._retry(lambda: self._conn.execute(sql, params).fetchall())

    def _read_for_keys(self, sql: str, scope: str | None, keys: Iterable[str]) -> list[Any]:
        """The rows of ``sql`` for every key of ``keys``.

        ``sql`` takes the scope (provider or namespace; ``None``: none) and
        then the keys in an ``IN ({marks})`` list; the keys are sent in
        sorted chunks under SQLite's bound-parameter limit.
        """
        rows: list[Any] = []
        scoped = () if scope is None else (scope,)
        with self._lock:
            for chunk in _chunks(sorted(set(keys))):
                marks = ",".join("?" * len(chunk))
                rows.extend(self._read(sql.format(marks=marks), (*scoped, *chunk)))
        return rows

    def _changes(self, sql: str, rows: list[tuple[Any, ...]], *, durable: bool = False) -> int:
        if not rows:
            return 0

        def run() -> int:
            before = self._conn.total_changes
            self._conn.executemany(sql, rows)
            return self._conn.total_changes - before

        return self._write(run, durable=durable)

    def write_with(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in a write transaction of its own (a savepoint in an open one).

        For a module that owns a table of the store (:mod:`plugins.claims`):
        the write lock is taken up front and waited for like every write, and
        a refused write raises :class:`~providers.errors.StoreWriteError`.
        """
        return self._write(lambda: fn(self._conn))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read-only statement (for modules that own a table)."""
        return self._read(sql, params)

    # --- results (the cache) -----------------------------------------------

    def get_result(self, provider: str, key: str) -> StoredResult | None:
        """The cached result of request ``key`` at ``provider``, if there is one."""
        rows = self._read(
            f"SELECT {_RESULT_COLUMNS} FROM results WHERE provider = ? AND key = ?",
            (provider, key),
        )
        return _result_from_row(rows[0], {}) if rows else None

    def get_results(self, provider: str, keys: Iterable[str]) -> dict[str, StoredResult]:
        """The cached results among ``keys``, by key (missing keys are absent)."""
        wanted = sorted(set(keys))
        found: dict[str, StoredResult] = {}
        memo: dict[str, Usage] = {}
        with self._lock:
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                sql = (
                    f"SELECT {_RESULT_COLUMNS} FROM results WHERE provider = ? AND key IN ({marks})"
                )
                for row in self._read(sql, (provider, *chunk)):
                    found[row[0]] = _result_from_row(row, memo)
        return found

    def put_results(self, provider: str, results: Iterable[StoredResult]) -> int:
        """Cache results; returns how many were new.

        The first stored result for a key wins: an identical request answered
        later never overwrites a paid result.
        """
        now = time.time()
        rows = [
            (
                provider,
                r.key,
                r.model,
                r.task,
                r.mode,
                r.text,
                _usage_json(r.usage),
                r.cost_usd,
                r.request_id,
                r.batch_id,
                r.created_at or now,
            )
            for r in results
        ]
        rows.sort(key=_second)
        return self._changes(
            "INSERT OR IGNORE INTO results (provider, key, model, task, mode, text, usage, "
            "cost_usd, request_id, batch_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def retire_result(self, provider: str, key: str, *, text: str, reason: str) -> bool:
        """Set aside the cached answer ``text`` of ``key``, so that a new answer is stored.

        For an answer that no longer fits its request's response model (the
        model gained a field or a validator while its JSON schema, and so the
        key, stayed the same): asked again, the new answer is paid for once
        and kept, instead of being dropped in favour of the stale one and paid
        for again on every run. The old answer moves to ``retired_results``
        (a paid answer is never deleted), and the request's journal row, if it
        says ``succeeded``, says ``failed`` so a batch run may queue it again.
        Nothing happens when the cached answer is no longer ``text`` (another
        run retired it and stored a new one); returns whether it was retired.
        """
        now = time.time()
        error = _dumps({"type": "SchemaValidationError", "message": reason})

        def run() -> bool:
            moved = self._conn.execute(
                "INSERT INTO retired_results (provider, key, model, task, mode, text, usage, "
                "cost_usd, request_id, batch_id, created_at, retired_at, reason) "
                "SELECT provider, key, model, task, mode, text, usage, cost_usd, request_id, "
                "batch_id, created_at, ?, ? FROM results "
                "WHERE provider = ? AND key = ? AND text = ?",
                (now, reason, provider, key, text),
            ).rowcount
            if not moved:
                return False
            self._conn.execute(
                "DELETE FROM results WHERE provider = ? AND key = ?", (provider, key)
            )
            self._conn.execute(
                "UPDATE requests SET state = 'failed', error = ?, updated_at = ? "
                "WHERE provider = ? AND key = ? AND state = 'succeeded'",
                (error, now, provider, key),
            )
            return True

        return self._write(run)

    def retired_results(self, provider: str, key: str) -> list[StoredResult]:
        """The answers of ``key`` set aside by :meth:`retire_result`, oldest first."""
        rows = self._read(
            f"SELECT {_RESULT_COLUMNS} FROM retired_results WHERE provider = ? AND key = ? "
            "ORDER BY id",
            (provider, key),
        )
        return [_result_from_row(row, {}) for row in rows]

    def retired_keys(self, provider: str, batch_id: str, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` whose answer from batch ``batch_id`` was retired.

        Such an answer was stored, and billed in the ledger, before it was
        retired: reading the batch's results again must not bill it again.
        """
        sql = "SELECT key, batch_id FROM retired_results WHERE provider = ? AND key IN ({marks})"
        return {key for key, bid in self._read_for_keys(sql, provider, keys) if bid == batch_id}

    def count_results(self, provider: str | None = None) -> int:
        """How many results are cached (for one provider, or all)."""
        if provider is None:
            rows = self._read("SELECT COUNT(*) FROM results")
        else:
            rows = self._read("SELECT COUNT(*) FROM results WHERE provider = ?", (provider,))
        return int(rows[0][0])

    # --- calls (the usage ledger) ------------------------------------------

    def record_calls(self, rows: Iterable[CallRecord]) -> int:
        """Record paid calls in the usage ledger; returns how many were recorded."""
        now = time.time()
        values = [
            (
                c.provider,
                c.model,
                c.task,
                c.mode,
                c.key,
                c.usage.input_tokens,
                c.usage.output_tokens,
                c.usage.cached_tokens,
                c.usage.reasoning_tokens,
                c.usage.cache_creation_tokens,
                c.cost_usd,
                c.immediate_cost_usd,
                c.batch_id,
                now if c.ts is None else c.ts,
                self.run_id,
            )
            for c in rows
        ]
        return self._changes(
            "INSERT INTO calls (provider, model, task, mode, key, input_tokens, output_tokens, "
            "cached_tokens, reasoning_tokens, cache_creation_tokens, cost_usd, "
            "immediate_cost_usd, batch_id, ts, run) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            values,
        )

    def batch_usage(self, batch_id: str) -> tuple[int, Usage]:
        """The ledger's calls of one provider batch: how many, and their tokens summed."""
        rows = self._read(
            "SELECT COUNT(*), TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cached_tokens), "
            "TOTAL(reasoning_tokens), TOTAL(cache_creation_tokens) FROM calls WHERE batch_id = ?",
            (batch_id,),
        )
        count, *tokens = rows[0]
        return int(count), Usage(*(int(t) for t in tokens))

    def cost_report(self, since: float | None = None, *, run: str | None = None) -> list[CostRow]:
        """Recorded usage and cost, grouped by mode, task and model.

        Args:
            since: only calls at or after this Unix time.
            run: only calls recorded through the store instance whose
                :attr:`run_id` this is (with ``since``, the scan stays on the time index).

        An immediate call without an ``immediate_cost_usd`` counts its own
        cost as the immediate equivalent. Unpriced calls are counted apart,
        never as free.
        """
        sql = (
            "SELECT mode, task, model, COUNT(*), TOTAL(input_tokens), TOTAL(output_tokens), "
            "TOTAL(cached_tokens), TOTAL(reasoning_tokens), TOTAL(cost_usd), "
            "TOTAL(COALESCE(immediate_cost_usd, "
            "CASE WHEN mode = 'immediate' THEN cost_usd END)), "
            "TOTAL(cost_usd IS NULL) FROM calls"
        )
        where: list[str] = []
        params: tuple[Any, ...] = ()
        if since is not None:
            where.append("ts >= ?")
            params += (since,)
        if run is not None:
            where.append("run = ?")
            params += (run,)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY mode, task, model ORDER BY mode, task, model"
        return [
            CostRow(
                mode=r[0],
                task=r[1],
                model=r[2],
                requests=int(r[3]),
                input_tokens=int(r[4]),
                output_tokens=int(r[5]),
                cached_tokens=int(r[6]),
                reasoning_tokens=int(r[7]),
                cost_usd=float(r[8]),
                immediate_cost_usd=float(r[9]),
                unpriced=int(r[10]),
            )
            for r in self._read(sql, params)
        ]

    # --- requests (the request journal) ------------------------------------

    def add_requests(self, provider: str, rows: Iterable[JournalRequest]) -> int:
        """Journal requests; returns how many were new (known keys are left as they are)."""
        now = time.time()
        values = []
        for r in rows:
            _check_state(r.state, REQUEST_STATES, "request")
            values.append(
                (
                    provider,
                    r.key,
                    r.model,
                    r.task,
                    r.body,
                    r.state,
                    r.shard_id,
                    r.attempts,
                    None if r.error is None else _dumps(r.error),
                    r.created_at or now,
                    r.updated_at or now,
                )
            )
        values.sort(key=_second)
        return self._changes(
            "INSERT OR IGNORE INTO requests (provider, key, model, task, body, state, shard_id, "
            "attempts, error, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            values,
        )

    def queue_requests(self, provider: str, rows: Iterable[JournalRequest]) -> int:
        """Journal requests as queued in their (open) shard; returns rows written.

        Unlike :meth:`add_requests`, a request already journaled as queued or
        failed (by an earlier run) is queued again in the new shard; one that
        succeeded or is in a submitted batch is left alone.
        """
        now = time.time()
        values = [
            (provider, r.key, r.model, r.task, r.body, r.shard_id, r.attempts, now, now)
            for r in rows
        ]
        values.sort(key=_second)
        return self._changes(
            "INSERT INTO requests (provider, key, model, task, body, state, shard_id, attempts, "
            "error, created_at, updated_at) VALUES (?,?,?,?,?,'queued',?,?,NULL,?,?) "
            "ON CONFLICT (provider, key) DO UPDATE SET state = 'queued', "
            "shard_id = excluded.shard_id, updated_at = excluded.updated_at "
            "WHERE requests.state IN ('queued', 'failed')",
            values,
        )

    def submit_shard_requests(self, provider: str, shard_id: str) -> int:
        """Move the queued requests of ``shard_id`` to submitted (one more attempt each).

        One statement over the shard index, instead of one update per key.
        """
        now = time.time()
        return self._changes(
            "UPDATE requests SET state = 'submitted', attempts = attempts + 1, error = NULL, "
            "updated_at = ? WHERE provider = ? AND shard_id = ? AND state = 'queued'",
            [(now, provider, shard_id)],
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
        _check_state(state, REQUEST_STATES, "request")
        now = time.time()
        shared = None if error is None else _dumps(dict(error))
        per_key = errors or {}
        values = []
        for key in keys:
            own = per_key.get(key)
            values.append(
                (state, shard_id, shared if own is None else _dumps(dict(own)), now, provider, key)
            )
        values.sort(key=_last)
        return self._changes(
            "UPDATE requests SET state = ?1, "
            "attempts = attempts + (?1 = 'submitted' AND ?2 IS NOT NULL AND shard_id IS NOT ?2), "
            "shard_id = COALESCE(?2, shard_id), error = ?3, updated_at = ?4 "
            "WHERE provider = ?5 AND key = ?6",
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
        while iterating.
        """
        _check_state(state, REQUEST_STATES, "request")
        remaining = limit
        last_rowid = 0
        where = "provider = ? AND state = ? AND rowid > ?"
        if model is not None:
            where += " AND model = ?"
        while remaining is None or remaining > 0:
            page = _PAGE if remaining is None else min(_PAGE, remaining)
            params: list[Any] = [provider, state, last_rowid]
            if model is not None:
                params.append(model)
            params.append(page)
            rows = self._read(
                f"SELECT rowid, {_REQUEST_COLUMNS} FROM requests WHERE {where} "
                "ORDER BY rowid LIMIT ?",
                params,
            )
            for row in rows:
                yield _request_from_row(row[1:])
            if len(rows) < page:
                return
            last_rowid = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)

    def requests_of_shard(self, shard_id: str) -> list[JournalRequest]:
        """The requests last submitted in ``shard_id``, in journal order."""
        rows = self._read(
            f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE shard_id = ? ORDER BY rowid",
            (shard_id,),
        )
        return [_request_from_row(r) for r in rows]

    def shard_keys(self, shard_id: str, state: str | None = None) -> list[str]:
        """The keys of the requests last submitted in ``shard_id`` (only those in ``state``).

        The light form of :meth:`requests_of_shard` for finding what a batch
        left unanswered: it reads neither bodies nor errors.
        """
        if state is None:
            rows = self._read(
                "SELECT key FROM requests WHERE shard_id = ? ORDER BY rowid", (shard_id,)
            )
        else:
            _check_state(state, REQUEST_STATES, "request")
            rows = self._read(
                "SELECT key FROM requests WHERE shard_id = ? AND state = ? ORDER BY rowid",
                (shard_id, state),
            )
        return [row[0] for row in rows]

    def get_requests(self, provider: str, keys: Iterable[str]) -> dict[str, JournalRequest]:
        """The journaled requests among ``keys``, by key."""
        wanted = sorted(set(keys))
        found: dict[str, JournalRequest] = {}
        with self._lock:
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                sql = (
                    f"SELECT {_REQUEST_COLUMNS} FROM requests "
                    f"WHERE provider = ? AND key IN ({marks})"
                )
                for row in self._read(sql, (provider, *chunk)):
                    found[row[0]] = _request_from_row(row)
        return found

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
        sql = (
            "UPDATE requests SET state = 'succeeded', error = NULL, updated_at = ? "
            "WHERE provider = ? AND shard_id = ? AND state = 'submitted'"
        )
        if check_results:
            sql += (
                " AND EXISTS (SELECT 1 FROM results WHERE results.provider = "
                "requests.provider AND results.key = requests.key)"
            )
        return self._changes(sql, [(now, provider, shard_id)])

    def result_keys(self, provider: str, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` that have a cached result (no result is read)."""
        sql = "SELECT key FROM results WHERE provider = ? AND key IN ({marks})"
        return {row[0] for row in self._read_for_keys(sql, provider, keys)}

    def request_states(self, provider: str, keys: Iterable[str]) -> dict[str, str]:
        """The state of each journaled request among ``keys`` (unknown keys are absent)."""
        sql = "SELECT key, state FROM requests WHERE provider = ? AND key IN ({marks})"
        return dict(self._read_for_keys(sql, provider, keys))

    def request_places(
        self, provider: str, keys: Iterable[str]
    ) -> dict[str, tuple[str, str | None]]:
        """The state and shard of each journaled request among ``keys`` (unknown: absent)."""
        sql = "SELECT key, state, shard_id FROM requests WHERE provider = ? AND key IN ({marks})"
        rows = self._read_for_keys(sql, provider, keys)
        return {key: (state, shard) for key, state, shard in rows}

    def has_open_requests(self, provider: str) -> bool:
        """Whether any journaled request of ``provider`` is queued or submitted.

        One probe of the state index, however long the journal.
        """
        rows = self._read(
            "SELECT EXISTS (SELECT 1 FROM requests WHERE provider = ? AND state = 'queued') "
            "OR EXISTS (SELECT 1 FROM requests WHERE provider = ? AND state = 'submitted')",
            (provider, provider),
        )
        return bool(rows[0][0])

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

    # --- shards (the batch journal) ----------------------------------------

    def add_shard(self, shard: Shard) -> Shard:
        """Journal a new shard (durably); returns it as stored.

        Raises:
            ValueError: a shard with that id, or that batch id, exists.
        """
        _check_state(shard.state, SHARD_STATES, "shard")
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
            None if stored.counts is None else _dumps(stored.counts),
            None if stored.raw is None else _dumps(stored.raw),
            stored.error,
            stored.created_at,
            stored.updated_at,
        )
        marks = ",".join("?" * len(values))
        try:
            self._write(
                lambda: self._conn.execute(
                    f"INSERT INTO shards ({_SHARD_COLUMNS}) VALUES ({marks})", values
                ),
                durable=True,
            )
        except sqlite3.IntegrityError as exc:
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
            _check_state(fields["state"], SHARD_STATES, "shard")
        columns = sorted(fields)
        values: list[Any] = []
        for name in columns:
            value = fields[name]
            if name in _SHARD_JSON and value is not None:
                value = _dumps(value)
            elif name == "path" and value is not None:
                value = str(value)
            values.append(value)
        assignments = ", ".join(f"{name} = ?" for name in [*columns, "updated_at"])

        def run() -> Shard:
            cursor = self._conn.execute(
                f"UPDATE shards SET {assignments} WHERE shard_id = ?",
                (*values, time.time(), shard_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(shard_id)
            row = self._conn.execute(
                f"SELECT {_SHARD_COLUMNS} FROM shards WHERE shard_id = ?", (shard_id,)
            ).fetchone()
            return _shard_from_row(row)

        try:
            return self._write(run, durable=True)
        except sqlite3.IntegrityError as exc:
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
        note = _dumps({"type": "BatchForgotten", "message": reason, "retryable": True})

        def run() -> tuple[int, int]:
            row = self._conn.execute(
                "SELECT provider, state FROM shards WHERE shard_id = ?", (shard_id,)
            ).fetchone()
            if row is None:
                raise KeyError(shard_id)
            provider, state = row
            if state not in UNFINISHED_SHARD_STATES:
                raise ValueError(f"shard {shard_id} is {state}: there is nothing to give up")
            answered = self.mark_shard_succeeded(provider, shard_id)
            queued = self._conn.execute(
                "UPDATE requests SET state = 'queued', error = ?, updated_at = ? "
                "WHERE provider = ? AND shard_id = ? AND state IN ('submitted', 'queued')",
                (note, now, provider, shard_id),
            ).rowcount
            self._conn.execute(
                "UPDATE shards SET state = 'failed', error = ?, updated_at = ? WHERE shard_id = ?",
                (reason, now, shard_id),
            )
            return answered, queued

        return self._write(run, durable=True)

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
                _check_state(state, SHARD_STATES, "shard")
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

    # --- documents -----------------------------------------------------------

    def put_document(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        """Store (or replace) one JSON document."""
        self.put_documents(namespace, [(key, value)])

    def put_documents(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Store (or replace) many JSON documents in one transaction; returns how many."""
        now = time.time()
        rows = [(namespace, key, _dumps(dict(value)), now) for key, value in items]
        rows.sort(key=_second)
        return self._changes(
            "INSERT OR REPLACE INTO documents (namespace, key, value, updated_at) VALUES (?,?,?,?)",
            rows,
        )

    def get_document(self, namespace: str, key: str) -> dict[str, Any] | None:
        """One document, if it is stored."""
        rows = self._read(
            "SELECT value FROM documents WHERE namespace = ? AND key = ?", (namespace, key)
        )
        if not rows:
            return None
        value: dict[str, Any] = orjson.loads(rows[0][0])
        return value

    def iter_documents(self, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every document of a namespace as ``(key, value)``, in key order."""
        last: str | None = None
        while True:
            if last is None:
                sql = "SELECT key, value FROM documents WHERE namespace = ? ORDER BY key LIMIT ?"
                params: tuple[Any, ...] = (namespace, _PAGE)
            else:
                sql = (
                    "SELECT key, value FROM documents WHERE namespace = ? AND key > ? "
                    "ORDER BY key LIMIT ?"
                )
                params = (namespace, last, _PAGE)
            rows = self._read(sql, params)
            for key, value in rows:
                yield key, orjson.loads(value)
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def delete_documents(self, namespace: str, keys: Iterable[str]) -> int:
        """Remove documents of a namespace; returns how many there were."""
        rows = [(namespace, key) for key in sorted(set(keys))]
        return self._changes("DELETE FROM documents WHERE namespace = ? AND key = ?", rows)

    def has_documents(self, namespace: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` have a document in ``namespace``."""
        sql = "SELECT key FROM documents WHERE namespace = ? AND key IN ({marks})"
        return {row[0] for row in self._read_for_keys(sql, namespace, keys)}
