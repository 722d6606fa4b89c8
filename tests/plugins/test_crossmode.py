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


# ---------------------------------------------------------------------------
# Within one process: a request waiting in a batch's open shard is asked for
# immediately by a caller the connector's one-call-per-request rule does not
# cover. The immediate side sends it (only queued, no batch holds it yet) and
# the batch leaves it out of its shard when it seals: paid once.


def _slow_answers() -> Any:
    from providers.emulator import Emulator, EmulatorConfig

    # Immediate answers take 1 s: the claims are still held when the shard
    # seals (linger 0.3 s), which is the window in question.
    return Emulator(EmulatorConfig(batch_seconds=0.2, latency=1.0))


async def test_two_connectors_of_one_process_pay_once_for_a_request_of_an_open_shard(
    make_settings: Any,
) -> None:
    prompts = [f"two connectors {i}" for i in range(5)]
    with _slow_answers() as emu:
        settings = make_settings(emu, batch={"linger": 0.3})
        batch, immediate = open_connector(settings), open_connector(settings)
        try:
            batch.enable_batch_mode()
            queued = asyncio.ensure_future(gather(batch, prompts))
            await asyncio.sleep(0.05)  # in the batch's open shard, not sealed
            assert not batch.store.shards()
            now = await gather(immediate, prompts)
            later = await asyncio.wait_for(queued, 30)
            left_out = [s.requests for s in batch.store.shards()]
        finally:
            await batch.aclose()
            await immediate.aclose()
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in now), now
    assert all(isinstance(r, Entry) for r in later), later
    # The batch's callers got the immediate side's answers.
    assert [r.word for r in later] == [r.word for r in now]
    assert left_out == [0], left_out  # the sealed shard kept none of them
    assert (billing["immediate"]["requests"], billing["batch"]["requests"]) == (5, 0), billing


async def test_a_request_whose_batch_caller_gave_up_is_paid_once_when_asked_immediately(
    make_settings: Any,
) -> None:
    prompts = [f"gave up {i}" for i in range(5)]
    with _slow_answers() as emu:
        connector = open_connector(make_settings(emu, batch={"linger": 0.3}))
        try:
            # Each batch-mode caller gives up (a timeout, a task group's
            # cancel): its request stays in the open shard.
            tries = await asyncio.gather(
                *(
                    asyncio.wait_for(connector.structured(p, Entry, task="t", mode="batch"), 0.05)
                    for p in prompts
                ),
                return_exceptions=True,
            )
            assert all(isinstance(t, TimeoutError) for t in tries), tries
            now = await asyncio.gather(
                *(connector.structured(p, Entry, task="t", mode="immediate") for p in prompts),
                return_exceptions=True,
            )
            await connector.execute_batch()
            left_out = [s.requests for s in connector.store.shards()]
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in now), now
    assert left_out == [0], left_out
    assert (billing["immediate"]["requests"], billing["batch"]["requests"]) == (5, 0), billing
