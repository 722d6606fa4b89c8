"""Environment failures: one line naming the path and what to do, exit 2, nothing paid lost.

The file system's refusals that a test cannot cause for real everywhere (a
read-only mount, a full disk, and any permission when tests run as root)
are caused by patching ``os`` in the run's own process: ``FAILING`` makes
every write under ``FAIL_UNDER`` fail with ``FAIL_ERRNO`` at ``os.open``
(``FAIL_AT=open``), when a file is created through ``io.open`` (``FAIL_AT=create``)
or when a file of more than one byte is synced (``FAIL_AT=fsync``, a disk that
fills up after the probe of the output).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_helpers import lexibatch, results, workdir

FAILING = """
import errno, os, sys

under = os.environ.pop("FAIL_UNDER")
code = int(os.environ.pop("FAIL_ERRNO"))
at = os.environ.pop("FAIL_AT")
real_open, real_fsync = os.open, os.fsync


def refused(path):
    return os.path.abspath(os.fsdecode(path)).startswith(under)


def fail_open(path, flags, mode=0o777, *, dir_fd=None):
    if at == "open" and flags & (os.O_WRONLY | os.O_RDWR) and refused(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))
    return real_open(path, flags, mode, dir_fd=dir_fd)


def fail_fsync(fd):
    target = os.readlink(f"/proc/self/fd/{fd}") if isinstance(fd, int) else ""
    if at == "fsync" and refused(target) and os.fstat(fd).st_size > 1:
        raise OSError(code, os.strerror(code))
    return real_fsync(fd)


def fail_create(file, mode="r", *args, **kwargs):
    # An open descriptor (os.fdopen) was created through os.open, checked there.
    if at == "create" and not isinstance(file, int) and set(mode) & set("wax+") and refused(file):
        raise OSError(code, os.strerror(code), os.fsdecode(file))
    return real_io_open(file, mode, *args, **kwargs)


import io
real_io_open = io.open
os.open, os.fsync, io.open = fail_open, fail_fsync, fail_create
from synthesis.cli import main
sys.argv[0] = "lexibatch"
main()
"""


def _failing(work: Path, under: Path, code: int, at: str, *args: str) -> Any:
    os.environ["FAIL_UNDER"] = str(under.resolve())
    os.environ["FAIL_ERRNO"] = str(code)
    os.environ["FAIL_AT"] = at
    try:
        return lexibatch(*args, cwd=work, script=FAILING)
    finally:
        for var in ("FAIL_UNDER", "FAIL_ERRNO", "FAIL_AT"):
            os.environ.pop(var, None)


def _one_line(done: Any, *needles: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("lexibatch: error:")]
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _billed(emu: Any) -> int:
    billing = emu.billing()
    return int(billing["immediate"]["requests"] + billing["batch"]["requests"])


@pytest.fixture
def work(tmp_path: Path, fresh_emulator: Any) -> Path:
    return workdir(tmp_path / "work", fresh_emulator.base_url + "/v1", 12)


def test_out_below_a_regular_file_is_refused_before_sending(
    work: Path, fresh_emulator: Any
) -> None:
    (work / "afile").write_text("")
    done = lexibatch("run", "requests.jsonl", "--out", "afile/out.jsonl", cwd=work)
    _one_line(done, "afile/out.jsonl", "not a folder", "nothing was sent")
    assert _billed(fresh_emulator) == 0


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"), (errno.ENOSPC, "full")],
)
def test_an_unwritable_out_folder_is_refused_before_sending(
    work: Path, fresh_emulator: Any, code: int, reason: str
) -> None:
    (work / "ro").mkdir()
    done = _failing(work, work / "ro", code, "open", "run", "requests.jsonl", "--out", "ro/o.jsonl")
    _one_line(done, "ro/o.jsonl", reason, "nothing was sent")
    assert _billed(fresh_emulator) == 0
    assert list((work / "ro").iterdir()) == []


@pytest.mark.parametrize("mode", ["immediate", "batch"])
def test_a_disk_that_fills_after_paying_keeps_the_answers_and_no_temp_file(
    work: Path, fresh_emulator: Any, mode: str
) -> None:
    (work / "full").mkdir()
    args = ("run", "requests.jsonl", "--mode", mode, "--out", "full/out.jsonl")
    done = _failing(work, work / "full", errno.ENOSPC, "fsync", *args)
    _one_line(done, "full/out.jsonl", "disk is full", "run the same command again")
    assert list((work / "full").iterdir()) == [], "a temp file was left behind"
    assert _billed(fresh_emulator) == 12
    # The same command, once the disk has room: everything from the store, nothing paid.
    again = lexibatch(*args, cwd=work)
    assert again.returncode == 0, again.stderr
    assert "12 from cache" in again.stderr and "$0.00 for 0 paid calls" in again.stderr
    assert all(r["status"] == "succeeded" for r in results(work / "full" / "out.jsonl"))
    assert _billed(fresh_emulator) == 12


@pytest.mark.parametrize("at", ["create", "fsync"])
def test_a_full_spool_folder_is_one_store_write_error(
    work: Path, fresh_emulator: Any, at: str
) -> None:
    spool = work / "spool"
    spool.mkdir()
    (work / "lexibatch.toml").write_text(
        (work / "lexibatch.toml").read_text() + f'spool_dir = "{spool}"\n'
    )
    args = ("run", "requests.jsonl", "--mode", "batch", "--out", "out.jsonl")
    done = _failing(work, spool, errno.ENOSPC, at, *args)
    _one_line(done, f"spool folder {spool}", "disk is full", "batch.spool_dir", "nothing")
    assert list(spool.iterdir()) == [] and _billed(fresh_emulator) == 0
    assert not (work / "out.jsonl").exists()
    again = lexibatch(*args, cwd=work)
    assert again.returncode == 0, again.stderr
    assert _billed(fresh_emulator) == 12


def test_a_spool_folder_that_cannot_be_made_is_one_line(work: Path, fresh_emulator: Any) -> None:
    (work / "afile").write_text("")
    (work / "lexibatch.toml").write_text(
        (work / "lexibatch.toml").read_text() + 'spool_dir = "afile/spool"\n'
    )
    done = lexibatch("run", "requests.jsonl", "--mode", "batch", "--out", "o.jsonl", cwd=work)
    _one_line(done, "afile/spool", "not a folder", "batch.spool_dir")
    assert _billed(fresh_emulator) == 0


def test_a_store_folder_that_cannot_be_made_is_one_line(work: Path, fresh_emulator: Any) -> None:
    (work / "afile").write_text("")
    done = lexibatch("run", "requests.jsonl", "--db", "afile/x.db", "--out", "o.jsonl", cwd=work)
    _one_line(done, "afile/x.db", "not a folder", "connector.db")
    assert _billed(fresh_emulator) == 0


def test_synthesize_out_below_a_regular_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("apple\n")
    (tmp_path / "afile").write_text("")
    done = lexibatch("synthesize", "words.txt", "--out", "afile/e.jsonl", cwd=tmp_path)
    _one_line(done, "afile/e.jsonl", "not a folder")
