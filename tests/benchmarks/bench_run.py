"""`lexibatch run` beside the library: the same N requests both ways, in one run.

Both send N structured requests in batch mode to the same emulator process
(batches complete at the first poll), each into a fresh store:

* the library path, in this process, as ``bench_batch`` measures it: a
  warm-up batch first, then ``connector.build_request()`` and
  ``batch_strategy().submit()`` per request, ``execute_batch()``, every
  result read; timed from the first request to the last result;
* ``lexibatch run FILE --mode batch --out OUT``, a fresh process as a user
  runs it, on a request file of the same prompts with the same schema as a
  raw JSON schema: timed from start to exit, its CPU read from
  ``RUSAGE_CHILDREN``, the project's modules compiled to bytecode
  beforehand as an install's are. The process's fixed cost (starting Python
  and importing what a run imports) is measured apart and printed beside it.

The target: the command line reaches at least 0.7x the library's rate.
This VM's timing noise is large, so both run ``--rounds`` times (3 by
default), alternating, each on a fresh store: the figures printed are medians
over the rounds, the ratios the medians of each round's ratio.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.common import (
    ROOT,
    EmulatorProcess,
    Entry,
    Row,
    add_rounds,
    child_env,
    children_cpu,
    clock,
    compile_sources,
    finish,
    parser,
    prompt,
    settings,
    size,
)

CHUNK = 1000
WARM_UP = 100
TARGET = 0.7

# What a `lexibatch run` process imports before it reads its first request.
_IMPORTS = (
    "import synthesis.cli, plugins.jobs, plugins.factory, providers.openai, "
    "openai.resources.files, openai.resources.batches"
)


async def run_library(emu: EmulatorProcess, n: int, work: Path) -> dict[str, float]:
    """The library path (``submit`` per request); wall and CPU seconds of the timed part."""
    from plugins.factory import open_connector

    connector = open_connector(settings(emu.url, work / "library.db"))
    try:
        connector.enable_batch_mode()
        strategy = connector.batch_strategy()
        build = connector.build_request
        warm = [
            strategy.submit(build(f"warm-up {i}", Entry, task="warm-up")) for i in range(WARM_UP)
        ]
        await connector.execute_batch()
        assert all(p.done() for p in warm)
        submit = strategy.submit
        with clock() as took:
            promises = []
            for start in range(0, n, CHUNK):
                promises.extend(
                    submit(build(prompt(i), Entry, task="bench"))
                    for i in range(start, min(start + CHUNK, n))
                )
                await asyncio.sleep(0)
            await connector.execute_batch()
            outputs = [p.result().output for p in promises]
        assert len(outputs) == n and all(isinstance(o, Entry) for o in outputs)
    finally:
        await connector.aclose()
    return {"wall": took.wall, "cpu": took.cpu}


def _config(url: str) -> str:
    # The batch settings of `settings()` in common, as a config file.
    return (
        "[connector]\n"
        'provider = "openai"\n'
        'model = "gpt-4o-mini"\n'
        'db = "run.db"\n'
        "[providers.openai]\n"
        f'base_url = "{url}/v1"\n'
        "max_concurrency = 64\n"
        "[batch]\n"
        "linger = 0.5\n"
        "poll_interval = 0.02\n"
        "max_poll_interval = 0.05\n"
    )


def run_command(emu: EmulatorProcess, n: int, work: Path) -> dict[str, float]:
    """``lexibatch run --mode batch`` as a fresh process; its wall and CPU seconds."""
    compile_sources()
    (work / "lexibatch.toml").write_text(_config(emu.url))
    schema = Entry.model_json_schema()
    requests = work / "requests.jsonl"
    with requests.open("wb") as fh:
        for i in range(n):
            line = {"id": f"r{i}", "prompt": prompt(i), "task": "bench", "schema": schema}
            fh.write(json.dumps(line).encode() + b"\n")
    out = work / "results.jsonl"
    cpu0, wall0 = children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthesis.cli", "run", str(requests),
         "--mode", "batch", "--out", str(out)],
        cwd=work, capture_output=True, text=True, env=child_env(),
    )  # fmt: skip
    wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"lexibatch run failed: {done.stderr.strip()[-2000:]}")
    with out.open("rb") as fh:
        statuses = [json.loads(line)["status"] for line in fh]
    assert len(statuses) == n and set(statuses) == {"succeeded"}, statuses[:3]
    # The fixed part: a fresh interpreter importing what the run imports.
    cpu0, wall0 = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", _IMPORTS], cwd=ROOT, check=True, env=child_env())
    start_wall, start_cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    return {"wall": wall, "cpu": cpu, "start_wall": start_wall, "start_cpu": start_cpu}


def _us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def main(argv: list[str] | None = None) -> None:
    """Run both paths on the same requests and print their rates, CPU and ratios."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=None, help="requests (default 100,000)")
    add_rounds(p, "--rounds", "rounds of both paths, side by side")
    args = p.parse_args(argv)
    n = args.n or size(args, 100_000, 20_000, 300)
    rounds = max(1, args.rounds)
    print(
        f"lexibatch run vs the library: {n:,} structured requests each, batch mode; "
        f"{rounds} round(s) of both, medians reported"
    )
    measured: list[tuple[dict[str, float], dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="lexibatch-bench-") as tmp, EmulatorProcess() as emu:
        for i in range(rounds):
            work = Path(tmp) / f"round-{i}"
            work.mkdir()
            library = asyncio.run(run_library(emu, n, work))
            command = run_command(emu, n, work)
            measured.append((library, command))
            print(
                f"  round {i + 1}: library {n / library['wall']:,.0f} requests/s, run "
                f"{n / command['wall']:,.0f} requests/s, run / library rate "
                f"{library['wall'] / command['wall']:.2f}x"
            )
    library = {k: statistics.median(m[0][k] for m in measured) for k in measured[0][0]}
    command = {k: statistics.median(m[1][k] for m in measured) for k in measured[0][1]}
    lib_rate, run_rate = n / library["wall"], n / command["wall"]
    # Each round's ratio is measured side by side; the median of those is the verdict.
    rate_ratio = statistics.median(lib["wall"] / cmd["wall"] for lib, cmd in measured)
    cpu_ratio = statistics.median(cmd["cpu"] / lib["cpu"] for lib, cmd in measured)
    print(
        f"  library (submit, medians): {library['wall']:.2f} s wall, {lib_rate:,.0f} requests/s, "
        f"client CPU {_us(library['cpu'], n):.1f} us per request"
    )
    print(
        f"  lexibatch run (medians):   {command['wall']:.2f} s wall, {run_rate:,.0f} requests/s, "
        f"client CPU {_us(command['cpu'], n):.1f} us per request (of which starting the "
        f"process and importing: {command['start_wall']:.2f} s wall, "
        f"{_us(command['start_cpu'], n):.1f} us per request)"
    )
    print(
        f"  run / library: rate {rate_ratio:.2f}x (target >= {TARGET}x), "
        f"CPU per request {cpu_ratio:.2f}x"
    )
    rows = [
        Row("library rate", lib_rate, "req/s", "-", None),
        Row("run rate", run_rate, "req/s", "-", None),
        Row("library CPU per request", _us(library["cpu"], n), "us", "-", None),
        Row("run CPU per request", _us(command["cpu"], n), "us", "-", None),
        Row("run start-up CPU per request", _us(command["start_cpu"], n), "us", "-", None),
        Row("run / library rate", rate_ratio, "x", f">= {TARGET}x", rate_ratio >= TARGET),
        Row("run / library CPU per request", cpu_ratio, "x", "-", None),
    ]
    finish("run vs library", rows, args.report)


if __name__ == "__main__":
    sys.exit(main())
