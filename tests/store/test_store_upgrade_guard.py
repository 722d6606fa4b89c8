"""A store is upgraded only when no older process writes to it in the layout it knows.

A process of an older lexibatch keeps writing the rows it knows how to
write, and a newer schema may take them with another meaning: schema 8
would file a schema-7 answer under another key's id. So an old store is
not upgraded while a batch run (the process that lives for days) holds its
lease, and a process that finds its store upgraded by a newer lexibatch
stops at its next write. Versions from before that check (schemas 7 and 8)
fail at their next write too: schema 9 renamed a column each of their
writes names.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.lease import runner_elsewhere
from plugins.store import Store, StoredResult
from plugins.store.migrations import SCHEMA_VERSION
from providers.errors import ConfigError, StoreBusyError, StoreWriteError
from providers.types import Usage
from tests.store.test_store_migrate_compact import old_schema
from tests.support.emulated_run import ROOT


def _result(key: str) -> StoredResult:
    return StoredResult(key, "gpt-4o-mini", "define", "batch", '{"a": 1}', Usage(10, 5), 0.001)


def _old_store(db: Path, version: int) -> None:
    conn = sqlite3.connect(db)
    old_schema(conn, version)
    conn.commit()
    conn.close()


def _check_upgraded(db: Path) -> None:
    """The store ``db`` opens at this version and takes an answer."""
    store = Store(db)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.put_results("openai", [_result("k1")]) == 1
    finally:
        store.close()


def _version(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


@pytest.fixture
def batch_run_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """The path of a store whose batch lease another process holds (until the test ends)."""
    db = tmp_path / "lexibatch.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from plugins.lease import BatchLease; "
         f"lease = BatchLease({str(db)!r}); lease.acquire(); print('held', flush=True); "
         "sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield db
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def test_an_old_store_is_not_upgraded_while_another_process_runs_its_batches(
    batch_run_elsewhere: Path,
) -> None:
    db = batch_run_elsewhere
    _old_store(db, SCHEMA_VERSION - 1)
    with pytest.raises(StoreBusyError) as refused:
        Store(db)
    message = str(refused.value)
    assert f"must be upgraded (schema version {SCHEMA_VERSION - 1} to {SCHEMA_VERSION})" in message
    assert "let that run finish or stop it" in message
    assert "\n" not in message
    # Left as the running process knows it.
    assert _version(db) == SCHEMA_VERSION - 1


def test_a_current_or_new_store_opens_whatever_runs_its_batches(
    batch_run_elsewhere: Path,
) -> None:
    # Nothing to upgrade: a second process of this version reads and writes as usual.
    Store(batch_run_elsewhere).close()
    store = Store(batch_run_elsewhere)
    try:
        assert store.put_results("openai", [_result("k1")]) == 1
    finally:
        store.close()
    assert _version(batch_run_elsewhere) == SCHEMA_VERSION


def test_a_second_opener_of_this_version_waits_for_the_upgrade_under_way(
    tmp_path: Path,
) -> None:
    db = tmp_path / "lexibatch.db"
    _old_store(db, SCHEMA_VERSION - 1)
    # Another process of this version upgrades the store and holds its lease
    # (and the write lock) a moment longer than the statements take.
    upgrading = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from plugins.store import Store, engine\n"
         "upgrade = engine.SQLiteEngine._migrate\n"
         "def slow(self):\n"
         "    upgrade(self); print('upgrading', flush=True); time.sleep(2)\n"
         "engine.SQLiteEngine._migrate = slow\n"
         f"Store({str(db)!r}).close()\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert upgrading.stdout is not None
        assert upgrading.stdout.readline().strip() == "upgrading"
        # Refused by the lease, but the store is upgraded by the time the write lock is had.
        _check_upgraded(db)
    finally:
        assert upgrading.wait(timeout=30) == 0


def test_a_failure_while_checking_the_version_leaves_no_transaction_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.store.engine import SQLiteEngine

    store = Store(tmp_path / "lexibatch.db")
    try:
        check = SQLiteEngine._check_version

        def interrupted(self: SQLiteEngine) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(SQLiteEngine, "_check_version", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.put_results("openai", [_result("k1")])
        with pytest.raises(KeyboardInterrupt), store.in_transaction(durable=True):
            pass
        monkeypatch.setattr(SQLiteEngine, "_check_version", check)
        # Rolled back: the next write starts its own transaction, and another
        # connection is not locked out.
        assert store.put_results("openai", [_result("k2")]) == 1
        with sqlite3.connect(tmp_path / "lexibatch.db", timeout=1) as other:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        assert store.query("PRAGMA synchronous")[0][0] == 1  # NORMAL again after a durable try
    finally:
        store.close()


def test_an_old_store_is_upgraded_once_no_batch_run_holds_it(tmp_path: Path) -> None:
    db = tmp_path / "lexibatch.db"
    _old_store(db, SCHEMA_VERSION - 1)
    _check_upgraded(db)
    # The lease was only borrowed for the upgrade.
    assert not runner_elsewhere(str(db))


def test_a_process_writes_no_more_once_a_newer_lexibatch_upgraded_its_store(
    tmp_path: Path,
) -> None:
    db = tmp_path / "lexibatch.db"
    store = Store(db)
    try:
        assert store.put_results("openai", [_result("k1")]) == 1
        # A newer lexibatch opens the same file and upgrades it.
        with sqlite3.connect(db) as newer:
            newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(StoreWriteError) as stopped:
            store.put_results("openai", [_result("k2")])
        message = str(stopped.value)
        assert f"upgraded to schema version {SCHEMA_VERSION + 1} by a newer lexibatch" in message
        assert "what was stored before is kept" in message
        with pytest.raises(StoreWriteError), store.in_transaction():
            pass
        # Nothing more was written, and the store is not left in a transaction.
        assert store.query("SELECT COUNT(*) FROM results")[0][0] == 1
        with pytest.raises(StoreWriteError):
            store.put_results("openai", [_result("k3")], journaled=True)
    finally:
        store.close()
    # Opened anew by this version, it is refused as before: it is newer than this one reads.
    with pytest.raises(ConfigError, match="newer than this lexibatch reads"):
        Store(db)


# The writes of the two versions before the check at each write, as they
# wrote them: an answer (schema 7 numbered it on its own; 8 under its key's
# id) and a journal row.
_OLDER_WRITES = {
    "an answer, schema 7": (
        "INSERT OR IGNORE INTO results (provider, key, model, task, mode, text, input_tokens, "
        "output_tokens, cached_tokens, reasoning_tokens, cache_creation_tokens, "
        "cache_creation_1h_tokens, cost_usd, request_id, batch, created_at) "
        "VALUES ('openai', 'k9', 'm', NULL, 'batch', '{}', 1, 1, 0, 0, 0, 0, NULL, NULL, NULL, 0)"
    ),
    "an answer, schema 8": (
        "INSERT OR IGNORE INTO results (id, provider, key, model, task, mode, text, input_tokens, "
        "output_tokens, cached_tokens, reasoning_tokens, cache_creation_tokens, "
        "cache_creation_1h_tokens, cost_usd, request_id, batch, created_at) SELECT id, provider, "
        "key, 'm', NULL, 'batch', '{}', 1, 1, 0, 0, 0, 0, NULL, NULL, NULL, 0 FROM keys"
    ),
    "a journal row, schemas 7 and 8": (
        "INSERT OR IGNORE INTO requests (id, provider, key, model, task, state, shard_id, "
        "attempts, error, created_at, updated_at) "
        "VALUES (99, 'openai', 'k9', 'm', NULL, 'queued', NULL, 0, NULL, 0, 0)"
    ),
}


@pytest.mark.parametrize("write", sorted(_OLDER_WRITES))
def test_an_older_lexibatch_still_running_fails_to_write_into_the_upgraded_store(
    tmp_path: Path, write: str
) -> None:
    db = tmp_path / "lexibatch.db"
    store = Store(db)
    try:
        store.put_results("openai", [_result("k1")])
    finally:
        store.close()
    # A process of an older version opened the store before it was upgraded: its
    # writes fail outright instead of filing rows where this version reads others.
    with sqlite3.connect(db) as older:
        with pytest.raises(sqlite3.OperationalError, match="no column named"):
            older.execute(_OLDER_WRITES[write])
        assert older.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
        assert older.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 0
