"""Growth: five rounds of new requests through ``lexibatch run --mode batch`` into one store.

Each round is a fresh ``lexibatch run`` process (the real command line, as a
user runs it) sending requests the store has never seen, against the emulator
running as a separate process. Per round it prints the rate, the client CPU
per request (the run's process alone), and the store's bytes per request so
far; then the fifth round's rate against the first's. This VM's timing noise
is large, so the rounds run in ``--series`` series (3 by default), each into
a fresh store: the figures printed are medians by round, the verdict the
median of each series' fifth/first ratio. A store whose journal
keeps what it no longer needs, or whose indexes do not fit the access
pattern, shows here as a rate that falls and bytes that grow round by round.
At the end it prints where the store's bytes are, by table and index.

The rounds of a series run one after another for minutes, and this VM's
speed drifts over that time by as much as the target allows. So right
after the fifth round each series also runs a first round into a new,
empty store: the fifth round's rate against that one, measured side by
side, is printed beside the verdict (which is still the fifth round against
the series' own first).

The target is set on five rounds (half a million requests). ``--rounds``
runs more, to see the curve towards the seed's size (30 rounds: three
million requests, about five minutes); the verdict then still compares the
fifth round with the first, and the last round's figures are printed beside
it. The client's CPU is printed split into user and system time: the
system part (the store's page reads and writes) is where a store that
outgrows its page cache shows first, and it is less noisy here than the
user part.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import NamedTuple

from tests.benchmarks.common import (
    EmulatorProcess,
    Row,
    add_rounds,
    child_env,
    children_times,
    compile_sources,
    finish,
    parser,
    size,
)

#: The rounds the target is set on: the fifth round's rate against the first's.
ROUNDS = 5

#: The small schema every request asks for (short prompts, a small schema).
SCHEMA = {
    "type": "object",
    "properties": {"word": {"type": "string"}, "level": {"type": "string"}},
    "required": ["word", "level"],
}


def _write_requests(path: Path, first: int, count: int) -> None:
    with path.open("w") as fh:
        for i in range(first, first + count):
            line = {"id": f"r{i}", "prompt": f"CEFR level of word {i}?", "schema": SCHEMA}
            fh.write(json.dumps(line) + "\n")


def _store_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("lexibatch.db*"))


def _table_bytes(db: Path) -> list[tuple[str, int]]:
    """Bytes of each table and index of the store, largest first (empty without ``dbstat``)."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
    except sqlite3.OperationalError:  # SQLite built without the dbstat table
        return []
    return [(str(name), int(size)) for name, size in rows]


def _config(url: str) -> str:
    return (
        "[connector]\n"
        'provider = "openai"\n'
        'model = "gpt-4o-mini"\n'
        'db = "store/lexibatch.db"\n'
        "[providers.openai]\n"
        f'base_url = "{url}/v1"\n'
        "[batch]\n"
        "linger = 0.5\n"
        "poll_interval = 0.05\n"
        "max_poll_interval = 0.2\n"
    )


class Series(NamedTuple):
    """One series' figures by round, and its store's bytes by table and index at the end."""

    rates: list[float]
    cpus: list[float]
    sizes: list[float]
    tables: list[tuple[str, int]]
    system: list[float]
    #: The rate of a first round into a new store, run right after round 5.
    beside: float


class Round(NamedTuple):
    """One ``lexibatch run`` of a round: its rate and client CPU µs per request (all, system)."""

    rate: float
    cpu: float
    system: float


def _round(work: Path, requests: Path, out: Path, count: int, label: str) -> Round:
    """Run ``lexibatch run --mode batch`` on ``requests`` in ``work``; its figures."""
    (user0, sys0), wall0 = children_times(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthesis.cli", "run", str(requests),
         "--mode", "batch", "--out", str(out)],
        cwd=work, capture_output=True, text=True, env=child_env(),
    )  # fmt: skip
    wall = time.perf_counter() - wall0
    user1, sys1 = children_times()
    if done.returncode != 0:
        raise SystemExit(f"{label} failed: {done.stderr.strip()[-2000:]}")
    user, system = (user1 - user0) / count * 1e6, (sys1 - sys0) / count * 1e6
    return Round(count / wall, user + system, system)


def _series(per_round: int, rounds: int, label: str) -> Series:
    """One series of ``rounds`` rounds into a fresh store.

    Returns the rates, the CPU µs (and its system part) and the store bytes
    per request by round, and the store's bytes by table and index at the end.
    """
    rates: list[float] = []
    cpus: list[float] = []
    sizes: list[float] = []
    system: list[float] = []
    beside = 0.0
    with TemporaryDirectory() as tmp, EmulatorProcess() as emu:
        work = Path(tmp)
        (work / "store").mkdir()
        (work / "lexibatch.toml").write_text(_config(emu.url))
        for n in range(rounds):
            requests = work / f"round{n}.jsonl"
            _write_requests(requests, n * per_round, per_round)
            one = _round(work, requests, work / f"out{n}.jsonl", per_round, f"round {n + 1}")
            # Each round's requests are new, so (n + 1) rounds' requests are stored.
            stored = _store_bytes(work / "store") / ((n + 1) * per_round)
            rates.append(one.rate)
            cpus.append(one.cpu)
            system.append(one.system)
            sizes.append(stored)
            print(
                f"  {label}round {n + 1}: {one.rate:,.0f} requests/s, "
                f"client CPU {one.cpu:,.0f} µs/request (user {one.cpu - one.system:,.0f}, "
                f"system {one.system:,.0f}), store {stored:,.0f} bytes/request"
            )
            if n + 1 == ROUNDS:
                beside = _first_round_beside(work, per_round, label)
        tables = _table_bytes(work / "store" / "lexibatch.db")
    return Series(rates, cpus, sizes, tables, system, beside)


def _first_round_beside(work: Path, per_round: int, label: str) -> float:
    """The rate of a first round into a new store (and new requests), run now."""
    fresh = work / "beside"
    (fresh / "store").mkdir(parents=True)
    (fresh / "lexibatch.toml").write_text((work / "lexibatch.toml").read_text())
    requests = fresh / "round.jsonl"
    # Ids no round of the series uses: the emulator sees them as new too.
    _write_requests(requests, 1_000_000_000, per_round)
    one = _round(fresh, requests, fresh / "out.jsonl", per_round, "the first round beside")
    print(
        f"  {label}a first round into a new store, run beside round {ROUNDS}: "
        f"{one.rate:,.0f} requests/s, client CPU {one.cpu:,.0f} µs/request"
    )
    shutil.rmtree(fresh)
    return one.rate


def main(argv: list[str] | None = None) -> None:
    """Run the growth benchmark and print its figures and table."""
    p = parser(__doc__.splitlines()[0])
    add_rounds(p, "--series", "series of rounds, each into a fresh store")
    p.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"rounds a series, at least {ROUNDS} (default {ROUNDS}); the target compares "
        f"round {ROUNDS} with round 1, and the last round is printed beside it",
    )
    args = p.parse_args(argv)
    per_round = size(args, 100_000, 20_000, 300)
    count = max(1, args.series)
    rounds = max(ROUNDS, args.rounds)
    print(
        f"growth: {rounds} rounds of {per_round:,} new requests, one store, `lexibatch run`; "
        f"{count} series, medians reported"
    )
    compile_sources()
    series: list[Series] = []
    for k in range(count):
        one = _series(per_round, rounds, f"series {k + 1}, " if count > 1 else "")
        own = one.rates[ROUNDS - 1] / one.rates[0]
        paired = one.rates[ROUNDS - 1] / one.beside
        print(
            f"  series {k + 1}: round {ROUNDS} / round 1 rate {own:.2f}x; "
            f"round {ROUNDS} / a first round beside it {paired:.2f}x"
        )
        series.append(one)
    tables = series[-1].tables
    rates = [statistics.median(s.rates[i] for s in series) for i in range(rounds)]
    cpus = [statistics.median(s.cpus[i] for s in series) for i in range(rounds)]
    system = [statistics.median(s.system[i] for s in series) for i in range(rounds)]
    sizes = [statistics.median(s.sizes[i] for s in series) for i in range(rounds)]
    if tables:
        total = rounds * per_round
        print("  store by table and index, bytes/request: " + ", ".join(
            f"{name} {size / total:,.0f}" for name, size in tables if size / total >= 1
        ))  # fmt: skip
    # Each series' ratio is measured within it; the median of those is the verdict.
    ratio = statistics.median(s.rates[ROUNDS - 1] / s.rates[0] for s in series)
    cpu_ratio = statistics.median(s.cpus[ROUNDS - 1] / s.cpus[0] for s in series)
    beside = statistics.median(s.rates[ROUNDS - 1] / s.beside for s in series)
    print(
        "  medians by round: "
        + ", ".join(f"{r:,.0f} requests/s ({c:,.0f} µs)" for r, c in zip(rates, cpus, strict=True))
    )
    print(f"  round {ROUNDS} / round 1 rate (median of series): {ratio:.2f}x; CPU {cpu_ratio:.2f}x")
    print(f"  round {ROUNDS} / a first round run beside it (median of series): {beside:.2f}x")
    stored = sizes[ROUNDS - 1]
    rows = [
        # The first rounds, then every fifth (each round's figures are printed above).
        *(
            Row(f"round {i + 1} rate", r, "req/s", "-", None)
            for i, r in enumerate(rates)
            if i < ROUNDS or (i + 1) % 5 == 0 or i == rounds - 1
        ),
        Row(f"round {ROUNDS} / round 1 rate", ratio, "x", ">= 0.9x", ratio >= 0.9),
        Row(f"round {ROUNDS} / a first round beside it", beside, "x", "-", None),
        Row("client CPU per request, round 1", cpus[0], "µs", "-", None),
        Row(f"client CPU per request, round {ROUNDS}", cpus[ROUNDS - 1], "µs", "-", None),
        Row("  of it system time, round 1", system[0], "µs", "-", None),
        Row(f"  of it system time, round {ROUNDS}", system[ROUNDS - 1], "µs", "-", None),
        Row("store bytes per request", stored, "B", "<= 600 B", stored <= 600),
    ]
    if rounds > ROUNDS:
        rows += [
            Row(f"round {rounds} / round 1 rate", rates[-1] / rates[0], "x", "-", None),
            Row(f"client CPU per request, round {rounds}", cpus[-1], "µs", "-", None),
            Row(f"  of it system time, round {rounds}", system[-1], "µs", "-", None),
            Row(f"store bytes per request, round {rounds}", sizes[-1], "B", "-", None),
        ]
    finish("growth", rows, args.report)


if __name__ == "__main__":
    sys.exit(main())
