"""One runner at a time for the batches of a store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from plugins.factory import open_connector
from plugins.lease import BatchLease
from providers.errors import StoreBusyError


class Entry(BaseModel):
    """A small response model."""

    word: str


def test_a_second_lease_on_the_same_store_is_refused_until_the_first_is_let_go(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "store.db")
    first, second = BatchLease(db), BatchLease(db)
    first.acquire()
    first.acquire()  # taking one's own lease again is a no-op
    with pytest.raises(StoreBusyError, match=r"store\.db\.batches\.lock is locked") as busy:
        second.acquire()
    # Held by this very process: said so, rather than blamed on another process.
    assert str(busy.value).startswith("another connector of this process is running")
    first.release()
    second.acquire()
    assert second.held
    second.release()
    assert BatchLease(":memory:").held  # an in-memory store is never shared


def test_a_killed_holder_leaves_no_lease_behind(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    code = (
        "import sys, time\n"
        "from plugins.lease import BatchLease\n"
        f"lease = BatchLease({db!r})\n"
        "lease.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError):
            BatchLease(db).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    deadline = time.monotonic() + 5
    lease = BatchLease(db)
    while True:
        try:
            lease.acquire()
            break
        except StoreBusyError:
            assert time.monotonic() < deadline, "the lease outlived its holder"
            time.sleep(0.05)
    lease.release()


async def test_two_connectors_cannot_run_the_batches_of_one_store_at_once(
    fresh_emulator: Any, make_settings: Any
) -> None:
    settings = make_settings(fresh_emulator)
    first = open_connector(settings)
    second = open_connector(settings)
    try:
        first.enable_batch_mode()
        promise = first.batch_strategy().submit(first.build_request("a", Entry))
        with pytest.raises(StoreBusyError, match="another connector of this process"):
            second.enable_batch_mode()
        assert not second.batch_mode
        # Immediate calls on the same store are not affected.
        assert isinstance(await second.structured("c", Entry), Entry)
        await first.execute_batch()
        assert isinstance(promise.result().output, Entry)
    finally:
        await first.aclose()
    try:
        # Once the first has closed, the second runs batches.
        second.enable_batch_mode()
        assert isinstance(await second.structured("b", Entry), Entry)
        assert second.store.count_requests("openai") == {"succeeded": 2}
    finally:
        await second.aclose()


def test_a_lock_file_that_cannot_be_made_is_one_line_that_says_what_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from filelock import FileLock

    from plugins.lease import runner_elsewhere
    from providers.errors import StoreWriteError

    def refuse(self: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted", f"{tmp_path}/store.db.batches.lock")

    # What a folder the process may not create files in gives (read-only, immutable).
    monkeypatch.setattr(FileLock, "acquire", refuse)
    db = str(tmp_path / "store.db")
    with pytest.raises(StoreWriteError) as refused:
        BatchLease(db).acquire()
    message = str(refused.value)
    assert "store.db.batches.lock beside the store cannot be made" in message
    assert "folder must be writable" in message and "\n" not in message
    # Nobody could have taken such a lock: no runner elsewhere.
    assert runner_elsewhere(db) is False


def test_one_store_reached_by_a_symlink_a_linked_folder_or_a_relative_path_has_one_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.lease import lease_held_here, runner_elsewhere

    real = tmp_path / "data" / "store.db"
    real.parent.mkdir()
    real.touch()
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "linked").symlink_to(real.parent, target_is_directory=True)
    monkeypatch.chdir(real.parent)
    other_names = [
        str(tmp_path / "link.db"),
        str(tmp_path / "linked" / "store.db"),
        "store.db",
        "./../data/store.db",
    ]
    holder = BatchLease(str(real))
    holder.acquire()
    try:
        for name in other_names:
            with pytest.raises(StoreBusyError, match="is locked"):
                BatchLease(name).acquire()
            # This process holds it, whatever name the store is given.
            assert lease_held_here(name) and not runner_elsewhere(name)
    finally:
        holder.release()
    for name in other_names:
        assert not lease_held_here(name)
    # The lock file sits beside the real database, not beside a link to it.
    assert (real.parent / "store.db.batches.lock").exists()
    assert not (tmp_path / "link.db.batches.lock").exists()


def test_a_runner_using_a_symlink_is_seen_by_a_process_using_the_real_path(
    tmp_path: Path,
) -> None:
    from plugins.lease import runner_elsewhere

    real = tmp_path / "store.db"
    real.touch()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    code = (
        "import sys, time\n"
        "from plugins.lease import BatchLease\n"
        "lease = BatchLease(sys.argv[1])\n"
        "lease.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(link)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert runner_elsewhere(str(real))
        with pytest.raises(StoreBusyError, match="another lexibatch process"):
            BatchLease(str(real)).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
