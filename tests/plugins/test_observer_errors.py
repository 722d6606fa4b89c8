"""An observer that raises is logged and passed over: it changes no request's outcome."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from plugins import hookimpl
from plugins.factory import open_connector
from plugins.manager import PluginManager


class Word(BaseModel):
    word: str


class Raising:
    """Raises from every observing hook."""

    @hookimpl
    def batch_submitted(self, batch: Any) -> None:
        raise KeyError("submitted")

    @hookimpl
    def batch_status_changed(self, batch: Any) -> None:
        raise RuntimeError("status")

    @hookimpl
    def requests_finished(self, outcomes: Any) -> None:
        raise ValueError("finished")

    @hookimpl
    def request_finished(self, request: Any) -> None:
        raise ValueError("finished one")


class Counting:
    """Counts what it is told."""

    def __init__(self) -> None:
        self.submitted = 0
        self.finished = 0

    @hookimpl
    def batch_submitted(self) -> None:
        self.submitted += 1

    @hookimpl
    def requests_finished(self, outcomes: Any) -> None:
        self.finished += len(outcomes)


@pytest.mark.parametrize("raising_first", [True, False])
async def test_a_raising_observer_fails_no_request_and_the_others_are_still_told(
    fresh_emulator: Any,
    make_settings: Any,
    caplog: pytest.LogCaptureFixture,
    raising_first: bool,
) -> None:
    counting = Counting()
    manager = PluginManager()
    # pluggy calls the latest registered first: both orders are tried.
    plugins = [(Counting, counting), (Raising, Raising())]
    for cls, plugin in plugins if not raising_first else plugins[::-1]:
        manager.register(plugin, name=cls.__name__.lower(), origin="test")
    connector = open_connector(make_settings(fresh_emulator), manager=manager)
    caplog.set_level(logging.WARNING, logger="lexibatch.plugins")
    try:
        connector.enable_batch_mode()
        words = await asyncio.gather(*(connector.structured(f"w{i}", Word) for i in range(6)))
        connector.disable_batch_mode()
        now = await connector.structured("now", Word)
    finally:
        await connector.aclose()
    assert all(isinstance(w, Word) for w in [*words, now])
    assert counting.submitted == 1 and counting.finished == 7
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 6 and billing["immediate"]["requests"] == 1
    said = [r.getMessage() for r in caplog.records if r.name == "lexibatch.plugins"]
    for hook in ("batch_submitted", "batch_status_changed", "requests_finished"):
        assert sum(f"plugin raising: its {hook} hook raised; ignored" in m for m in said) == 1
