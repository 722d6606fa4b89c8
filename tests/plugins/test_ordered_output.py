"""`lexibatch run`'s results: each line written once it and every line before it are known."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugins.jobs import JobItem, JobSummary, _ResultLines, _write_in_order, run_requests
from plugins.outfile import AtomicFile, check_writable, temp_paths
from providers.errors import BatchItemError, OutputWriteError, StoreWriteError
from providers.types import Message, Request, Response, Usage


def _items(n: int) -> list[JobItem]:
    return [
        JobItem(f"id{i}", Request("gpt-4o-mini", (Message("user", f"word {i}"),)), i + 1)
        for i in range(n)
    ]


def _answer(i: int) -> Response:
    return Response({"n": i}, "{}", Usage(3, 2), 0.25, "openai", "gpt-4o-mini", "batch", f"k{i}")


class _Sink:
    """Records what the writer hands to the file, group by group."""

    def __init__(self) -> None:
        self.groups: list[list[dict[str, Any]]] = []

    def write(self, lines: Any) -> None:
        self.groups.append([orjson.loads(line) for line in lines])

    @property
    def ids(self) -> list[str]:
        return [line["id"] for group in self.groups for line in group]


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_the_answered_prefix_is_written_while_later_requests_wait() -> None:
    loop = asyncio.get_running_loop()
    items = _items(6)
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in items]
    sink, lines = _Sink(), _ResultLines(JobSummary(total=6))
    for i in (0, 1, 3):
        futures[i].set_result(_answer(i))
    writer = asyncio.ensure_future(_write_in_order(futures, items, lines, sink))  # type: ignore[arg-type]
    await _turns()
    # Lines 0 and 1 are out; 3 waits for 2, whatever order answers come in.
    assert sink.ids == ["id0", "id1"] and not writer.done()
    futures[2].set_exception(BatchItemError("refused", code="invalid_request"))
    await _turns()
    assert sink.ids == ["id0", "id1", "id2", "id3"]
    futures[5].set_result(_answer(5))
    futures[4].set_result(_answer(4))
    assert await writer is None
    assert sink.ids == [f"id{i}" for i in range(6)]
    written = [line for group in sink.groups for line in group]
    assert written[2]["status"] == "failed" and written[2]["error"]["code"] == "invalid_request"
    assert [line["output"] for line in written if line["status"] == "succeeded"] == [
        {"n": i} for i in (0, 1, 3, 4, 5)
    ]
    summary = lines.summary
    assert (summary.succeeded, summary.failed) == (5, 1)
    assert summary.cost_usd == pytest.approx(1.25)


@pytest.mark.parametrize("stop", ["store", "cancelled", "interrupt"])
async def test_a_store_error_or_an_interrupt_stops_the_writing_and_is_returned(stop: str) -> None:
    loop = asyncio.get_running_loop()
    items = _items(4)
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in items]
    sink, lines = _Sink(), _ResultLines(JobSummary(total=4))
    futures[0].set_result(_answer(0))
    if stop == "store":
        error: BaseException = StoreWriteError("the store is full")
        futures[1].set_exception(error)
    elif stop == "cancelled":
        futures[1].cancel()
    else:
        error = KeyboardInterrupt()
        futures[1].set_exception(error)
    futures[2].set_result(_answer(2))
    stopped = await _write_in_order(futures, items, lines, sink)  # type: ignore[arg-type]
    if stop == "cancelled":
        assert isinstance(stopped, asyncio.CancelledError)
    else:
        assert stopped is error
    # Nothing from the stop on: the run ends with that error, not a results file.
    assert sink.ids in ([], ["id0"])
    assert lines.summary.failed == 0


def test_an_atomic_file_left_without_commit_leaves_no_temp_and_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"old\n")
    with pytest.raises(RuntimeError), AtomicFile(out) as sink:
        sink.write([b"new\n"])
        assert len(temp_paths(out)) == 1
        raise RuntimeError("interrupted")
    assert out.read_bytes() == b"old\n" and not temp_paths(out)
    with AtomicFile(out) as sink:
        sink.write([b"a\n"])
        sink.write([b"b\n"])
        sink.commit()
    assert out.read_bytes() == b"a\nb\n" and not temp_paths(out)


async def test_a_results_file_the_disk_refuses_stops_the_writing_not_the_requests() -> None:
    loop = asyncio.get_running_loop()
    items = _items(3)
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in items]
    refused = OutputWriteError(
        "cannot write the results to out.jsonl: the disk is full", path="out.jsonl"
    )

    class _Full(_Sink):
        def write(self, lines: Any) -> None:
            raise refused

    futures[0].set_result(_answer(0))
    writer = asyncio.ensure_future(
        _write_in_order(futures, items, _ResultLines(JobSummary(total=3)), _Full())  # type: ignore[arg-type]
    )
    await _turns()
    assert writer.done() and writer.result() is refused
    # The requests still in flight were left alone.
    assert not any(f.cancelled() for f in futures)


async def test_an_immediate_run_whose_results_file_fails_still_stores_every_answer(
    fresh_emulator: Any, make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.factory import open_connector

    def full(self: AtomicFile, lines: Any) -> None:
        raise OutputWriteError("cannot write the results: the disk is full", path=str(self))

    monkeypatch.setattr(AtomicFile, "write", full)
    schema = {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}
    items = [
        JobItem(
            f"id{i}",
            Request("gpt-4o-mini", (Message("user", f"word {i}"),), json_schema=schema),
            i + 1,
        )
        for i in range(12)
    ]
    out = tmp_path / "out.jsonl"
    # Some answers come late: lines are written (and refused) while they are in flight.
    fresh_emulator.configure(slow=0.5, slow_seconds=0.3)
    connector = open_connector(make_settings(fresh_emulator))
    try:
        with pytest.raises(OutputWriteError):
            await run_requests(connector, items, out)
        keys = [item.request.key for item in items]
        assert set(connector.store.get_results(connector.provider_name, keys)) == set(keys)
    finally:
        await connector.aclose()
    assert fresh_emulator.billing()["immediate"]["requests"] == 12
    assert not out.exists() and not temp_paths(out)


def test_two_writers_of_one_results_file_never_touch_each_others_lines(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    check_writable(out)
    with AtomicFile(out) as first:
        first.write([b'{"id":"A1"}\n'])
        # A second command given the same --out starts meanwhile: its probe
        # and its own results file leave the first one's lines alone.
        check_writable(out)
        with AtomicFile(out) as second:
            second.write([b'{"id":"B1"}\n'])
            assert len(temp_paths(out)) == 2
            first.write([b'{"id":"A2"}\n'])
            first.commit()
            assert out.read_bytes() == b'{"id":"A1"}\n{"id":"A2"}\n'
            second.commit()
    # The last to finish wins, whole; nothing is left behind.
    assert out.read_bytes() == b'{"id":"B1"}\n' and not temp_paths(out)


def test_a_results_file_gets_the_mode_a_plain_file_would(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    with AtomicFile(out) as sink:
        sink.write([b"x\n"])
        sink.commit()
    assert out.stat().st_mode == plain.stat().st_mode


class _FakeConnector:
    """Immediate mode: each request's answer comes after ``delay`` seconds, or its error."""

    batch_mode = False

    def __init__(self, delay: float, fail: dict[int, BaseException]) -> None:
        self.delay, self.fail = delay, fail
        self.started = 0
        self.ended = 0

    async def generate(self, request: Request) -> Response:
        i = int(request.messages[-1].content.split()[-1])
        self.started += 1
        await asyncio.sleep(self.delay * (i % 3 + 1))
        self.ended += 1
        if i in self.fail:
            raise self.fail[i]
        return _answer(i)


async def test_a_store_error_wins_over_a_refused_file_and_every_outcome_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    def full(self: AtomicFile, lines: Any) -> None:
        raise OutputWriteError("cannot write the results: the disk is full", path=str(self))

    monkeypatch.setattr(AtomicFile, "write", full)
    fail: dict[int, BaseException] = {
        i: StoreWriteError(f"store full at {i}") for i in range(5, 30)
    }
    connector = _FakeConnector(0.005, fail)
    out = tmp_path / "out.jsonl"
    raised = ""
    try:
        await run_requests(connector, _items(30), out)  # type: ignore[arg-type]
    except StoreWriteError as exc:  # not kept: its traceback would keep the requests alive
        raised = str(exc)
    assert raised == "store full at 5"
    assert connector.ended == 30
    # The errors' tracebacks hold the run's frame, and with it the requests' tasks.
    del connector, fail
    gc.collect()
    await _turns()
    assert "never retrieved" not in caplog.text
    assert not out.exists() and not temp_paths(out)


async def test_a_cancelled_run_stops_its_requests_and_leaves_no_results_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    connector = _FakeConnector(0.05, {})
    out = tmp_path / "out.jsonl"
    run = asyncio.ensure_future(run_requests(connector, _items(12), out))  # type: ignore[arg-type]
    await asyncio.sleep(0.06)  # the first answers are in, the others in flight
    assert 0 < connector.ended < 12
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    ended = connector.ended
    await asyncio.sleep(0.2)
    assert connector.ended == ended, "a request went on after the run was cancelled"
    gc.collect()
    await _turns()
    assert "never retrieved" not in caplog.text
    assert not out.exists() and not temp_paths(out)
