"""What every benchmark shares: the emulator process, settings, timing and the target table."""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tests.support.emulated_run import ROOT, EmulatorProcess

__all__ = [
    "ROOT",
    "Clock",
    "EmulatorProcess",
    "Entry",
    "Row",
    "clock",
    "finish",
    "parser",
    "peak_rss_mb",
    "print_table",
    "prompt",
    "settings",
    "size",
]

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


def children_cpu() -> float:
    """CPU seconds of this process's finished children (user and system)."""
    return sum(children_times())


def children_times() -> tuple[float, float]:
    """User and system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def children_peak_mib() -> float:
    """The peak RSS (MiB) of the largest of this process's finished children."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def child_env() -> dict[str, str]:
    """The environment of a ``lexibatch`` child process: the repository on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def compile_sources() -> None:
    """Compile the project's modules to bytecode, as an install does.

    Where writing bytecode is turned off (PYTHONDONTWRITEBYTECODE), every
    fresh process would compile each module again (~0.15 s a run here), a
    cost no user pays: compiled beforehand, it is read like an install's.
    """
    for package in ("providers", "plugins", "synthesis"):
        compileall.compile_dir(ROOT / package, quiet=1)


def add_rounds(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    """The ``--rounds``-style option: how many times the measure runs side by side."""
    p.add_argument(flag, type=int, default=3, help=f"{what}; medians are reported (default 3)")
