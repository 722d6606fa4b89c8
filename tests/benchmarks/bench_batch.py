"""Batch path: N structured requests through the connector's batch strategy, end to end.

The emulator runs as a separate process on loopback (batches complete at the
first poll). A warm-up batch of 100 requests runs first, unmeasured: the SDK
imports its files and batches resources on their first use. Requests are
queued with ``connector.batch_strategy().submit()`` (a promise per request,
no coroutine per request), yielding to the event loop
every ``CHUNK`` requests so that a shard sealed at the provider limit is
uploaded while the next one is still being built; ``execute_batch()`` then
dispatches the rest and waits for every result.

The client's CPU (``time.process_time``: this process only; the emulator is
another process) is split by timing the strategy's phases from outside:

* building: ``build_request`` + ``submit`` (key hash, journal row, encoded
  line spooled to the shard file) and sealing (fsync, shard journal);
* finishing: parsing result lines (``parse_result_line``) and
  ``finish_items`` (validate, ledger, cache, journal state, resolve futures);
* the rest: HTTP transport (upload, create, poll, download) and the event loop.

The floor, measured in the same run on the same requests and result lines:
``orjson.dumps`` of every batch input line, ``orjson.loads`` of every result
line and ``Entry.model_validate_json`` of every answer. Beside it, the
journal alone: the store writes our path makes for the same requests, with
the rows prebuilt (see :func:`measure_journal`), which is what keeping every
request and result crash-safe costs before any other work. And the bare
pipeline (see :func:`measure_bare`): the least any asyncio batch client does
per request in Python, with no journal, no cache, no costs and no HTTP.

This VM's timing noise is large, so our path and its floor run ``--rounds``
times (3 by default), side by side, each round on a fresh store: every figure
printed is the median over the rounds, the CPU ratio the median of each
round's ratio, and each round's own figures are printed as it ends.

The peer (``instructor.batch.BatchProcessor``, from the ``peers`` extra) does
the same work the way its documentation shows: write the batch file, submit it,
poll, download and parse the results, one batch per 50,000 requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.benchmarks.common import (
    EmulatorProcess,
    Entry,
    Row,
    add_rounds,
    clock,
    finish,
    parser,
    prompt,
    settings,
    size,
)
from tests.benchmarks.floor import measure_floor

CHUNK = 1000
WARM_UP = 100
PROVIDER_LIMIT = 50_000  # OpenAI's requests per batch
#: The targets: requests per second end to end, and client CPU against the
#: bare pipeline plus the journal alone (what any durable Python client pays).
RATE_TARGET = 20_000
CPU_TARGET = 1.5


class Meter:
    """CPU seconds per phase, measured by wrapping the strategy's methods from outside."""

    def __init__(self) -> None:
        self.build = 0.0
        self.seal = 0.0
        self.parse = 0.0
        self.finish = 0.0
        self.gc = 0.0
        self.sqlite = 0.0
        self.sqlite_calls = 0
        self.in_sqlite = False
        self._gc_start = 0.0
        self._depth = 0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the CPU time of the block to ``name`` (nested blocks count once, outermost)."""
        if self._depth:
            yield
            return
        self._depth += 1
        start = time.process_time()
        try:
            yield
        finally:
            setattr(self, name, getattr(self, name) + time.process_time() - start)
            self._depth -= 1

    def gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: wall time of the collector's passes (it never waits)."""
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc += time.perf_counter() - self._gc_start

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed into phase ``name``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return fn(*args, **kwargs)

        return timed


def _timed_into(meter: Meter, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with this thread's CPU time added to ``meter.sqlite``.

    CPU, not wall time: a commit's fsync and a wait for the write lock are
    not work done. The store makes a few hundred such calls for the whole
    run, so the clock's own cost does not count.
    """

    def timed(*args: Any, **kwargs: Any) -> Any:
        if meter.in_sqlite:  # a commit inside a timed write counts once
            return fn(*args, **kwargs)
        meter.in_sqlite = True
        meter.sqlite_calls += 1
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            meter.sqlite += time.thread_time() - start
            meter.in_sqlite = False

    return timed


def _instrument(connector: Any, meter: Meter) -> None:
    import providers.openai as openai_provider

    strategy = connector.batch_strategy()
    store = connector.store
    # Every statement the store sends passes through one of these (nested
    # calls count once): the writes of _write(), the reads, BEGIN and COMMIT.
    for name in (
        "_changes",
        "_execute",
        "_execute_many",
        "_fetch_one",
        "_read",
        "_begin",
        "_commit",
    ):
        setattr(store, name, _timed_into(meter, getattr(store, name)))
    strategy.accumulator.on_sealed = meter.wrap("seal", strategy.accumulator.on_sealed)
    strategy._dispatch_all = meter.wrap("seal", strategy._dispatch_all)
    settlement = strategy.settlement
    for name in ("finish_items", "finish_missing", "shard_answered", "shard_collected"):
        setattr(settlement, name, meter.wrap("finish", getattr(settlement, name)))
    original = openai_provider.parse_result_line

    # Per line, so a cheap wall clock (this section never waits): process_time is a syscall.
    def parse(line: bytes | str, provider: str = "openai") -> Any:
        start = time.perf_counter()
        try:
            return original(line, provider)
        finally:
            meter.parse += time.perf_counter() - start

    openai_provider.parse_result_line = parse  # type: ignore[assignment]


async def run_ours(emu: EmulatorProcess, n: int, work: Path, profile: bool) -> dict[str, Any]:
    """Our batch path; returns its figures."""
    from plugins.factory import open_connector

    # The floor below reads the same output files again: they are kept.
    connector = open_connector(settings(emu.url, work / "ours.db", delete_files=False))
    meter = Meter()
    profiler = cProfile.Profile() if profile else None
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        build = connector.build_request
        # Warm-up, not measured: one small batch through the whole lifecycle
        # (the SDK imports its files and batches resources on first use).
        warm = [
            strategy.submit(build(f"warm-up {i}", Entry, task="warm-up")) for i in range(WARM_UP)
        ]
        await connector.execute_batch()
        assert all(p.done() for p in warm)
        warm_shards = {s.shard_id for s in connector.store.shards()}
        _instrument(connector, meter)
        submit = strategy.submit
        emu_cpu0 = emu.cpu_seconds()
        if profiler:
            profiler.enable()
        gc.callbacks.append(meter.gc_callback)
        with clock() as total:
            promises = []
            for start in range(0, n, CHUNK):
                with meter.phase("build"):
                    promises.extend(
                        submit(build(prompt(i), Entry, task="bench"))
                        for i in range(start, min(start + CHUNK, n))
                    )
                await asyncio.sleep(0)
            await connector.execute_batch()
            outputs = [p.result().output for p in promises]
        gc.callbacks.remove(meter.gc_callback)
        if profiler:
            profiler.disable()
        emu_cpu = emu.cpu_seconds() - emu_cpu0
        assert len(outputs) == n and all(isinstance(o, Entry) for o in outputs)
        shards = [s for s in connector.store.shards() if s.shard_id not in warm_shards]
        assert sum(s.requests for s in shards) == n
        batch_ids = [s.batch_id for s in shards]
    finally:
        await connector.aclose()
    figures = {
        "wall": total.wall,
        "cpu": total.cpu,
        "build": meter.build + meter.seal,
        "parse": meter.parse,
        "finish": meter.finish,
        "gc": meter.gc,
        "sqlite": meter.sqlite,
        "sqlite_calls": meter.sqlite_calls,
        "emulator_cpu": emu_cpu,
        "shards": len(batch_ids),
        "batch_ids": batch_ids,
    }
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(
            os.environ.get("LEXIBATCH_BENCH_PROFILE_SORT", "tottime")
        ).print_stats(int(os.environ.get("LEXIBATCH_BENCH_PROFILE_LINES", "25")))
        figures["profile"] = out.getvalue()
    return figures


def run_instructor(emu: EmulatorProcess, n: int, work: Path) -> dict[str, Any] | None:
    """instructor's batch module doing the same work; ``None`` when it is not installed."""
    try:
        from instructor.batch import BatchProcessor, BatchSuccess
    except ImportError:
        return None
    os.environ["OPENAI_BASE_URL"] = emu.url + "/v1"
    processor = BatchProcessor("openai/gpt-4o-mini", Entry)
    emu_cpu0 = emu.cpu_seconds()
    quiet = io.StringIO()
    with clock() as total, contextlib.redirect_stdout(quiet):
        results: list[Any] = []
        for part, start in enumerate(range(0, n, PROVIDER_LIMIT)):
            messages = [
                [{"role": "user", "content": prompt(i)}]
                for i in range(start, min(start + PROVIDER_LIMIT, n))
            ]
            path = processor.create_batch_from_messages(
                messages, file_path=str(work / f"instructor-{part}.jsonl")
            )
            batch_id = processor.submit_batch(path)
            while processor.get_batch_status(batch_id)["status"] != "completed":
                time.sleep(0.02)
            results.extend(processor.retrieve_results(batch_id))
    emu_cpu = emu.cpu_seconds() - emu_cpu0
    assert len(results) == n and all(isinstance(r, BatchSuccess) for r in results)
    assert all(isinstance(r.result, Entry) for r in results)
    return {"wall": total.wall, "cpu": total.cpu, "emulator_cpu": emu_cpu}


def _over_bound(ours: dict[str, Any], floor: dict[str, Any]) -> float:
    """Client CPU over the bare pipeline plus the journal alone, in one round."""
    return float(ours["cpu"] / (floor["bare"] + floor["journal"]))


def _round_line(i: int, n: int, ours: dict[str, Any], floor: dict[str, Any]) -> str:
    return (
        f"  round {i + 1}: {n / ours['wall']:,.0f} requests/s, client CPU "
        f"{_us(ours['cpu'], n):.1f} us, journal alone {_us(floor['journal'], n):.1f} us, "
        f"bare {_us(floor['bare'], n):.1f} us, CPU / (bare + journal) "
        f"{_over_bound(ours, floor):.2f}x"
    )


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the rounds (others from the first round)."""
    first = rounds[0]
    return {
        key: statistics.median(r[key] for r in rounds)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else value
        for key, value in first.items()
    }


def _us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def main(argv: list[str] | None = None) -> None:
    """Run the batch benchmark and print its figures and table."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help="requests (default 100,000)")
    p.add_argument("--no-peer", action="store_true", help="skip instructor")
    p.add_argument(
        "--profile",
        action="store_true",
        help="print cProfile's top functions (LEXIBATCH_BENCH_PROFILE_LINES of them, 25 by "
        "default, sorted by LEXIBATCH_BENCH_PROFILE_SORT: tottime, cumulative, ...)",
    )
    add_rounds(p, "--rounds", "rounds of our path and its floor, side by side")
    args = p.parse_args(argv)
    n = args.n or size(args, 100_000, 20_000, 300)
    rounds = max(1, args.rounds)
    print(
        f"batch path: {n:,} structured requests, emulator as a separate process; "
        f"{rounds} round(s) of our path and its floor, medians reported"
    )
    with tempfile.TemporaryDirectory(prefix="lexibatch-bench-") as tmp, EmulatorProcess() as emu:
        measured: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for i in range(rounds):
            work = Path(tmp) / f"round-{i}"
            work.mkdir()
            ours = asyncio.run(run_ours(emu, n, work, args.profile and i == 0))
            floor = measure_floor(emu, n, work, ours["batch_ids"])
            measured.append((ours, floor))
            print(_round_line(i, n, ours, floor))
        peer = None if args.no_peer else run_instructor(emu, n, Path(tmp))
    ours, floor = _medians([m[0] for m in measured]), _medians([m[1] for m in measured])
    # The ratio's median over the rounds (each round's ratio is measured side by side).
    over_bound = statistics.median(_over_bound(o, f) for o, f in measured)
    rate = n / ours["wall"]
    other = ours["cpu"] - ours["build"] - ours["parse"] - ours["finish"]
    floor_total = floor["dumps"] + floor["loads"] + floor["validate"]
    print(
        f"\nours (medians): {ours['wall']:.2f} s wall, {rate:,.0f} requests/s, "
        f"{ours['shards']} batches; "
        f"client CPU {ours['cpu']:.2f} s, emulator CPU {ours['emulator_cpu']:.2f} s"
    )
    print(
        f"  client CPU per request: {_us(ours['cpu'], n):.1f} us = "
        f"building {_us(ours['build'], n):.1f} + parsing {_us(ours['parse'], n):.1f} "
        f"+ finishing {_us(ours['finish'], n):.1f} + transport/loop {_us(other, n):.1f}"
    )
    print(
        f"  across those phases: SQLite store calls {_us(ours['sqlite'], n):.1f} us "
        f"({ours['sqlite_calls']:,} calls), "
        f"Python's garbage collector {_us(ours['gc'], n):.1f} us "
        f"(the caller keeps {n:,} promises and validated results alive)"
    )
    print(
        f"floor: {_us(floor_total, n):.1f} us per request = orjson dumps "
        f"{_us(floor['dumps'], n):.1f} + orjson loads {_us(floor['loads'], n):.1f} "
        f"+ pydantic validate {_us(floor['validate'], n):.1f}"
    )
    print(
        f"the journal alone (the same store writes, rows prebuilt): "
        f"{_us(floor['journal'], n):.1f} us per request = "
        f"{floor['journal'] / floor_total:.1f}x the floor"
    )
    print(
        f"the bare pipeline (no journal, cache, costs or HTTP): {_us(floor['bare'], n):.1f} us "
        f"per request = {floor['bare'] / floor_total:.1f}x the floor; bare + journal alone "
        f"= {(floor['bare'] + floor['journal']) / floor_total:.1f}x the floor"
    )
    ratio = ours["cpu"] / floor_total
    bound = floor["bare"] + floor["journal"]
    print(
        f"targets: {rate:,.0f} requests/s = {rate / RATE_TARGET:.2f}x the {RATE_TARGET:,} "
        f"target; client CPU / (bare + journal alone) = {over_bound:.2f}x "
        f"(target <= {CPU_TARGET}x)"
    )
    rows = [
        Row("batch end to end", rate, "req/s", f">= {RATE_TARGET:,}", rate >= RATE_TARGET),
        Row("batch rate / target", rate / RATE_TARGET, "x", ">= 1x", rate >= RATE_TARGET),
        Row("client CPU per request", _us(ours["cpu"], n), "us", "-", None),
        Row("  building", _us(ours["build"], n), "us", "-", None),
        Row("  finishing (parse+finish)", _us(ours["parse"] + ours["finish"], n), "us", "-", None),
        Row("  transport and loop", _us(other, n), "us", "-", None),
        Row("  of all: SQLite store", _us(ours["sqlite"], n), "us", "-", None),
        Row("  of all: garbage collector", _us(ours["gc"], n), "us", "-", None),
        Row("floor per request", _us(floor_total, n), "us", "-", None),
        Row("client CPU / floor", ratio, "x", "-", None),
        Row("journal alone per request", _us(floor["journal"], n), "us", "-", None),
        Row("journal alone / floor", floor["journal"] / floor_total, "x", "-", None),
        Row("bare pipeline per request", _us(floor["bare"], n), "us", "-", None),
        Row("bare pipeline / floor", floor["bare"] / floor_total, "x", "-", None),
        Row("(bare + journal) / floor", bound / floor_total, "x", "-", None),
        Row(
            "client CPU / (bare + journal)",
            over_bound,
            "x",
            f"<= {CPU_TARGET}x",
            over_bound <= CPU_TARGET,
        ),
        Row(
            "build+finish / floor",
            (ours["build"] + ours["parse"] + ours["finish"]) / floor_total,
            "x",
            "-",
            None,
        ),
    ]
    if args.no_peer:
        print("\ninstructor: skipped (--no-peer)")
    elif peer is None:
        print("\ninstructor: skipped (not installed: pip install -e '.[peers]')")
    else:
        peer_rate = n / peer["wall"]
        print(
            f"instructor: {peer['wall']:.2f} s wall, {peer_rate:,.0f} requests/s; client CPU "
            f"{peer['cpu']:.2f} s ({_us(peer['cpu'], n):.1f} us per request), "
            f"emulator CPU {peer['emulator_cpu']:.2f} s"
        )
        rows += [
            Row("instructor end to end", peer_rate, "req/s", "-", None),
            Row("ours / instructor throughput", rate / peer_rate, "x", "-", None),
            Row("ours / instructor client CPU", ours["cpu"] / peer["cpu"], "x", "-", None),
        ]
    if "profile" in ours:
        print("\nprofile of our batch path (client process):\n" + ours["profile"])
    finish("batch path", rows, args.report)


if __name__ == "__main__":
    sys.exit(main())
