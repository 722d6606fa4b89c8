"""``LexiConnector.submit_all``: many requests started at once, each settled like ``generate``."""

from __future__ import annotations

from typing import Any

from plugins import hookimpl
from plugins.factory import open_connector
from plugins.jobs import JobItem, run_requests
from providers.errors import InputError
from providers.types import Message, Request, Response

SCHEMA = {
    "type": "object",
    "properties": {"word": {"type": "string"}, "level": {"type": "string"}},
    "required": ["word", "level"],
}


def _request(text: str, model: str = "gpt-4o-mini") -> Request:
    return Request(model=model, messages=(Message("user", text),), json_schema=SCHEMA, task="t")


class _Seen:
    """Records the request hooks, as the dashboard reads them."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[tuple[str, bool, str | None]] = []

    @hookimpl
    def request_started(self, request: Request) -> None:
        self.started.append(request.key)

    @hookimpl
    def request_finished(self, request: Request, response: Any, error: Any) -> None:
        cached = bool(response is not None and response.cached)
        self.finished.append((request.key, cached, type(error).__name__ if error else None))


async def test_batch_mode_reads_the_cache_at_once_sends_duplicates_once_and_fires_each_hook(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    seen = _Seen()
    connector.manager.register(seen, name="test-seen", origin="test")
    try:
        answered = await connector.generate(_request("answered before"))
        connector.enable_batch_mode()
        requests = [
            _request("word one"),
            _request("word two"),
            _request("word one"),  # the same request twice: sent once
            _request("answered before"),  # in the cache: not sent
            _request("bad model", model=""),  # refused before anything is looked up
        ]
        seen.started.clear()
        seen.finished.clear()
        futures = await connector.submit_all(requests)
        await connector.execute_batch()
        assert all(f.done() for f in futures)
        one, two, again, cached = (f.result() for f in futures[:4])
        assert isinstance(one, Response) and one.mode == "batch" and not one.cached
        assert again is one
        assert one.output.keys() == {"word", "level"} and two.key != one.key
        assert cached.cached and cached.output == answered.output and cached.cost_usd == 0.0
        assert isinstance(futures[4].exception(), InputError)
        keys = [r.key for r in requests]
        assert sorted(seen.started) == sorted([keys[0], keys[1], keys[3]])
        assert sorted(seen.finished) == sorted(
            [(keys[0], False, None), (keys[1], False, None), (keys[3], True, None)]
        )
    finally:
        connector.manager.pm.unregister(seen)
        await connector.aclose()
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 2 and billing["duplicates"] == 0


async def test_run_requests_in_batch_mode_writes_every_line_in_input_order(
    fresh_emulator: Any, make_settings: Any, tmp_path: Any
) -> None:
    import orjson

    connector = open_connector(make_settings(fresh_emulator))
    try:
        connector.enable_batch_mode()
        items = [JobItem(f"id{i}", _request(f"word {i % 7}"), i + 1) for i in range(30)]
        out = tmp_path / "results.jsonl"
        summary = await run_requests(connector, items, out)
    finally:
        await connector.aclose()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["id"] for line in lines] == [f"id{i}" for i in range(30)]
    assert {line["status"] for line in lines} == {"succeeded"}
    assert summary.succeeded == 30 and summary.failed == 0
    assert lines[7]["output"] == lines[0]["output"] and lines[7]["key"] == lines[0]["key"]
    assert fresh_emulator.billing()["batch"]["requests"] == 7
