"""A server shares its store: between batch jobs another process may run the store's batches."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from filelock import FileLock, Timeout
from serve_helpers import LiveServer, wait_for_job

from plugins.lease import LOCK_SUFFIX, BatchLease


def _lease_free(live: LiveServer) -> bool:
    # Another lock object, as another process's: the server's thread holds its own.
    probe = FileLock(f"{live.db}{LOCK_SUFFIX}", thread_local=False, timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return False
    probe.release()
    return True


def test_a_server_lets_the_stores_batches_go_once_its_jobs_are_done(
    start_server: Callable[..., LiveServer],
) -> None:
    live = start_server()
    with httpx.Client(base_url=live.url, timeout=60) as client:
        url = client.post("/lookup/anchor", params={"batch": "true"}).json()["url"]
        assert wait_for_job(client, url)["status"] == "done"
        deadline = time.monotonic() + 30
        while not _lease_free(live):
            assert time.monotonic() < deadline, "the idle server still holds the store's batches"
            time.sleep(0.1)
        # And takes them again for the next job.
        url = client.post("/lookup/lantern", params={"batch": "true"}).json()["url"]
        assert wait_for_job(client, url)["status"] == "done"
    assert live.emulator.billing()["duplicates"] == 0


def test_a_job_waits_while_another_process_runs_the_stores_batches(
    start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    import synthesis.serve

    monkeypatch.setattr(synthesis.serve, "BUSY_STORE_WAIT", 0.2)
    live = start_server()
    other = BatchLease(str(live.db))
    other.acquire()  # a batch synthesize on the same store, say
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            url = client.post("/lookup/meadow", params={"batch": "true"}).json()["url"]
            time.sleep(2.5)  # the server asked, waited its second, and was refused
            waiting = client.get(url).json()
            assert waiting["status"] == "queued" and waiting["error"] is None, waiting
            other.release()
            assert wait_for_job(client, url)["status"] == "done"
    finally:
        other.release()
