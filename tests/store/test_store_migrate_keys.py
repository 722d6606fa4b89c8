"""A store written by schema version 7 keeps working once its keys have one id each.

Version 7 found a request key through two unique indexes, one on the
journal and one on the cache, and numbered the cache's rows on its own;
version 8 gives each key one id in ``keys``, keeps the journal's ids, moves
each cached result under its key's id and drops both indexes. The old store
holds the rows of real runs (see
:func:`~tests.store.test_store_migrate_compact.make_rows`), in version 7's
tables made by its own migrations.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from plugins.store import Store
from tests.store.test_store_migrate_compact import (
    MADE_RESULT_COLUMNS,
    OLD_RESULT_COLUMNS,
    close_old,
    migrate_old_store,
    open_as_version,
)

# Tables whose shape version 8 left as version 7 had it.
_SAME = (
    "calls", "retired_results", "batches", "runs", "shards", "schemas", "documents", "claims",
    "requests", "request_bodies",
)  # fmt: skip


def check_keys_shared(store: Store) -> None:
    """Each journal row and cached result is under its key's id; ``keys_key`` alone indexes keys."""
    for table in ("requests", "results"):
        total, under_key_id = store.query(
            f"SELECT COUNT(*), COUNT(k.id) FROM {table} t LEFT JOIN keys k "
            "ON k.provider = t.provider AND k.key = t.key AND k.id = t.id"
        )[0]
        assert total > 0 and under_key_id == total, table
    indexes = {row[1] for row in store.query("PRAGMA index_list(requests)")}
    assert indexes == {"requests_open", "requests_shard"}
    assert store.query("PRAGMA index_list(results)") == []
    assert [row[1:3] for row in store.query("PRAGMA index_list(keys)")] == [("keys_key", 1)]


def _rewrite_as_version_7(db: Path) -> None:
    """Replace the store ``db`` by a store of schema version 7 holding the same rows.

    The cache's rows are numbered on their own, as version 7 numbered them,
    in the order they were stored (here from 1001): none is under its
    journal row's id.
    """
    conn = open_as_version(db, 7, _SAME)
    conn.execute(
        f"INSERT INTO results (id, {OLD_RESULT_COLUMNS}) SELECT 1000 + ROW_NUMBER() OVER "
        f"(ORDER BY created_at, id), {MADE_RESULT_COLUMNS} FROM made.results "
        "ORDER BY created_at, id"
    )
    close_old(conn)


def _ids_before(conn: sqlite3.Connection) -> tuple[dict[Any, int], list[tuple[int, bytes]]]:
    """The journal's ids by key, and the bodies kept, in the version-7 store."""
    moved = conn.execute(
        "SELECT COUNT(*) FROM results s JOIN requests r "
        "ON r.provider = s.provider AND r.key = s.key WHERE r.id <> s.id"
    ).fetchone()[0]
    # Answers whose journal row has another id: the migration has ids to change.
    assert moved == 4
    bodies = conn.execute("SELECT id, body FROM request_bodies ORDER BY id").fetchall()
    return dict(conn.execute("SELECT key, id FROM requests")), bodies


async def test_a_version_7_store_resumes_serves_and_reports_the_same_after_migration(
    make_settings: Any, tmp_path: Path
) -> None:
    db, _, (old_ids, old_bodies) = await migrate_old_store(
        make_settings, tmp_path, 7, lambda db, _: _rewrite_as_version_7(db), _ids_before
    )
    with Store(db) as store:
        assert store.integrity_check() == "ok"
        check_keys_shared(store)
        # The journal kept its ids, so the bodies of unfinished requests are still theirs.
        ids = dict(store.query("SELECT key, id FROM requests"))
        assert {k: ids[k] for k in old_ids} == old_ids
        kept = store.query("SELECT id, body FROM request_bodies ORDER BY id")
        assert {i for i, _ in kept} <= {i for i, _ in old_bodies}
        assert all(bytes(b) == bytes(dict(old_bodies)[i]) for i, b in kept)
