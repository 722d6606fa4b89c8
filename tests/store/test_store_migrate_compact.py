"""A store written by schema version 5 keeps working once migrated to compact rows.

The old store is made as that version made it: its tables by the first five
migrations (the raw DDL of version 5), its rows in version 5's shape (keys as
text, token counts as JSON, batch and run ids on every row, bodies kept after
success). The rows are those of real runs against the emulator: answers paid
immediately and in a collected batch, a batch still in flight at the provider
when its process died, a request queued and never sent, one the user's cancel
ended, a retired answer, a claim and a document. Opened by this version, the
store must resume the batch in flight without sending it again, serve its
cached answers without paying, send the queued request, and report the same
costs as before.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from plugins.batch.journal import SchemaBook
from plugins.batch.usercancel import cancelled_error, cancelled_keys
from plugins.factory import open_connector
from plugins.store import MIGRATIONS, SCHEMA_VERSION, JournalRequest, Store
from plugins.store.keys import key_cell, key_text
from tests.cli.cli_helpers import lexibatch
from tests.plugins.batch_helpers import Entry, crash_once, gather

PAID = [f"paid {i}" for i in range(3)]
DONE = [f"done {i}" for i in range(4)]
FLIGHT = [f"flight {i}" for i in range(6)]
QUEUED = "queued 0"
CANCELLED = "cancelled 0"

# What version 5's cost report ran (plugins.store.costs at that version).
T = TypeVar("T")

_V5_COST_REPORT = (
    "SELECT mode, task, model, COUNT(*), TOTAL(input_tokens), TOTAL(output_tokens), "
    "TOTAL(cached_tokens), TOTAL(reasoning_tokens), TOTAL(cost_usd), "
    "TOTAL(COALESCE(immediate_cost_usd, CASE WHEN mode = 'immediate' THEN cost_usd END)), "
    "TOTAL(cost_usd IS NULL) FROM calls GROUP BY mode, task, model ORDER BY mode, task, model"
)
_USAGE = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cache_creation_tokens",
    "cache_creation_1h_tokens",
)


def _usage_json(row: sqlite3.Row) -> str:
    counts = {name: row[name] for name in _USAGE[:5]}
    if row["cache_creation_1h_tokens"]:
        counts["cache_creation_1h_tokens"] = row["cache_creation_1h_tokens"]
    return orjson.dumps(counts).decode()


#: The cache's columns in schemas 6 to 8 (an old store's ``results``), and the
#: same columns as this version names them (a store made by real runs).
OLD_RESULT_COLUMNS = (
    "provider, key, model, task, mode, text, input_tokens, output_tokens, cached_tokens, "
    "reasoning_tokens, cache_creation_tokens, cache_creation_1h_tokens, cost_usd, request_id, "
    "batch, created_at"
)
MADE_RESULT_COLUMNS = OLD_RESULT_COLUMNS.replace("request_id", "provider_request_id")


def old_schema(conn: sqlite3.Connection, version: int) -> None:
    """Make the empty store ``conn`` opened a store of schema ``version``."""
    # Migration 6 converts the (here absent) rows of version 5 with this function.
    conn.create_function("lb_key", 1, key_cell, deterministic=True)
    for statements in MIGRATIONS[:version]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")


def open_as_version(db: Path, version: int, same: Iterable[str] = ()) -> sqlite3.Connection:
    """Move the store ``db`` aside and open an empty store of schema ``version`` in its place.

    The old store is attached as ``made``, and the rows of the tables in
    ``same`` (those ``version`` shaped alike) are copied; the caller copies
    the rest, then calls :func:`close_old`.
    """
    made = db.with_name("made.db")
    db.rename(made)
    conn = sqlite3.connect(db)
    old_schema(conn, version)
    conn.execute("ATTACH DATABASE ? AS made", (str(made),))
    for table in same:
        conn.execute(f"INSERT INTO {table} SELECT * FROM made.{table}")
    return conn


def close_old(conn: sqlite3.Connection) -> None:
    """Commit the store :func:`open_as_version` opened, and close it."""
    conn.commit()
    conn.execute("DETACH DATABASE made")
    conn.close()


def _rewrite_as_version_5(db: Path, bodies: dict[str, bytes]) -> None:
    """Replace the store ``db`` by a store of schema version 5 holding the same rows.

    ``bodies``: each request's canonical body (version 5 kept it after success).
    """
    made = db.with_name("made.db")
    db.rename(made)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    for statements in MIGRATIONS[:5]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    conn.execute("ATTACH DATABASE ? AS made", (str(made),))
    batch_of = dict(conn.execute("SELECT id, batch_id FROM made.batches").fetchall())
    run_of = dict(conn.execute("SELECT id, run_id FROM made.runs").fetchall())
    for row in conn.execute("SELECT * FROM made.results").fetchall():
        conn.execute(
            "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (row["provider"], key_text(row["key"]), row["model"], row["task"], row["mode"],
             row["text"], _usage_json(row), row["cost_usd"], row["provider_request_id"],
             batch_of.get(row["batch"]), row["created_at"]),
        )  # fmt: skip
    for row in conn.execute("SELECT * FROM made.retired_results").fetchall():
        conn.execute(
            "INSERT INTO retired_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (row["id"], row["provider"], key_text(row["key"]), row["model"], row["task"],
             row["mode"], row["text"], _usage_json(row), row["cost_usd"],
             row["provider_request_id"], batch_of.get(row["batch"]), row["created_at"],
             row["retired_at"], row["reason"]),
        )  # fmt: skip
    for row in conn.execute("SELECT * FROM made.calls ORDER BY id").fetchall():
        conn.execute(
            "INSERT INTO calls (id, provider, model, task, mode, key, input_tokens, "
            "output_tokens, cached_tokens, reasoning_tokens, cache_creation_tokens, cost_usd, "
            "immediate_cost_usd, batch_id, ts, run) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (row["id"], row["provider"], row["model"], row["task"], row["mode"],
             key_text(row["key"]), *(row[name] for name in _USAGE[:5]), row["cost_usd"],
             row["immediate_cost_usd"], batch_of.get(row["batch"]), row["ts"],
             run_of.get(row["run"])),
        )  # fmt: skip
    for row in conn.execute(
        "SELECT r.*, b.body FROM made.requests r "
        "LEFT JOIN made.request_bodies b ON b.id = r.id ORDER BY r.created_at"
    ).fetchall():
        key = key_text(row["key"])
        conn.execute(
            "INSERT INTO requests (provider, key, model, task, body, state, shard_id, attempts, "
            "error, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (row["provider"], key, row["model"], row["task"], row["body"] or bodies[key],
             row["state"], row["shard_id"] or _shard_of(conn, key), row["submissions"],
             row["error"], row["created_at"], row["updated_at"]),
        )  # fmt: skip
    for table in ("shards", "schemas", "documents"):
        conn.execute(f"INSERT INTO {table} SELECT * FROM made.{table}")
    for row in conn.execute("SELECT * FROM made.claims").fetchall():
        conn.execute(
            "INSERT INTO claims VALUES (?,?,?,?)",
            (row["provider"], key_text(row["key"]), row["owner"], row["expires_at"]),
        )
    conn.commit()
    conn.execute("DETACH DATABASE made")
    conn.close()


def _shard_of(conn: sqlite3.Connection, key: str) -> str | None:
    # Version 5 kept a succeeded request's shard: the collected batch that answered it.
    row = conn.execute(
        "SELECT s.shard_id FROM made.shards s JOIN made.batches b ON b.batch_id = s.batch_id "
        "JOIN made.results r ON r.batch = b.id WHERE r.key = ?",
        (bytes.fromhex(key[3:]),),
    ).fetchone()
    return None if row is None else str(row[0])


async def make_rows(settings: Any) -> tuple[dict[str, bytes], str, str]:
    """Real runs' rows in a store of this version.

    Returns every request's body, the key whose answer was retired and the claimed key.
    """
    immediate = open_connector(settings)
    try:
        assert all(isinstance(r, Entry) for r in await gather(immediate, PAID))
    finally:
        await immediate.aclose()
    batch = open_connector(settings)
    try:
        batch.enable_batch_mode()
        assert all(isinstance(r, Entry) for r in await gather(batch, DONE))
    finally:
        await batch.aclose()
    await crash_once(settings, FLIGHT)  # its batch runs on at the provider
    with Store(settings.connector.db) as store:
        conn = open_connector(settings)
        try:
            requests = {
                p: conn.build_request(p, Entry, task="t")
                for p in [*PAID, *DONE, *FLIGHT, QUEUED, CANCELLED]
            }
        finally:
            await conn.aclose()
        book = SchemaBook(store)
        bodies = {r.key: book.encode(r) for r in requests.values()}
        store.add_schemas(book.take())
        queued, cancelled = requests[QUEUED], requests[CANCELLED]
        error = cancelled_error("batch_gone", "openai").to_dict()
        store.add_requests(
            "openai",
            [
                JournalRequest(queued.key, queued.model, "t", bodies[queued.key]),
                JournalRequest(
                    cancelled.key, cancelled.model, "t", bodies[cancelled.key], "failed",
                    error=error, attempts=1,
                ),
            ],
        )  # fmt: skip
        retired = requests[PAID[0]].key
        stored = store.get_result("openai", retired)
        assert stored is not None
        assert store.retire_result("openai", retired, text=stored.text, reason="no longer fits")
        store.put_results("openai", [stored])  # its new answer (the same text, for the test)
        store.put_document("entries", "word", {"headword": "word"})
        claimed = requests[DONE[0]].key
        store.take_claim("openai", claimed, "host:1:x", 4e9, lambda owner, expiry: False)
    return bodies, retired, claimed


async def migrate_old_store(
    make_settings: Any,
    tmp_path: Path,
    version: int,
    rewrite: Callable[[Path, dict[str, bytes]], None],
    before: Callable[[sqlite3.Connection], T],
) -> tuple[Path, dict[str, bytes], T]:
    """Make :func:`make_rows`' rows, rewrite them as a store of ``version``, migrate and check it.

    ``rewrite(db, bodies)`` makes the old store; ``before`` reads it before
    anything migrates it. Returns the store's path, every request's body and
    what ``before`` returned, for checks of the migrated store beyond the
    common ones of :func:`check_migrated_store`.
    """
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(batch_seconds=1.5)) as emu:
        settings = make_settings(emu)
        db = Path(settings.connector.db)
        bodies, retired, claimed = await make_rows(settings)
        rewrite(db, bodies)
        with sqlite3.connect(db) as conn:
            seen = before(conn)
        await check_migrated_store(emu, settings, version, bodies, retired, claimed, tmp_path)
    return db, bodies, seen


async def test_a_version_5_store_resumes_serves_and_reports_the_same_after_migration(
    make_settings: Any, tmp_path: Path
) -> None:
    await migrate_old_store(make_settings, tmp_path, 5, _rewrite_as_version_5, lambda _: None)


async def check_migrated_store(
    emu: Any,
    settings: Any,
    version: int,
    bodies: dict[str, bytes],
    retired: str,
    claimed: str,
    tmp_path: Path,
) -> None:
    """Check that the store of schema ``version`` made from :func:`make_rows` works migrated.

    ``lexibatch cost`` migrates it and reports the same costs; its rows read
    back the same; resume collects the batch in flight and sends the queued
    request, paying each once; cached answers are served without paying.
    """
    db = Path(settings.connector.db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        old_costs = conn.execute(_V5_COST_REPORT).fetchall()
        old_states = dict(conn.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"))
    billed_before = emu.billing()
    assert old_states == {"succeeded": 4, "submitted": 6, "queued": 1, "failed": 1}

    # `lexibatch cost` on the old store: it migrates it and reports the same totals.
    report = lexibatch("cost", "--db", str(db), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    total = re.search(r"total \$([\d.,]+) for ([\d,]+) paid calls", report.stdout)
    assert total is not None, report.stdout
    assert int(total.group(2)) == sum(row[3] for row in old_costs) == 3 + 4
    assert abs(float(total.group(1)) - sum(row[8] for row in old_costs)) < 0.005

    with Store(db) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.integrity_check() == "ok"
        new_costs = [
            (r.mode, r.task, r.model, r.requests, r.input_tokens, r.output_tokens,
             r.cached_tokens, r.reasoning_tokens, r.cost_usd, r.immediate_cost_usd,
             r.unpriced)
            for r in store.cost_report()
        ]  # fmt: skip
        assert new_costs == [tuple(row) for row in old_costs]
        assert store.count_requests("openai") == old_states
        # Succeeded requests kept their key and state, not their body or shard.
        succeeded = list(store.requests_in_state("openai", "succeeded"))
        assert len(succeeded) == 4 and all(r.body == b"" for r in succeeded)
        assert all(r.shard_id is None for r in succeeded)
        flight = list(store.requests_in_state("openai", "submitted"))
        assert [bool(r.body) for r in flight] == [True] * 6
        assert cancelled_keys(store, "openai") == {
            k for k, b in bodies.items() if b"cancelled 0" in b
        }
        assert [r.text for r in store.retired_results("openai", retired)]
        assert store.get_document("entries", "word") == {"headword": "word"}
        assert store.claim_on("openai", claimed) == ("host:1:x", 4e9)
        batch_ids = {s.batch_id for s in store.shards() if s.state == "collected"}
        (collected,) = batch_ids
        assert collected is not None and store.batch_usage(collected)[0] == 4

    # Resume: the batch in flight is collected, the queued request sent, nothing twice.
    resumed = open_connector(settings)
    try:
        resumed.enable_batch_mode()
        assert await resumed.batch_strategy().resume() == 1  # the queued request
        shards = resumed.store.shards()
        assert resumed.store.count_requests("openai") == {"succeeded": 11, "failed": 1}
    finally:
        await resumed.aclose()
    assert [s.state for s in shards] == ["collected"] * 3
    billed = emu.billing()
    assert billed["duplicates"] == 0
    # Each request paid once: the collected four, the six in flight, the queued one.
    assert billed["batch"]["requests"] == 4 + 6 + 1
    assert billed["immediate"] == billed_before["immediate"]

    # Cached answers are served without paying.
    cached = open_connector(settings)
    try:
        again = await gather(cached, [*PAID, *DONE, *FLIGHT, QUEUED])
    finally:
        await cached.aclose()
    assert all(isinstance(r, Entry) for r in again), again
    after = emu.billing()
    assert (after["batch"], after["immediate"]) == (billed["batch"], billed["immediate"])
    with Store(db) as store:
        assert sum(r.requests for r in store.cost_report()) == 3 + 4 + 6 + 1
