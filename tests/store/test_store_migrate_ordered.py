"""A store written by schema version 6 keeps working once its rows are kept in written order.

Version 6 keyed the journal and the cache by their request keys and kept a
request's body in its journal row; version 7 appends both tables in the
order rows are written, finds keys through unique indexes and keeps bodies
apart until their request succeeds. The old store holds the rows of real
runs (see :func:`~tests.store.test_store_migrate_compact.make_rows`), in
version 6's tables made by its own migrations.
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
from tests.store.test_store_migrate_keys import check_keys_shared

# Tables whose shape version 7 left as version 6 had it.
_SAME = ("calls", "retired_results", "batches", "runs", "shards", "schemas", "documents", "claims")


def _rewrite_as_version_6(db: Path) -> None:
    """Replace the store ``db`` by a store of schema version 6 holding the same rows."""
    conn = open_as_version(db, 6, _SAME)
    conn.execute(
        f"INSERT INTO results ({OLD_RESULT_COLUMNS}) SELECT {MADE_RESULT_COLUMNS} FROM made.results"
    )
    conn.execute(
        "INSERT INTO requests (provider, key, model, task, state, body, shard_id, attempts, "
        "error, created_at, updated_at) SELECT r.provider, r.key, r.model, r.task, r.state, "
        "b.body, r.shard_id, r.submissions, r.error, r.created_at, r.updated_at "
        "FROM made.requests r LEFT JOIN made.request_bodies b ON b.id = r.id"
    )
    close_old(conn)


def _bodies_kept_in_rows(conn: sqlite3.Connection) -> None:
    # Version 6 kept the bodies of the eight unfinished requests in their rows.
    kept = conn.execute("SELECT COUNT(*) FROM requests WHERE body IS NOT NULL")
    assert kept.fetchone()[0] == 8


async def test_a_version_6_store_resumes_serves_and_reports_the_same_after_migration(
    make_settings: Any, tmp_path: Path
) -> None:
    db, bodies, _ = await migrate_old_store(
        make_settings, tmp_path, 6, lambda db, _: _rewrite_as_version_6(db), _bodies_kept_in_rows
    )
    with Store(db) as store:
        assert store.integrity_check() == "ok"
        rows = store.query("SELECT id, created_at, state FROM requests ORDER BY id")
        assert [r[1] for r in rows] == sorted(r[1] for r in rows)
        # Only the request the user's cancel ended is unfinished: only its body is kept.
        (failed,) = [r[0] for r in rows if r[2] == "failed"]
        kept_bodies = store.query("SELECT id, body FROM request_bodies")
        assert [(i, bytes(b)) for i, b in kept_bodies] == [
            (failed, next(b for b in bodies.values() if b"cancelled 0" in b))
        ]
        check_keys_shared(store)
