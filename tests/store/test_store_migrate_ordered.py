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

from plugins.store import MIGRATIONS, Store
from plugins.store.keys import key_cell
from tests.store.test_store_migrate_compact import check_migrated_store, make_rows
from tests.store.test_store_migrate_keys import check_keys_shared

# Tables whose shape version 7 left as version 6 had it.
_SAME = ("calls", "retired_results", "batches", "runs", "shards", "schemas", "documents", "claims")
_RESULT_COLUMNS = (
    "provider, key, model, task, mode, text, input_tokens, output_tokens, cached_tokens, "
    "reasoning_tokens, cache_creation_tokens, cache_creation_1h_tokens, cost_usd, request_id, "
    "batch, created_at"
)


def _rewrite_as_version_6(db: Path) -> None:
    """Replace the store ``db`` by a store of schema version 6 holding the same rows."""
    made = db.with_name("made.db")
    db.rename(made)
    conn = sqlite3.connect(db)
    # Migration 6 converts the (here absent) rows of version 5 with this function.
    conn.create_function("lb_key", 1, key_cell, deterministic=True)
    for statements in MIGRATIONS[:6]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    conn.execute("ATTACH DATABASE ? AS made", (str(made),))
    for table in _SAME:
        conn.execute(f"INSERT INTO {table} SELECT * FROM made.{table}")
    conn.execute(
        f"INSERT INTO results ({_RESULT_COLUMNS}) SELECT {_RESULT_COLUMNS} FROM made.results"
    )
    conn.execute(
        "INSERT INTO requests (provider, key, model, task, state, body, shard_id, attempts, "
        "error, created_at, updated_at) SELECT r.provider, r.key, r.model, r.task, r.state, "
        "b.body, r.shard_id, r.attempts, r.error, r.created_at, r.updated_at "
        "FROM made.requests r LEFT JOIN made.request_bodies b ON b.id = r.id"
    )
    conn.commit()
    conn.execute("DETACH DATABASE made")
    conn.close()


async def test_a_version_6_store_resumes_serves_and_reports_the_same_after_migration(
    make_settings: Any, tmp_path: Path
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=1.5)) as emu:
        settings = make_settings(emu)
        db = Path(settings.connector.db)
        bodies, retired, claimed = await make_rows(settings)
        _rewrite_as_version_6(db)
        with sqlite3.connect(db) as conn:
            # Version 6 kept the bodies of the eight unfinished requests in their rows.
            kept = conn.execute("SELECT COUNT(*) FROM requests WHERE body IS NOT NULL")
            assert kept.fetchone()[0] == 8
        await check_migrated_store(emu, settings, 6, bodies, retired, claimed, tmp_path)

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
