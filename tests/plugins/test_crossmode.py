"""A batch run leaves out of its batch what another process has claimed (plugins.crossmode)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

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
            connector.store.write_with(
                lambda conn: conn.execute(
                    "INSERT INTO claims (provider, key, owner, expires_at) VALUES (?,?,?,?)",
                    ("openai", claimed, owner, time.time() + 60),
                )
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
            connector.store.write_with(
                lambda conn: conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            )
            results = await asyncio.wait_for(running, 30)
            shards = sorted(s.requests for s in connector.store.shards())
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert all(isinstance(r, Entry) for r in results), results
    assert shards == [1, 5]
    assert billing["batch"]["requests"] == 6 and billing["duplicates"] == 0
