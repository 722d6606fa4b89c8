"""Memory: N queued batch requests with 1 KB and with 4 KB prompts; peak RSS of the queuing process.

Each size runs in a fresh subprocess that opens a connector in batch mode and
queues N structured requests with ``batch_strategy().submit()`` (the caller
keeps every promise, as a real caller awaiting them would), yielding to the
event loop every 1,000 requests. The provider's batch limits and
``batch.max_requests`` are raised above N and ``batch.linger`` is an hour, so
every request stays queued: journaled in the store, its encoded line spooled to
the open shard file, and its pending record and promise in memory. Nothing is
dispatched; closing the connector leaves the requests queued in the journal.
The figure is ``ru_maxrss`` of that subprocess, which includes the interpreter
and every imported module (also reported, measured before queuing).

Beside it, the typed await: N/10 calls to ``connector.structured()`` (1 KB
prompts), each a task awaiting its batch result, as a caller gathering them
holds them; and, measured the same way, the same number of bare asyncio tasks
each holding its prompt and awaiting a plain future — what any caller awaiting
that many results pays before any library. Reported as the Python
allocations held per awaiting request (``tracemalloc``), ours against bare.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from tests.benchmarks.common import ROOT, Entry, Row, finish, parser, peak_rss_mb, prompt, size

HUGE = 1 << 40
#: The target for 1,000,000 queued requests (MiB), whatever the prompt size.
PEAK_TARGET = 500


def _settings(work: Path) -> Any:
    from plugins.config import Settings

    return Settings.model_validate(
        {
            "connector": {"provider": "openai", "db": str(work / "memory.db")},
            "providers": {
                "openai": {
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "OPENAI_API_KEY",
                    "max_batch_requests": HUGE,
                    "max_batch_bytes": HUGE,
                }
            },
            "batch": {"linger": 3600, "max_requests": HUGE, "max_bytes": HUGE},
        }
    )


async def _queue(n: int, prompt_bytes: int, work: Path) -> dict[str, Any]:
    from plugins.factory import open_connector

    settings = _settings(work)
    connector = open_connector(settings)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        promises = []
        pad = prompt(0, prompt_bytes)[len(prompt(0)) :]
        for start in range(0, n, 1000):
            promises.extend(
                strategy.submit(connector.build_request(prompt(i) + pad, Entry, task="mem"))
                for i in range(start, min(start + 1000, n))
            )
            await asyncio.sleep(0)
        queued = len(strategy._pending)
        seconds = time.perf_counter() - started
        gc.collect()
        peak = peak_rss_mb()
        objects = len(gc.get_objects())
        spool_mb = sum(f.stat().st_size for f in settings.spool_path.glob("*")) / 2**20
    finally:
        await connector.aclose()
    return {
        "n": n,
        "prompt_bytes": prompt_bytes,
        "queued": queued,
        "baseline_mb": baseline,
        "peak_mb": peak,
        "seconds": seconds,
        "objects": objects,
        "spool_mb": spool_mb,
        "db_mb": (work / "memory.db").stat().st_size / 2**20,
    }


async def _await(n: int, prompt_bytes: int, work: Path, bare: bool) -> dict[str, Any]:
    """``n`` tasks awaiting a result: ``connector.structured()`` calls, or bare futures."""
    from plugins.factory import open_connector

    connector = open_connector(_settings(work))
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = []

    async def bare_call(text: str) -> Any:
        future = loop.create_future()
        futures.append(future)
        return text if await future else None

    pad = prompt(0, prompt_bytes)[len(prompt(0)) :]
    tasks: list[asyncio.Task[Any]] = []
    connector.enable_batch_mode()
    gc.collect()
    tracemalloc.start()
    try:
        for start in range(0, n, 1000):
            for i in range(start, min(start + 1000, n)):
                text = prompt(i) + pad
                call = bare_call(text) if bare else connector.structured(text, Entry, task="mem")
                tasks.append(asyncio.ensure_future(call))
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        waiting = sum(not t.done() for t in tasks)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await connector.aclose()
    return {"n": n, "waiting": waiting, "held": held}


def child(n: int, prompt_bytes: int, mode: str) -> None:
    """Queue (``submit``) or await (``await``, ``bare``) ``n`` requests; print the figures."""
    with tempfile.TemporaryDirectory(prefix="lexibatch-bench-") as tmp:
        if mode == "submit":
            figures = asyncio.run(_queue(n, prompt_bytes, Path(tmp)))
        else:
            figures = asyncio.run(_await(n, prompt_bytes, Path(tmp), bare=mode == "bare"))
    print(json.dumps(figures))


def _run_child(n: int, prompt_bytes: int, mode: str = "submit") -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.bench_memory",
            "--child",
            str(n),
            str(prompt_bytes),
            mode,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run the memory benchmark and print its figures and table."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help="queued requests (default 1,000,000)")
    p.add_argument("--child", nargs=3, default=None, help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2])
        return
    n = args.n or size(args, 1_000_000, 200_000, 2_000)
    print(f"memory: {n:,} queued batch requests, prompts of 1 KB and 4 KB")
    runs = {kb: _run_child(n, kb * 1024) for kb in (1, 4)}
    for kb, f in runs.items():
        per = (f["peak_mb"] - f["baseline_mb"]) * 2**20 / n
        print(
            f"  {kb} KB prompts: peak RSS {f['peak_mb']:,.0f} MiB (after imports and opening: "
            f"{f['baseline_mb']:,.0f} MiB; {per:,.0f} bytes per queued request), "
            f"{f['queued']:,} queued in {f['seconds']:.1f} s, "
            f"{f['objects']:,} live objects; on disk: spool {f['spool_mb']:,.0f} MiB, "
            f"store {f['db_mb']:,.0f} MiB"
        )
    one, four = runs[1]["peak_mb"], runs[4]["peak_mb"]
    # Flat: of the 3 KB more prompt per request, how much stays in memory.
    kept = max(four - one, 0.0) * 2**20 / n / 3072
    print(
        f"  4 KB vs 1 KB prompts: {(four - one) * 2**20 / n:,.0f} bytes more per request "
        f"({kept:.1%} of the 3 KB)"
    )
    awaiting = max(n // 10, 1)
    per_await = {}
    for mode in ("await", "bare"):
        f = _run_child(awaiting, 1024, mode)
        assert f["waiting"] == awaiting, f
        per_await[mode] = f["held"] / awaiting
    print(
        f"  typed await, {awaiting:,} connector.structured() calls awaiting their batch "
        f"(1 KB prompts): {per_await['await']:,.0f} bytes per request; bare asyncio tasks "
        f"holding the same prompts and awaiting a future: {per_await['bare']:,.0f} bytes "
        f"(Python allocations held while they wait, tracemalloc)"
    )
    rows = [
        Row("peak RSS, 1 KB prompts", one, "MiB", f"< {PEAK_TARGET} MiB", one < PEAK_TARGET),
        Row("peak RSS, 4 KB prompts", four, "MiB", f"< {PEAK_TARGET} MiB", four < PEAK_TARGET),
        Row("prompt bytes kept, 4 KB vs 1 KB", kept * 100, "%", "flat (< 10%)", kept < 0.1),
        Row("awaiting structured(), per request", per_await["await"], "B", "-", None),
        Row("bare awaiting task, per request", per_await["bare"], "B", "-", None),
        Row(
            "awaiting: structured() / bare task",
            per_await["await"] / per_await["bare"],
            "x",
            "-",
            None,
        ),
    ]
    finish("memory", rows, args.report)


def argparse_hidden() -> str:
    """Help text of an internal option (suppressed)."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
