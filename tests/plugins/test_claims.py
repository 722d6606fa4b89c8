"""Claims: two processes on one store never pay twice for one immediate request."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plugins.claims import ClaimBook
from plugins.factory import open_connector
from plugins.store import Store
from tests.cli.cli_helpers import EmulatorProcess, command, env, results, workdir
from tests.plugins.batch_helpers import Entry


def test_a_claim_is_held_by_one_owner_until_it_lets_go(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as one, Store(tmp_path / "s.db") as two:
        first, second = ClaimBook(one, "openai"), ClaimBook(two, "openai")
        assert first.claim("k") is None and first.holds("k")
        assert second.claim("k") == first.owner and second.holder("k") == first.owner
        assert first.claim("k") is None  # its own claim, again: still its own
        first.release("k")
        assert second.holder("k") is None and second.claim("k") is None
        # Claims are per provider, like results.
        assert ClaimBook(one, "anthropic").claim("k") is None


def test_a_lapsed_lease_or_a_dead_owner_is_taken_over(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        quick = ClaimBook(store, "openai", lease=0.2)
        other = ClaimBook(store, "openai")
        assert quick.claim("k") is None and other.claim("k") == quick.owner
        time.sleep(0.3)  # no heartbeat beat for it: the lease ran out
        assert other.claim("k") is None
        # An owner process of this host that is gone, its lease still running.
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        dead = ClaimBook(store, "openai")
        dead.owner = f"{dead.host}:{gone.pid}:feedbeef"
        assert dead.claim("j") is None
        assert other.claim("j") is None


def test_a_claim_of_a_live_process_of_another_user_is_not_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signalling another user's process is refused (EPERM): it is alive.
    other_users = 5_000_000  # beyond Linux's largest pid_max: no real process has it
    signal_process = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid == other_users:
            raise PermissionError(1, "Operation not permitted")
        signal_process(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    with Store(tmp_path / "s.db") as store:
        theirs = ClaimBook(store, "openai")
        theirs.owner = f"{theirs.host}:{other_users}:0a11ve00"
        assert theirs.claim("k") is None
        ours = ClaimBook(store, "openai")
        assert not ours.lapsed(theirs.owner, time.time() + 60)
        assert ours.claim("k") == theirs.owner and ours.holder("k") == theirs.owner


def test_a_claim_left_under_this_process_id_by_an_earlier_process_is_taken_over(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.db") as store:
        book = ClaimBook(store, "openai")
        # A process that had this id before (a container's process 1, restarted)
        # claimed "k" and died: its lease still runs, but it is no open book of ours.
        earlier = ClaimBook(store, "openai")
        asyncio.run(earlier.aclose())
        earlier.owner = f"{earlier.host}:{os.getpid()}:0ldc1a1m"
        assert earlier.claim("k") is None
        assert book.holder("k") is None and book.claim("k") is None
        # A second book open in this same process is alive: its claim holds.
        sibling = ClaimBook(store, "openai")
        assert sibling.claim("j") is None
        assert book.claim("j") == sibling.owner and book.holder("j") == sibling.owner
        asyncio.run(sibling.aclose())
        # Closed, it let its claims go.
        assert book.claim("j") is None


async def test_two_connectors_on_one_store_send_each_request_once(
    fresh_emulator: Any, make_settings: Any
) -> None:
    fresh_emulator.configure(latency=0.05)
    settings = make_settings(
        fresh_emulator,
        providers={"openai": {"base_url": fresh_emulator.base_url + "/v1", "max_concurrency": 4}},
    )
    one, two = open_connector(settings), open_connector(settings)
    prompts = [f"shared question {i}" for i in range(40)]
    try:
        first, second = await asyncio.gather(
            asyncio.gather(*(one.structured(p, Entry, task="t") for p in prompts)),
            asyncio.gather(*(two.structured(p, Entry, task="t") for p in prompts)),
        )
    finally:
        await one.aclose()
        await two.aclose()
    assert first == second and len(first) == 40
    billed = fresh_emulator.billing()
    assert billed["immediate"]["requests"] == 40 and billed["duplicates"] == 0, billed
    # Both took a share of the sending (claims are taken when a call gets a slot).
    with Store(settings.connector.db) as store:
        rows = store.query("SELECT run, COUNT(*) FROM calls GROUP BY run")
        assert len(rows) == 2 and sum(n for _, n in rows) == 40
        assert store.query("SELECT COUNT(*) FROM claims") == [(0,)]


def test_two_immediate_runs_on_one_store_are_billed_once(tmp_path: Path) -> None:
    with EmulatorProcess({"latency": 0.05}) as emu:
        work = workdir(tmp_path / "work", emu.url + "/v1", 100)
        runs = [
            subprocess.Popen(
                command("run", "requests.jsonl", "--mode", "immediate", "--out", out),
                cwd=work,
                env=env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for out in ("a.jsonl", "b.jsonl")
        ]
        outputs = [run.communicate(timeout=300) for run in runs]
        billed = emu.billing()
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert "Traceback" not in err
    assert billed["immediate"]["requests"] == 100 and billed["duplicates"] == 0, billed
    assert all(n == 1 for n in billed["by_key"]["immediate"].values())
    for out in ("a.jsonl", "b.jsonl"):
        lines = results(work / out)
        assert [r["id"] for r in lines] == [str(i) for i in range(100)]
        assert all(r["status"] == "succeeded" for r in lines)
    # Each run's summary counts the calls it paid for; together, every call once.
    paid = [int(err.split(" for ")[1].split(" paid")[0]) for _, err in outputs]
    assert sum(paid) == 100, outputs
