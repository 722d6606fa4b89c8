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

from plugins.store import MIGRATIONS, Store
from plugins.store.keys import key_cell
from tests.store.test_store_migrate_compact import check_migrated_store, make_rows

# Tables whose shape version 8 left as version 7 had it.
_SAME = (
    "calls", "retired_results", "batches", "runs", "shards", "schemas", "documents", "claims",
    "requests", "request_bodies",
)  # fmt: skip
_RESULT_COLUMNS = (
    "provider, key, model, task, mode, text, input_tokens, output_tokens, cached_tokens, "
    "reasoning_tokens, cache_creation_tokens, cache_creation_1h_tokens, cost_usd, request_id, "
    "batch, created_at"
)


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
    made = db.with_name("made.db")
    db.rename(made)
    conn = sqlite3.connect(db)
    # Migration 6 converts the (here absent) rows of version 5 with this function.
    conn.create_function("lb_key", 1, key_cell, deterministic=True)
    for statements in MIGRATIONS[:7]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 7")
    conn.execute("ATTACH DATABASE ? AS made", (str(made),))
    for table in _SAME:
        conn.execute(f"INSERT INTO {table} SELECT * FROM made.{table}")
    conn.execute(
        f"INSERT INTO results (id, {_RESULT_COLUMNS}) SELECT 1000 + ROW_NUMBER() OVER "
        f"(ORDER BY created_at, id), {_RESULT_COLUMNS} FROM made.results ORDER BY created_at, id"
    )
    conn.commit()
    conn.execute("DETACH DATABASE made")
    conn.close()


async def test_a_version_7_store_resumes_serves_and_reports_the_same_after_migration(
    make_settings: Any, tmp_path: Path
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=1.5)) as emu:
        settings = make_settings(emu)
        db = Path(settings.connector.db)
        bodies, retired, claimed = await make_rows(settings)
        _rewrite_as_version_7(db)
        with sqlite3.connect(db) as conn:
            moved = conn.execute(
                "SELECT COUNT(*) FROM results s JOIN requests r "
                "ON r.provider = s.provider AND r.key = s.key WHERE r.id <> s.id"
            ).fetchone()[0]
            # Answers whose journal row has another id: the migration has ids to change.
            assert moved == 4
            old_ids = dict(conn.execute("SELECT key, id FROM requests"))
            old_bodies = conn.execute("SELECT id, body FROM request_bodies ORDER BY id").fetchall()
        await check_migrated_store(emu, settings, 7, bodies, retired, claimed, tmp_path)

    with Store(db) as store:
        assert store.integrity_check() == "ok"
        check_keys_shared(store)
        # The journal kept its ids, so the bodies of unfinished requests are still theirs.
        ids = dict(store.query("SELECT key, id FROM requests"))
        assert {k: ids[k] for k in old_ids} == old_ids
        kept = store.query("SELECT id, body FROM request_bodies ORDER BY id")
        assert {i for i, _ in kept} <= {i for i, _ in old_bodies}
        assert all(bytes(b) == bytes(dict(old_bodies)[i]) for i, b in kept)
