"""Two real processes writing one database at once: no lock error, no corruption, no lost row."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from plugins.store import SCHEMA_VERSION, Store

WORKER = Path(__file__).with_name("_store_worker.py")
REPO = Path(__file__).resolve().parents[2]
ROUNDS = 150
BULK_ROUNDS = len(range(0, ROUNDS, 10))


def test_two_processes_share_a_fresh_database(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "lexibatch.db"
    db.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # Both open the (not yet existing) database at the same moment, so both try to migrate.
    start_at = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(db), worker, str(ROUNDS), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for worker in ("w1", "w2")
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
        assert out.startswith("done")

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

        def count(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0])

        # Every process's own rows, exactly; the shared keys once each.
        assert count("SELECT COUNT(*) FROM requests") == 2 * ROUNDS + ROUNDS
        assert count("SELECT COUNT(*) FROM requests WHERE state = 'succeeded'") == 2 * ROUNDS
        assert count("SELECT COUNT(*) FROM requests WHERE state = 'queued'") == ROUNDS
        assert count("SELECT COUNT(*) FROM requests WHERE submissions = 1") == 2 * ROUNDS
        assert count("SELECT COUNT(*) FROM results") == 3 * ROUNDS + 2 * BULK_ROUNDS * 500
        assert count("SELECT COUNT(*) FROM calls") == 2 * ROUNDS
        assert count("SELECT COUNT(*) FROM shards WHERE state = 'collected'") == 2 * ROUNDS
        assert count("SELECT COUNT(*) FROM documents") == 2 * ROUNDS
        # Each key took one id, under which its journal row and its result both are.
        assert count("SELECT COUNT(*) - COUNT(DISTINCT id) FROM keys") == 0
        for table in ("requests", "results"):
            assert count(
                f"SELECT COUNT(*) FROM {table} t JOIN keys k "
                "ON k.provider = t.provider AND k.key = t.key AND k.id = t.id"
            ) == count(f"SELECT COUNT(*) FROM {table}")
        # First result wins: a shared key keeps one writer's text, never a mix.
        texts = {r[0] for r in conn.execute("SELECT text FROM results WHERE key LIKE 'shared-%'")}
        assert texts <= {"w1", "w2"}

    with Store(db) as store:
        assert store.integrity_check() == "ok"
        assert store.cost_report()[0].requests == 2 * ROUNDS
