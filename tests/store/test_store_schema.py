"""Opening a store: file creation, WAL mode, schema migrations, bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from plugins.store import MIGRATIONS, SCHEMA_VERSION, Store, StoredResult
from providers.errors import ConfigError
from providers.types import Usage

TABLES = {"results", "calls", "requests", "shards", "schemas", "documents"}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def test_open_creates_directory_file_and_schema(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with Store(db_path) as store:
        assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert db_path.is_file()
    assert _tables(db_path) >= TABLES
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopen_is_idempotent_and_keeps_data(db_path: Path) -> None:
    with Store(db_path) as store:
        store.put_results("openai", [StoredResult("k1", "m", None, "immediate", "{}", Usage(1, 2))])
    for _ in range(3):
        with Store(db_path) as store:
            assert store.schema_version() == SCHEMA_VERSION
            assert store.count_results() == 1
            assert store.integrity_check() == "ok"


def test_migrates_an_existing_empty_file(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    with Store(db_path) as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert _tables(db_path) >= TABLES


def test_newer_schema_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer than this lexibatch") as info:
        Store(db_path)
    assert info.value.key == "connector.db"


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ConfigError, match="not a usable lexibatch store") as info:
        Store(path)
    assert info.value.key == "connector.db"


def test_memory_store_works_without_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store(":memory:") as store:
        assert store.schema_version() == SCHEMA_VERSION
        store.put_document("ns", "a", {"x": 1})
        assert store.get_document("ns", "a") == {"x": 1}
    assert list(tmp_path.iterdir()) == []


def test_close_is_idempotent(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()


def test_a_version_1_store_is_migrated_and_keeps_its_journal(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO requests (provider, key, model, task, body, state, created_at, "
            "updated_at) VALUES ('openai', 'k1', 'm', 't', ?, 'queued', 0, 0)",
            (b'{"c":{"model":"m","messages":[]},"t":"t","m":null}',),
        )
    with Store(db_path) as store:
        assert store.schema_version() == SCHEMA_VERSION >= 2
        assert store.get_requests("openai", ["k1"])["k1"].body.startswith(b'{"c":')
        assert store.add_schemas({"s-1": b'{"name":"x","schema":{}}'}) == 1
        assert store.get_schemas(["s-1", "s-2"]) == {"s-1": b'{"name":"x","schema":{}}'}
    assert "schemas" in _tables(db_path)
