"""The database engine under the store: SQLite, and the only module that knows it.

It opens the file, migrates its schema, runs transactions and savepoints,
retries while another process holds the write lock, and translates what
SQLite refuses into :class:`~providers.errors.StoreWriteError`. The table
modules speak to it through :class:`~plugins.store.backend.Backend`.

Durability and concurrency
--------------------------
The database runs in WAL mode with ``synchronous=NORMAL``: a commit survives
the process being killed at any moment, and only an OS crash or power loss
can roll back the newest commits. That is the right price for the cache and
ledger, which are written at thousands of rows a second. The batch journal
(:meth:`~plugins.store.Store.add_shard`,
:meth:`~plugins.store.Store.update_shard`, and any
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
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final, Self, TypeVar

from plugins.lease import BatchLease, lease_held_here
from plugins.retry import retry_while_busy
from plugins.store.backend import Backend, ConstraintError
from plugins.store.keys import in_order, key_cell
from plugins.store.migrations import SCHEMA_VERSION, check_readable, pending_statements
from providers.errors import ConfigError, StoreBusyError, StoreWriteError, os_error_reason

__all__ = ["SQLiteEngine"]

T = TypeVar("T")

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


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _busy_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying another connection holds the lock."""
    return isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


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


class SQLiteEngine(Backend):
    """The store's engine: one SQLite file, in WAL mode, shared by threads and processes.

    All methods are synchronous and quick; they may be called from the event
    loop thread. One instance may be shared by threads (calls are
    serialized); several processes may open the same file.

    Args:
        path: the database file (its directory is created), or ``":memory:"``.
        busy_timeout: seconds SQLite itself waits for another writer's lock.
        lock_timeout: seconds a write keeps retrying (with backoff) before a
            ``database is locked`` error is let through.

    Raises:
        ConfigError: the file cannot be opened, is not a lexibatch store, or
            was written by a newer lexibatch.
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
            what = "it is a folder" if Path(self.path).is_dir() else str(exc)
            raise ConfigError(
                f"{self.path or '(empty)'}: cannot open the store: {what} — give --db (or "
                "connector.db) the path of a store file, in a folder this process may write",
                key="connector.db",
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
        # Temporary B-trees (sorts, GROUP BY, DISTINCT) stay in the page cache
        # while they fit and spill to temporary files beyond it, as SQLite
        # does by default. Held in memory instead, the cost report that ends
        # every run sorts each call of the run there: the process grows by
        # about 120 bytes a call, more than a gigabyte at the end of a
        # ten-million-call job, and as much for `lexibatch cost` or for a
        # migration that reorders a table.
        conn.execute("PRAGMA temp_store = FILE")
        # 64 MiB of page cache at most (taken as pages are read): a commit of
        # tens of thousands of answers lands on as many random leaves of the
        # key indexes of the cache and of the journal (about 44 bytes a
        # request each); once they outgrow the cache, SQLite spills pages to
        # the WAL mid-transaction and reads them back, and a batch run slows
        # down as the store grows (past some 700,000 requests).
        conn.execute("PRAGMA cache_size = -65536")
        # The migration to schema 6 stores request keys as plugins.store.keys does.
        conn.create_function("lb_key", 1, key_cell, deterministic=True)
        version = self.schema_version()
        if version != SCHEMA_VERSION:
            check_readable(version, self.path)
            self._migrate_alone(version)
        if not self._memory:
            # Checkpoints run on their own thread (see _Checkpointer); the
            # in-line one stays only as a backstop should the WAL outgrow it.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_BACKSTOP_CHECKPOINT_PAGES}")
            self._checkpointer = _Checkpointer(self.path)

    def _migrate_alone(self, version: int) -> None:
        """Bring the store to :data:`SCHEMA_VERSION`, unless another process's batch run holds it.

        A process of an older lexibatch goes on writing in the layout it
        knows, and a newer layout may take those writes with another
        meaning: version 8 would have taken a version-7 answer under
        another key's id. The batch lease is held while the store is
        upgraded, so a batch run of any version (the long-lived writer)
        keeps its store until it ends; a process of this version finding
        the store upgraded under it stops at its next write (see :meth:`_begin`).
        """
        if self._memory or version == 0 or lease_held_here(self.path):
            # A new store (nobody wrote in an older layout), or this process runs its batches.
            self._write(self._migrate)
            return
        lease = BatchLease(self.path)
        try:
            lease.acquire()
        except StoreBusyError:
            # Held by a batch run, or by another process of this version
            # upgrading the store: the write lock, which the upgrade holds
            # until it commits, tells them apart.
            if self._write(self.schema_version) == SCHEMA_VERSION:
                return
            raise StoreBusyError(
                f"the store {self.path} must be upgraded (schema version {version} to "
                f"{SCHEMA_VERSION}) for this lexibatch, and another lexibatch process (an older "
                "version?) is running its batches — let that run finish or stop it, then run "
                "this command again"
            ) from None
        try:
            self._write(self._migrate)
        finally:
            lease.release()

    def _migrate(self) -> None:
        # Read again under the write lock: another process may have migrated meanwhile.
        for statement in pending_statements(self.schema_version(), self.path):
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

    def __enter__(self) -> Self:
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
    def in_transaction(self, *, durable: bool = False) -> Iterator[Self]:
        """Group several calls into one atomic commit.

        Everything written inside the block commits together, or, if the
        block raises, none of it does. Nested blocks are savepoints: an
        exception caught inside the outer block undoes only the inner one.

        The block holds the store for its thread: do not ``await`` inside it.

        Args:
            durable: commit with ``synchronous=FULL`` — use it for journal
                writes that precede a side effect at the provider. A durable
                call (e.g. :meth:`~plugins.store.Store.update_shard`) inside a
                block that is not makes the commit durable too.
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
            try:
                self._check_version()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except BaseException:
            if durable:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            raise
        self._depth = 1
        self._durable_tx = durable
        self._sync_after_commit = False

    def _check_version(self) -> None:
        """Inside a write transaction: raise if a newer lexibatch upgraded the store meanwhile.

        Read under the write lock, which an upgrade needs too: the newer
        version would read this process's writes in its own layout (see
        :meth:`_migrate_alone`).
        """
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreWriteError(
                f"the store {self.path} was upgraded to schema version {version} by a newer "
                f"lexibatch while this one ({SCHEMA_VERSION}) had it open: this process writes "
                "no more to it — run the newer lexibatch; what was stored before is kept"
            )

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
        """Run ``fn``, retrying while another connection holds the lock (the one retry policy)."""
        return retry_while_busy(fn, busy=_busy_error, give_up_after=self._lock_timeout)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """SQLite's write failures (disk full, read-only or damaged file) as one typed error.

        A broken constraint becomes :class:`~plugins.store.backend.ConstraintError`,
        for the table modules to say what it means.
        """
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise ConstraintError(str(exc)) from exc
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
            elif exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY:
                advice = (
                    "the file (or its folder) is read-only — make it writable or set "
                    "connector.db to a writable file"
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

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def _fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, params).fetchone()

    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        before = self._conn.total_changes
        self._conn.executemany(sql, rows)
        return self._conn.total_changes - before

    def _read_for_keys(self, sql: str, scope: str | None, keys: Iterable[bytes | str]) -> list[Any]:
        """The rows of ``sql`` for every key of ``keys``.

        ``sql`` takes the scope (provider or namespace; ``None``: none) and
        then the keys in an ``IN ({marks})`` list; the keys are sent in
        sorted chunks under SQLite's bound-parameter limit.
        """
        rows: list[Any] = []
        scoped = () if scope is None else (scope,)
        with self._lock:
            for chunk in _chunks(in_order(set(keys))):
                marks = ",".join("?" * len(chunk))
                rows.extend(self._read(sql.format(marks=marks), (*scoped, *chunk)))
        return rows

    def _changes(self, sql: str, rows: list[tuple[Any, ...]], *, durable: bool = False) -> int:
        if not rows:
            return 0

        return self._write(lambda: self._execute_many(sql, rows), durable=durable)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read-only statement (for reports and checks that read the store)."""
        return self._read(sql, params)
