"""Atomic grouping, savepoints, durability settings and waiting for another writer."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from plugins.store import CallRecord, JournalRequest, Shard, Store, StoredResult
from providers.errors import StoreWriteError
from providers.types import Usage


class Boom(Exception):
    pass


def _paid(store: Store, key: str) -> None:
    """What a strategy does when a paid result arrives."""
    store.put_results("openai", [StoredResult(key, "m", "t", "batch", "{}", Usage(1, 1), 0.1)])
    store.set_request_state("openai", [key], "succeeded")
    store.record_calls([CallRecord("openai", "m", "t", "batch", key, Usage(1, 1), 0.1)])


def test_exception_inside_in_transaction_rolls_back_everything(store: Store) -> None:
    store.add_requests("openai", [JournalRequest("k", "m", "t", b"{}")])
    with pytest.raises(Boom), store.in_transaction():
        _paid(store, "k")
        store.add_shard(Shard("s1", "openai", "m"))
        store.put_document("runs", "r", {"x": 1})
        raise Boom
    assert store.get_result("openai", "k") is None
    assert store.request_states("openai", ["k"]) == {"k": "queued"}
    assert store.cost_report() == []
    assert store.get_shard("s1") is None
    assert store.get_document("runs", "r") is None


def test_in_transaction_commits_together(db_path: Path, store: Store) -> None:
    store.add_requests("openai", [JournalRequest("k", "m", "t", b"{}")])
    with store.in_transaction():
        _paid(store, "k")
        # Another connection sees nothing until the block ends.
        with sqlite3.connect(db_path) as other:
            assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
        assert other.execute("SELECT state FROM requests").fetchone()[0] == "succeeded"
        assert other.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1


def test_nested_block_is_a_savepoint(store: Store) -> None:
    with store.in_transaction():
        store.put_document("ns", "outer", {})
        with pytest.raises(Boom), store.in_transaction():
            store.put_document("ns", "inner", {})
            raise Boom
        store.put_document("ns", "after", {})
    assert store.has_documents("ns", ["outer", "inner", "after"]) == {"outer", "after"}


def test_failing_method_inside_a_block_undoes_only_itself(store: Store) -> None:
    store.add_shard(Shard("s1", "openai", "m", batch_id="b1"))
    store.add_shard(Shard("s2", "openai", "m"))
    with store.in_transaction():
        store.put_document("ns", "kept", {})
        with pytest.raises(ValueError):
            store.update_shard("s2", batch_id="b1")
    assert store.has_documents("ns", ["kept"]) == {"kept"}
    assert store.get_shard("s2").batch_id is None  # type: ignore[union-attr]


def _synchronous(store: Store) -> int:
    return int(store._conn.execute("PRAGMA synchronous").fetchone()[0])


def test_durable_block_commits_with_full_sync_and_restores_normal(store: Store) -> None:
    normal, full = 1, 2
    assert _synchronous(store) == normal
    seen: list[int] = []
    original_begin = store._begin

    def spy(durable: bool) -> None:
        original_begin(durable)
        seen.append(_synchronous(store))

    store._begin = spy  # type: ignore[method-assign]
    with store.in_transaction(durable=True):
        store.put_document("ns", "a", {})
    # Every journal write that precedes a side effect at the provider (an
    # upload, a create, a cancel, a resend) must survive a power loss.
    store.add_shard(Shard("s1", "openai", "m"))
    store.update_shard("s1", state="uploaded", input_file_id="file-1")
    store.update_shard("s1", state="submitting")
    store.mark_cancelled_by_user("s1")
    store.forget_shard("s1", "its batch is gone")
    store.put_document("ns", "b", {})
    assert seen == [full, full, full, full, full, full, normal]
    assert _synchronous(store) == normal


def test_durable_write_inside_plain_block_syncs_the_wal(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(store, "_fsync_wal", lambda: synced.append(1))
    with store.in_transaction():
        store.put_document("ns", "a", {})
    assert synced == []
    with store.in_transaction():
        store.add_shard(Shard("s1", "openai", "m"))
        store.set_request_state("openai", ["x"], "submitted", shard_id="s1")
    assert synced == [1]


def test_write_waits_for_another_writer_past_the_busy_timeout(db_path: Path) -> None:
    """A writer holding the lock longer than busy_timeout: the store retries, no error escapes."""
    Store(db_path).close()
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO documents VALUES ('ns', 'holder', '{}', 0)")
    release = threading.Timer(0.4, lambda: holder.execute("COMMIT"))
    with Store(db_path, busy_timeout=0.02, lock_timeout=10.0) as store:
        release.start()
        started = time.monotonic()
        store.put_document("ns", "waiter", {})
        waited = time.monotonic() - started
        release.join()
        assert waited >= 0.3
        assert store.has_documents("ns", ["holder", "waiter"]) == {"holder", "waiter"}
    holder.close()


def test_lock_timeout_lets_the_error_through_eventually(db_path: Path) -> None:
    Store(db_path).close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Store(db_path, busy_timeout=0.01, lock_timeout=0.2) as store:
            with pytest.raises(StoreWriteError, match=r"locked.*held its write lock") as info:
                store.put_document("ns", "a", {})
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            # The store is still usable once the lock is free.
            holder.execute("ROLLBACK")
            store.put_document("ns", "a", {})
            assert store.get_document("ns", "a") == {}
    finally:
        holder.close()


def test_store_is_usable_from_threads(store: Store) -> None:
    def work(n: int) -> None:
        for i in range(50):
            with store.in_transaction():
                store.put_document("t", f"{n}-{i}", {"n": n})
                store.add_requests("openai", [JournalRequest(f"{n}-{i}", "m", None, b"{}")])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(store.iter_documents("t"))) == 200
    assert store.count_requests("openai") == {"queued": 200}


def _fill_up(store: Store, spare_pages: int = 1) -> None:
    """Cap the file a few pages above its size: SQLite then fails as on a full disk."""
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + spare_pages}")


def test_a_full_disk_is_one_typed_error_and_keeps_what_was_stored(store: Store) -> None:
    store.put_document("ns", "kept", {"v": 1})
    _fill_up(store)
    big = [(f"k{i}", {"text": "x" * 2000}) for i in range(50)]
    with pytest.raises(StoreWriteError, match=r"disk is full.*free disk space") as info:
        store.put_documents("ns", big)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    # SQLite rolls the whole transaction back on a full disk: the error says so, not the savepoint.
    with pytest.raises(StoreWriteError, match="disk is full"), store.in_transaction():
        store.put_documents("ns", big)
    assert store.get_document("ns", "kept") == {"v": 1}
    assert store.get_document("ns", "k0") is None
    store._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert store.put_documents("ns", big) == 50


def test_a_bug_in_a_statement_is_not_reported_as_a_full_disk(store: Store) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store._changes("INSERT INTO nowhere VALUES (?)", [(1,)])


def test_writing_on_after_sqlite_rolled_the_block_back_is_refused(store: Store) -> None:
    _fill_up(store, spare_pages=0)
    big = [(f"k{i}", {"text": "x" * 2000}) for i in range(50)]
    with pytest.raises(StoreWriteError, match="rolled back"), store.in_transaction():
        store.put_document("ns", "before", {"v": 1})
        with pytest.raises(StoreWriteError, match="disk is full"):
            store.put_documents("ns", big)  # SQLite rolls the whole block back
        # Caught, and the block goes on: this write must not commit on its own.
        store.put_document("ns", "after", {"v": 2})
    assert store.get_document("ns", "before") is None
    assert store.get_document("ns", "after") is None
    store._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    with store.in_transaction():
        store.put_document("ns", "after", {"v": 2})
    assert store.get_document("ns", "after") == {"v": 2}
