"""Scratch files: removed after use, and the ones a killed process left removed by the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from providers.scratch import scratch_file, sweep

_HOLDER = textwrap.dedent(
    """
    import asyncio
    from providers.scratch import scratch_file

    async def main():
        async with scratch_file("gemini", ".jsonl") as path:
            path.write_bytes(b'{"key": "k1"}\\n' * 1000)
            print(path, flush=True)
            await asyncio.sleep(60)

    asyncio.run(main())
    """
)


@pytest.fixture
def scratch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _killed_while_reading(folder: Path) -> Path:
    """Kill -9 a process holding a scratch file of ``folder``; the file it left."""
    env = {**os.environ, "TMPDIR": str(folder)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None
        left = Path(holder.stdout.readline().strip())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert holder.returncode == -signal.SIGKILL
    assert left.parent == folder and left.stat().st_size > 0
    return left


async def test_a_scratch_file_is_made_empty_and_removed_after_use(scratch_dir: Path) -> None:
    async with scratch_file("gemini", ".jsonl") as path:
        assert path.parent == scratch_dir and path.is_file() and path.stat().st_size == 0
        assert path.name.startswith(f"lexibatch-gemini-{os.getpid()}-")
        path.write_bytes(b"answers\n")
    assert not path.exists()


async def test_a_scratch_file_is_removed_when_its_reader_fails(scratch_dir: Path) -> None:
    with pytest.raises(RuntimeError):
        async with scratch_file("gemini") as path:
            raise RuntimeError("download broke off")
    assert not path.exists() and _names(scratch_dir) == []


def test_sweep_removes_only_the_files_of_ended_processes(scratch_dir: Path) -> None:
    ended = scratch_dir / f"lexibatch-gemini-{_ended_pid()}-abc.jsonl"
    own = scratch_dir / f"lexibatch-gemini-{os.getpid()}-abc.jsonl"
    live = scratch_dir / f"lexibatch-gemini-{os.getppid()}-abc.jsonl"
    other_kind = scratch_dir / f"lexibatch-mistral-{_ended_pid()}-abc.jsonl"
    not_ours = scratch_dir / "lexibatch-gemini-notapid.jsonl"
    stranger = scratch_dir / f"other-{_ended_pid()}.jsonl"
    for path in (ended, own, live, other_kind, not_ours, stranger):
        path.write_bytes(b"x")
    assert sweep("gemini") == 1
    assert _names(scratch_dir) == sorted(
        p.name for p in (own, live, other_kind, not_ours, stranger)
    )


async def test_the_file_of_a_process_killed_while_reading_it_goes_with_the_next(
    scratch_dir: Path,
) -> None:
    left = _killed_while_reading(scratch_dir)
    async with scratch_file("gemini", ".jsonl") as mine:
        assert _names(scratch_dir) == [mine.name] != [left.name]
    assert _names(scratch_dir) == []
