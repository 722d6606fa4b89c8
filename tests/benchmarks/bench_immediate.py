"""Immediate path: N structured calls at concurrency 64, connector vs raw OpenAI SDK vs LiteLLM.

All three clients call the same emulator process on loopback with the same
``response_format`` (strict JSON schema of ``Entry``) and validate the answer
with pydantic; each keeps at most 64 calls in flight. Every call is distinct
(its own prompt; the connector gets a fresh store per run, so nothing comes
from its cache). The clients run in turns, ``--rounds`` times (3 by default),
each after a warm-up, so that connection pools are open and a slow start of
one does not count. Each round's connector / SDK ratio is measured side by
side; the verdict is the median of those ratios, the rates printed the
medians over the rounds.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.benchmarks.common import (
    EmulatorProcess,
    Entry,
    Row,
    clock,
    finish,
    parser,
    prompt,
    settings,
    size,
)

CONCURRENCY = 64
MODEL = "gpt-4o-mini"

_offsets = itertools.count(1_000_000, 1_000_000)


async def _drive(n: int, call: Callable[[str], Awaitable[Entry]]) -> None:
    """``n`` calls, at most ``CONCURRENCY`` at a time, every prompt new."""
    offset = next(_offsets)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> Entry:
        async with gate:
            return await call(prompt(offset + i))

    results = await asyncio.gather(*(one(i) for i in range(n)))
    assert len(results) == n and all(isinstance(r, Entry) for r in results)


def _response_format() -> dict[str, Any]:
    from providers.schema import schema_for

    return {
        "type": "json_schema",
        "json_schema": {"name": "Entry", "schema": dict(schema_for(Entry)), "strict": True},
    }


async def run_connector(emu: EmulatorProcess, n: int, work: Path, run: int) -> tuple[float, float]:
    """Our connector in immediate mode; returns (wall, cpu) seconds."""
    from plugins.factory import open_connector

    connector = open_connector(settings(emu.url, work / f"immediate-{run}.db"))
    try:

        async def call(text: str) -> Entry:
            return await connector.structured(text, Entry, task="bench")

        await _drive(min(200, n), call)
        with clock() as c:
            await _drive(n, call)
    finally:
        await connector.aclose()
    return c.wall, c.cpu


async def run_openai(emu: EmulatorProcess, n: int) -> tuple[float, float]:
    """The raw ``openai.AsyncOpenAI`` client: ``chat.completions.create`` + pydantic."""
    import openai

    client = openai.AsyncOpenAI(base_url=emu.url + "/v1", api_key="sk-bench-dummy", max_retries=0)
    fmt = _response_format()
    try:

        async def call(text: str) -> Entry:
            completion = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": text}],
                response_format=fmt,  # type: ignore[arg-type]
            )
            return Entry.model_validate_json(completion.choices[0].message.content or "")

        await _drive(min(200, n), call)
        with clock() as c:
            await _drive(n, call)
    finally:
        await client.close()
    return c.wall, c.cpu


async def run_litellm(emu: EmulatorProcess, n: int) -> tuple[float, float]:
    """``litellm.acompletion`` with the same response format + pydantic."""
    import litellm

    fmt = _response_format()

    async def call(text: str) -> Entry:
        response = await litellm.acompletion(
            model=f"openai/{MODEL}",
            api_base=emu.url + "/v1",
            api_key="sk-bench-dummy",
            messages=[{"role": "user", "content": text}],
            response_format=fmt,
            num_retries=0,
        )
        return Entry.model_validate_json(response.choices[0].message.content or "")

    await _drive(min(200, n), call)
    with clock() as c:
        await _drive(n, call)
    return c.wall, c.cpu


def main(argv: list[str] | None = None) -> None:
    """Run the immediate benchmark and print its figures and table."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help="calls per client (default 5,000)")
    p.add_argument("--rounds", type=int, default=None, help="turns per client (default 3)")
    args = p.parse_args(argv)
    n = args.n or size(args, 5_000, 2_000, 100)
    rounds = args.rounds or (1 if args.tiny else 3)
    print(f"immediate path: {n:,} structured calls per client, concurrency {CONCURRENCY}")
    seen: dict[str, list[tuple[float, float]]] = {}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lexibatch-bench-") as tmp, EmulatorProcess() as emu:
        work = Path(tmp)
        for r in range(rounds):
            runs: list[tuple[str, Callable[[], Awaitable[tuple[float, float]]]]] = [
                ("connector", lambda r=r: run_connector(emu, n, work, r)),  # type: ignore[misc]
                ("openai SDK", lambda: run_openai(emu, n)),
                ("litellm", lambda: run_litellm(emu, n)),
            ]
            for name, make in runs:
                wall, cpu = asyncio.run(make())
                print(
                    f"  round {r + 1} {name:<11} {n / wall:8,.0f} calls/s  "
                    f"client CPU {cpu / n * 1e6:6.0f} us per call"
                )
                seen.setdefault(name, []).append((wall, cpu))
            # Side by side in the same round: the machine's mood is shared.
            ratio = seen["openai SDK"][-1][0] / seen["connector"][-1][0]
            ratios.append(ratio)
            print(f"  round {r + 1} connector / openai SDK {ratio:.3f} x")
    rate = {name: statistics.median(n / w for w, _ in runs) for name, runs in seen.items()}
    cpu_us = {name: statistics.median(c for _, c in runs) / n * 1e6 for name, runs in seen.items()}
    ratio = statistics.median(ratios)
    rows = [
        Row("connector", rate["connector"], "calls/s", "-", None),
        Row("openai SDK (raw)", rate["openai SDK"], "calls/s", "-", None),
        Row("litellm", rate["litellm"], "calls/s", "-", None),
        Row("connector / openai SDK", ratio, "x", ">= 0.9x", ratio >= 0.9),
        Row("connector / litellm", rate["connector"] / rate["litellm"], "x", "-", None),
        Row("connector CPU per call", cpu_us["connector"], "us", "-", None),
        Row("openai SDK CPU per call", cpu_us["openai SDK"], "us", "-", None),
        Row("litellm CPU per call", cpu_us["litellm"], "us", "-", None),
    ]
    finish("immediate path", rows, args.report)


if __name__ == "__main__":
    sys.exit(main())
