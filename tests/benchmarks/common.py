"""What every benchmark shares: the emulator process, settings, timing and the target table."""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]

# The benchmarks never reach a real provider: dummy keys, no entry-point plugins.
os.environ.setdefault("LEXIBATCH_LOAD_PLUGINS", "")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["OPENAI_API_KEY"] = "sk-bench-dummy"


class Entry(BaseModel):
    """The small response model every structured benchmark request asks for."""

    word: str
    level: str


def prompt(i: int, size: int = 0) -> str:
    """A short, distinct prompt (padded to about ``size`` characters when given)."""
    text = f"Give the CEFR level of the word number {i}."
    if size > len(text):
        text += " " + ("lorem ipsum " * (size // 12 + 1))[: size - len(text) - 1]
    return text


class EmulatorProcess:
    """``python -m providers.emulator`` on a free loopback port, as a separate process."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = {"batch_seconds": 0.0, **(config or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "providers.emulator",
                "--port",
                "0",
                "--config",
                json.dumps(self.config),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if match is None:
            self.proc.kill()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.port = int(match.group(1))
        return self

    @property
    def url(self) -> str:
        """The emulator's base URL (append ``/v1`` for the OpenAI SDK)."""
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the emulator and its children so far (Linux /proc)."""
        assert self.proc is not None
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # utime, stime, cutime, cstime (fields 14-17 of stat; 0-based 11-14 after the name)
        total += sum(int(v) for v in fields[11:15]) / tick
        return total

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def settings(emulator_url: str, db: Path, **batch: Any) -> Any:
    """Connector settings for the OpenAI provider against the emulator."""
    from plugins.config import Settings

    return Settings.model_validate(
        {
            "connector": {"provider": "openai", "db": str(db)},
            "providers": {
                "openai": {
                    "base_url": emulator_url + "/v1",
                    "api_key_env": "OPENAI_API_KEY",
                    "max_concurrency": 64,
                }
            },
            "batch": {"linger": 0.5, "poll_interval": 0.02, "max_poll_interval": 0.05, **batch},
        }
    )


class Clock:
    """Wall time and CPU time of this process between two points."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.wall = 0.0
        self.cpu = 0.0

    def stop(self) -> Clock:
        """Freeze the figures."""
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        return self


@contextmanager
def clock() -> Iterator[Clock]:
    """``with clock() as c: ...`` then ``c.wall`` and ``c.cpu`` in seconds."""
    c = Clock()
    try:
        yield c
    finally:
        c.stop()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Row:
    """One figure against its target."""

    name: str
    figure: float
    unit: str
    target: str
    ok: bool | None  # None: informational, no target

    @property
    def verdict(self) -> str:
        """PASS, MISS or a dash."""
        return "-" if self.ok is None else ("PASS" if self.ok else "MISS")


def print_table(title: str, rows: list[Row]) -> None:
    """The figure-vs-target table."""
    print(f"\n== {title}: figures vs targets")
    width = max(len(r.name) for r in rows) if rows else 10
    print(f"  {'figure'.ljust(width)}  {'measured':>14}  {'target':<14} verdict")
    for r in rows:
        value = f"{r.figure:,.3g}" if abs(r.figure) < 100 else f"{r.figure:,.0f}"
        print(f"  {r.name.ljust(width)}  {value + ' ' + r.unit:>14}  {r.target:<14} {r.verdict}")


def parser(description: str) -> argparse.ArgumentParser:
    """Arguments every benchmark takes: ``--quick``, ``--tiny`` and ``--report FILE``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke run, seconds)")
    p.add_argument("--report", type=Path, default=None, help="write the rows as JSON here")
    return p


def size(args: argparse.Namespace, full: int, quick: int, tiny: int) -> int:
    """The size for this run's scale."""
    return tiny if args.tiny else quick if args.quick else full


def finish(title: str, rows: list[Row], report: Path | None) -> None:
    """Print the table and write the rows for ``run_all``."""
    print_table(title, rows)
    if report is not None:
        report.write_text(json.dumps({"title": title, "rows": [asdict(r) for r in rows]}))
    sys.stdout.flush()
