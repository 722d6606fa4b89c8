"""Temporary files that a killed process does not leave behind for good.

Some downloads must land in a file before they are read (google-genai
writes a batch's results file to a path). Such a file is made in the
system's temporary folder under a name that carries the id of the process
writing it, and removed when it has been read. A process killed mid-read
(kill -9, a power cut) cannot remove its own: the next process to make a
scratch file of the same kind removes every one whose process has ended.
A results file holds every answer of a batch, up to gigabytes,
so a crash-and-resume loop must not pile them up.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

__all__ = ["scratch_file", "sweep"]

_PREFIX = "lexibatch-"


def _pattern(kind: str) -> str:
    return f"{_PREFIX}{kind}-"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts: it may still be reading)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(kind: str) -> int:
    """Remove the scratch files of ``kind`` whose process has ended; how many.

    Only this user's files named by :func:`scratch_file` are looked at; one
    whose process is alive (or whose id was reused) is left alone.
    """
    where = Path(tempfile.gettempdir())
    head = _pattern(kind)
    removed = 0
    uid = os.getuid() if hasattr(os, "getuid") else None
    for path in where.glob(f"{head}*"):
        pid_text = path.name[len(head) :].partition("-")[0]
        if not pid_text.isdigit():
            continue
        with suppress(OSError):
            if uid is not None and path.stat().st_uid != uid:
                continue
            if not _alive(int(pid_text)):
                path.unlink()
                removed += 1
    return removed


@asynccontextmanager
async def scratch_file(kind: str, suffix: str = "") -> AsyncIterator[Path]:
    """An empty file of ``kind`` in the temporary folder, removed on leaving.

    Making one first removes those of the same kind that ended processes
    left (see :func:`sweep`).
    """
    await asyncio.to_thread(sweep, kind)
    fd, name = tempfile.mkstemp(prefix=f"{_pattern(kind)}{os.getpid()}-", suffix=suffix)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)
