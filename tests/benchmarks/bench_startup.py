"""Start-up: ``lexibatch --help`` and ``import providers`` wall time, median of several runs.

Each run is a fresh subprocess (``python -m synthesis.cli --help`` when the
``lexibatch`` script is not on the PATH of this interpreter). For context, the
bare interpreter (``python -c pass``) is timed the same way.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.benchmarks.common import ROOT, Row, finish, parser, size


def _median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lexibatch_command() -> list[str]:
    """The installed ``lexibatch`` script next to this interpreter, or the module."""
    script = Path(sys.executable).with_name("lexibatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "synthesis.cli"]


def main(argv: list[str] | None = None) -> None:
    """Run the start-up benchmark and print its figures and table."""
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    runs = size(args, 9, 5, 1)
    print(f"start-up: median of {runs} runs, each a new process")
    bare = _median_seconds([sys.executable, "-c", "pass"], runs)
    help_s = _median_seconds([*lexibatch_command(), "--help"], runs)
    import_s = _median_seconds([sys.executable, "-c", "import providers"], runs)
    print(f"  python -c pass: {bare * 1000:.0f} ms")
    print(f"  lexibatch --help: {help_s * 1000:.0f} ms")
    print(f"  python -c 'import providers': {import_s * 1000:.0f} ms")
    rows = [
        Row("lexibatch --help", help_s * 1000, "ms", "< 500 ms", help_s < 0.5),
        Row("import providers", import_s * 1000, "ms", "< 500 ms", import_s < 0.5),
        Row("bare interpreter", bare * 1000, "ms", "-", None),
    ]
    finish("start-up", rows, args.report)


if __name__ == "__main__":
    sys.exit(main())
