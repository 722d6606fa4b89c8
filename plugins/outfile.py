"""Writing an output file safely: checked before anything is spent, replaced atomically.

A results file is written to ``NAME.tmp`` beside it and renamed into place,
so a reader never sees half a file. Whatever the file system refuses — a
folder that cannot be made, a file where a folder should be, a read-only
mount, a full disk, a denied permission — becomes one
:class:`~providers.errors.OutputWriteError` naming the path and what to do,
and no ``.tmp`` file is left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from providers.errors import OutputWriteError, os_error_reason

__all__ = ["check_writable", "temp_path", "write_atomically"]

_KEPT = (
    "every answer is kept in the store: run the same command again once it can be "
    "written (nothing is paid twice)"
)


def temp_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place."""
    return path.with_name(path.name + ".tmp")


def check_writable(path: Path) -> None:
    """Make sure ``path`` can be written, before anything is sent (or paid for).

    Missing folders are made. A probe file is written (one byte, synced) and
    removed, so a read-only mount or a full disk shows here, not after the
    run has paid for its answers.

    Raises:
        OutputWriteError: it cannot be written; names the path, why, and what to do.
    """
    if path.is_dir():
        raise OutputWriteError(
            f"cannot write the results to {path}: it is a folder — give --out a file name; "
            "nothing was sent",
            path=str(path),
        )
    probe = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied", str(path))
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write the results to {path}: {os_error_reason(exc)} — choose another "
            "--out or fix the folder (permissions, free space); nothing was sent",
            path=str(path),
        ) from None
    finally:
        _remove(probe)


def write_atomically(path: Path, lines: Iterable[bytes]) -> None:
    """Write ``lines`` (each with its newline) to ``path`` through ``path.tmp`` and a rename.

    Raises:
        OutputWriteError: the file system refused; the ``.tmp`` file is removed
            and an earlier ``path`` is left as it was.
    """
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        _remove(tmp)
        raise OutputWriteError(
            f"cannot write the results to {path}: {os_error_reason(exc)} — free space or "
            f"choose another --out; {_KEPT}",
            path=str(path),
        ) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        # Nothing more can be done about a folder that refuses even this.
        return
