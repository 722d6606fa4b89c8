"""A store that fills up during an immediate run: the answers in flight are kept, never paid twice.

The disk fills the moment the first answer is to be stored, while others are
in flight. As in ``test_cli_environment``, the full disk is caused in the
run's own process: the store's SQLite connection refuses every write with
``SQLITE_FULL`` (what SQLite says on a full disk), and creating or writing a
file in the store's folder fails with ``ENOSPC`` — until the run lets its
space reserve go, which frees room. With ``FREED=store`` that room is enough
for the store (its answers are committed after all); with ``FREED=files`` it
is enough for small files only (the answers go to the spill).

Either way the run stops sending, ends in one line naming the store and what
to do (exit 2, no traceback, no temp file), and the same command, once there
is room, pays for every request exactly once across both runs.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.cli_helpers import SCHEMA, EmulatorProcess, env, lexibatch, results

N = 12
CONCURRENCY = 4

FILLING = """
import errno, os, sqlite3, sys

freed_what = os.environ.pop("FREED")
state = {"db_full": False, "files_full": False}
real_open, real_unlink = os.open, os.unlink


class FullConnection:
    # The store's connection, refusing writes as SQLite does on a full disk.
    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def _refuse(self, sql):
        verb = sql.lstrip().split(None, 1)[0].upper()
        if state["db_full"] and verb in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            exc = sqlite3.OperationalError("database or disk is full")
            exc.sqlite_errorcode = sqlite3.SQLITE_FULL
            raise exc

    def execute(self, sql, *args):
        self._refuse(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._refuse(sql)
        return self._conn.executemany(sql, *args)


from plugins.store import Store

real_put_results = Store.put_results


def put_results(self, provider, rows):
    # The disk fills just as the first answer is to be stored.
    if not isinstance(self._conn, FullConnection):
        self._conn = FullConnection(self._conn)
        state["db_full"] = state["files_full"] = True
    return real_put_results(self, provider, rows)


def full_open(path, flags, mode=0o777, *, dir_fd=None):
    folder = os.path.dirname(os.path.abspath(os.fsdecode(path)))
    writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
    if state["files_full"] and writing and folder.endswith(".lexibatch"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(path))
    return real_open(path, flags, mode, dir_fd=dir_fd)


def unlink(path, *, dir_fd=None):
    real_unlink(path, dir_fd=dir_fd)
    if os.fsdecode(path).endswith(".reserve") and state["db_full"]:
        # The reserve's blocks are free again.
        state["files_full"] = False
        if freed_what == "store":
            state["db_full"] = False


Store.put_results = put_results
os.open, os.unlink = full_open, unlink
from synthesis.cli import main
sys.argv[0] = "lexibatch"
main()
"""


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    # Each answer takes a moment: several calls are in flight when the disk fills.
    with EmulatorProcess({"latency": 0.3}) as emu:
        yield emu


def _workdir(tmp_path: Path, emu: EmulatorProcess) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "lexibatch.toml").write_text(
        "[connector]\n"
        'provider = "openai"\n'
        'mode = "immediate"\n'
        "[providers.openai]\n"
        f'base_url = "{emu.url}/v1"\n'
        f"max_concurrency = {CONCURRENCY}\n"
    )
    lines = [
        json.dumps({"id": str(i), "prompt": f"full disk question {i}", "schema": SCHEMA})
        for i in range(N)
    ]
    (work / "requests.jsonl").write_text("\n".join(lines) + "\n")
    return work


def _billed(emu: EmulatorProcess) -> dict[str, int]:
    by_key: dict[str, int] = {}
    for mode in ("immediate", "batch"):
        for key, count in emu.billing()["by_key"][mode].items():
            by_key[key] = by_key.get(key, 0) + count
    return by_key


def _ledger(db: Path) -> tuple[int, int]:
    """The ledger's paid calls and the stored results."""
    with sqlite3.connect(db) as conn:
        calls = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        stored = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    return int(calls), int(stored)


@pytest.mark.parametrize("freed", ["store", "files"])
def test_a_store_that_fills_keeps_the_answers_in_flight_and_the_rerun_pays_nothing_again(
    tmp_path: Path, emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch, freed: str
) -> None:
    work = _workdir(tmp_path, emulator)
    folder = work / ".lexibatch"
    db = folder / "lexibatch.db"
    spill = folder / "lexibatch.db.unsaved.jsonl"
    args = ("run", "requests.jsonl", "--out", "out.jsonl")

    monkeypatch.setenv("FREED", freed)
    done = lexibatch(*args, cwd=work, script=FILLING)
    monkeypatch.delenv("FREED")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("lexibatch: error:")]
    assert len(errors) == 1, done.stderr
    assert str(db) in errors[0] and "full" in errors[0] and "free disk space" in errors[0]
    assert "run the same command again" in errors[0]

    # It stopped at the first refusal: only the calls already in flight were paid.
    first = _billed(emulator)
    assert 1 <= len(first) <= CONCURRENCY, first
    assert not (work / "out.jsonl").exists()
    assert not [p for p in work.rglob("*") if p.suffix in (".tmp", ".part")]
    assert not (folder / "lexibatch.db.reserve").exists(), "the reserve was not let go"
    calls, stored = _ledger(db)
    if freed == "store":
        # The reserve's room let every answer in flight be stored.
        assert (calls, stored) == (len(first), len(first))
        assert not spill.exists()
        assert "kept in" not in errors[0]
    else:
        # The store took none: every answer paid for waits in the spill, named in the error.
        assert (calls, stored) == (0, 0)
        kept = [json.loads(line) for line in spill.read_text().splitlines()]
        assert len(kept) == len(first)
        assert all(entry["result"]["text"] for entry in kept)
        assert f"{len(first)} answer" in errors[0] and str(spill) in errors[0]

    # The same command, with room again: what was paid for is not paid for again.
    again = lexibatch(*args, cwd=work)
    assert again.returncode == 0, again.stderr
    answers = results(work / "out.jsonl")
    assert [a["id"] for a in answers] == [str(i) for i in range(N)]
    assert all(a["status"] == "succeeded" for a in answers), answers
    assert sum(a["cached"] for a in answers) == len(first)
    billed = _billed(emulator)
    assert len(billed) == N and set(billed.values()) == {1}, billed
    assert emulator.billing()["duplicates"] == 0
    # Every paid call is in the ledger once, the spill is gone, the reserve is back.
    assert _ledger(db) == (N, N)
    assert not spill.exists()
    assert (folder / "lexibatch.db.reserve").stat().st_size > 0


# A genuinely full file system, where the system lets a normal user make one:
# a small tmpfs mounted on the store's folder in a user and mount namespace
# of its own. The run is started in it, and the file system is filled up
# (SQLite's log emptied, then a file written until ENOSPC) once every call
# of its first round is claimed, that is, sent.
GENUINE = """
import json, os, sqlite3, subprocess, sys, time, urllib.request

work, size, concurrency, emulator = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
folder = os.path.join(work, ".lexibatch")
db = os.path.join(folder, "lexibatch.db")
os.makedirs(folder, exist_ok=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], check=True)
command = [sys.executable, "-m", "synthesis.cli", "run", "requests.jsonl", "--out", "out.jsonl"]


def claimed():
    try:
        conn = sqlite3.connect(db, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def counts():
    conn = sqlite3.connect(db, timeout=5)
    try:
        tables = ("calls", "results")
        return [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables]
    finally:
        conn.close()


report = {}
run = subprocess.Popen(command, cwd=work, stderr=subprocess.PIPE, text=True)
deadline = time.monotonic() + 60
while claimed() < concurrency and time.monotonic() < deadline and run.poll() is None:
    time.sleep(0.005)
# SQLite's log emptied first: its next commit must grow it, not reuse its room.
conn = sqlite3.connect(db, timeout=5)
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
conn.close()
filler = os.path.join(folder, "filler")
with open(filler, "wb") as f:
    try:
        while True:
            f.write(b"\\0" * 65536)
            f.flush()
    except OSError:
        pass
_, err = run.communicate(timeout=120)
report["first"] = {"code": run.returncode, "stderr": err, "files": sorted(os.listdir(folder))}
with urllib.request.urlopen(emulator + "/_emulator/billing", timeout=10) as resp:
    report["first"]["billed"] = json.loads(resp.read())["immediate"]["requests"]
spill = os.path.join(folder, "lexibatch.db.unsaved.jsonl")
report["first"]["kept"] = len(open(spill).read().splitlines()) if os.path.exists(spill) else 0
os.remove(filler)
report["first"]["ledger"] = counts()
again = subprocess.run(command, cwd=work, stderr=subprocess.PIPE, text=True, timeout=120)
report["second"] = {"code": again.returncode, "stderr": again.stderr, "ledger": counts()}
report["second"]["files"] = sorted(os.listdir(folder))
print(json.dumps(report))
"""

_NAMESPACE = ["unshare", "--user", "--map-root-user", "--mount"]


def _namespaces() -> bool:
    """Whether this user may mount a tmpfs in a namespace of its own."""
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d && umount $d; rmdir $d"
    try:
        done = subprocess.run([*_NAMESPACE, "sh", "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.skipif(not _namespaces(), reason="no user namespaces to mount a small tmpfs in")
def test_a_genuinely_full_file_system_keeps_the_answers_in_flight(tmp_path: Path) -> None:
    with EmulatorProcess({"latency": 1.0}) as emu:
        work = _workdir(tmp_path, emu)
        argv = [*_NAMESPACE, sys.executable, "-c", GENUINE, str(work), "6m", str(CONCURRENCY)]
        argv.append(emu.url)
        done = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        billed = _billed(emu)
        duplicates = emu.billing()["duplicates"]
    first, second = report["first"], report["second"]
    assert first["code"] == 2, first["stderr"]
    assert "Traceback" not in first["stderr"], first["stderr"]
    errors = [line for line in first["stderr"].splitlines() if line.startswith("lexibatch: error:")]
    assert len(errors) == 1 and "full" in errors[0], first["stderr"]
    assert not [f for f in first["files"] if f.endswith((".tmp", ".part"))]
    # The first answer refused let the reserve go; everything the first run
    # paid for was stored in its room (or kept in the spill): none is lost.
    assert "lexibatch.db.reserve" not in first["files"], report
    calls, stored = first["ledger"]
    assert 1 <= first["billed"] <= CONCURRENCY, report
    assert calls == stored and calls + first["kept"] == first["billed"], report
    assert second["code"] == 0, second["stderr"]
    assert "Traceback" not in second["stderr"]
    assert second["ledger"] == [N, N]
    assert "lexibatch.db.unsaved.jsonl" not in second["files"]
    assert len(billed) == N and set(billed.values()) == {1}, billed
    assert duplicates == 0
