"""Every benchmark, one after the other, each in its own process; then one summary table.

``python -m tests.benchmarks.run_all [--quick | --tiny]`` from the repository
root (about 25 minutes in full on two cores — ``bench_scale`` alone takes
ten — and 3 with ``--quick``). Each benchmark prints its own figures as it
runs; the summary repeats every figure against its target.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.common import ROOT, Row, parser, print_table

BENCHMARKS = (
    "bench_startup",
    "bench_batch",
    "bench_run",
    "bench_immediate",
    "bench_memory",
    "bench_growth",
    "bench_scale",
)


def main(argv: list[str] | None = None) -> int:
    """Run all benchmarks; returns 1 when one of them failed to run (a MISS is not a failure)."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, help="run only these benchmarks")
    args = p.parse_args(argv)
    scale = ["--tiny"] if args.tiny else ["--quick"] if args.quick else []
    failed = []
    summary: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lexibatch-bench-") as tmp:
        for name in args.only or BENCHMARKS:
            report = Path(tmp) / f"{name}.json"
            print(f"\n######## {name}", flush=True)
            code = subprocess.call(
                [sys.executable, "-m", f"tests.benchmarks.{name}", *scale, "--report", str(report)],
                cwd=ROOT,
            )
            if code != 0 or not report.exists():
                failed.append(name)
                continue
            data = json.loads(report.read_text())
            summary.extend(
                Row(**{**r, "name": f"{data['title']}: {r['name'].strip()}"}) for r in data["rows"]
            )
    print_table(f"all benchmarks ({time.perf_counter() - started:.0f} s)", summary)
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
