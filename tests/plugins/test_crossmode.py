"""A batch run leaves out of its batch what another process has claimed (plugins.crossmode)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plugins.factory import open_connector
from tests.plugins.batch_helpers import Entry, gather


async def test_a_request_claimed_elsewhere_is_left_out_then_sent_once_let_go(
    make_settings: Any,
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    prompts = [f"claimed {i}" for i in range(6)]
    with Emulator(EmulatorConfig(batch_seconds=0.0)) as emu:
        connector = open_connector(make_settings(emu, batch={"linger": 0.1}))
        try:
            connector.enable_batch_mode()
            claimed = connector.build_request(prompts[0], Entry, task="t").key
            owner = "another-host:4242:feedbeef"
            connector.store.take_claim(
                "openai", claimed, owner, time.time() + 60, lambda _owner, _expires: False
            )
            running = asyncio.ensure_future(gather(connector, prompts))
            # The first shard leaves without the claimed request; its caller waits.
            for _ in range(200):
                await asyncio.sleep(0.05)
                if any(s.state == "collected" for s in connector.store.shards()):
                    break
            first = connector.store.shards()
            assert [s.requests for s in first] == [5]
            assert not running.done()
            # The other process lets its claim go without an answer: sent here, once.
            connector.store.release_claim("openai", claimed, owner)
            results = await asyncio.wait_for(running, 30)
            shards = sorted(s.requests for s in connector.store.shards())
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in results), results
    assert shards == [1, 5]
    assert billing["batch"]["requests"] == 6 and billing["duplicates"] == 0


def _hold_batch_lease(db: str) -> subprocess.Popen[str]:
    """Another process that runs the store's batches (it holds their lease)."""
    code = (
        "import sys, time\n"
        "from plugins.lease import BatchLease\n"
        "lease = BatchLease(sys.argv[1]); lease.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", code, db], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("outcome", ["answered", "cancelled"])
async def test_an_immediate_request_a_live_batch_run_holds_waits_for_it(
    make_settings: Any, outcome: str
) -> None:
    from plugins.batch.usercancel import cancelled_error
    from plugins.store import JournalRequest, StoredResult
    from providers.emulator import Emulator, EmulatorConfig
    from providers.errors import CancelledByUserError
    from providers.types import Usage

    with Emulator(EmulatorConfig()) as emu:
        connector = open_connector(make_settings(emu))
        store = connector.store
        holder = _hold_batch_lease(store.path)
        try:
            request = connector.build_request("in a batch", Entry, task="t")
            store.add_requests(
                "openai",
                [JournalRequest(request.key, request.model, "t", b"{}", "submitted", "shard_x", 1)],
            )
            asked = asyncio.ensure_future(connector.structured("in a batch", Entry, task="t"))
            await asyncio.sleep(0.5)
            assert not asked.done()  # waiting for the batch run, not sending
            if outcome == "answered":
                store.put_results(
                    "openai",
                    [
                        StoredResult(
                            key=request.key,
                            model=request.model,
                            task="t",
                            mode="batch",
                            text='{"word": "w", "level": "easy"}',
                            usage=Usage(input_tokens=3, output_tokens=4),
                        )
                    ],
                )
                store.set_request_state("openai", [request.key], "succeeded")
                answer = await asyncio.wait_for(asked, 10)
                assert isinstance(answer, Entry)
            else:
                error = cancelled_error("batch_x", "openai").to_dict()
                store.set_request_state("openai", [request.key], "failed", error=error)
                with pytest.raises(CancelledByUserError):
                    await asyncio.wait_for(asked, 10)
        finally:
            holder.kill()
            holder.wait()
            await connector.aclose()
        billing = emu.billing()
    assert billing["immediate"]["requests"] == 0


@pytest.mark.parametrize(
    ("state", "shard_state", "runner", "expected"),
    [
        ("queued", None, False, None),  # only queued by a run that is gone: never sent
        ("queued", None, True, "running"),
        ("submitted", "written", True, "running"),
        ("submitted", "written", False, "orphaned"),  # journaled before the create
        ("submitted", "submitting", False, "orphaned"),  # the create may have happened
        ("submitted", "created", False, "orphaned"),
        ("submitted", "collected", False, None),  # its batch is over
        ("succeeded", "collected", True, None),
    ],
)
def test_what_a_batch_holds_says_who_answers_a_request(
    tmp_path: Path, state: str, shard_state: str | None, runner: bool, expected: str | None
) -> None:
    from plugins.crossmode import batch_holds
    from plugins.store import JournalRequest, Shard, Store

    store = Store(str(tmp_path / "lexibatch.db"))
    holder = _hold_batch_lease(store.path) if runner else None
    try:
        if shard_state is not None:
            store.add_shard(Shard("shard_1", "openai", "gpt-4o-mini", state=shard_state))
        shard = "shard_1" if shard_state is not None else "open_shard"
        store.add_requests(
            "openai", [JournalRequest("k1", "gpt-4o-mini", None, b"{}", state, shard, 0)]
        )
        assert batch_holds(store, "openai", "k1") == expected
        assert batch_holds(store, "openai", "never-journaled") is None
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        store.close()
