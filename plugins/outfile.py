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
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from providers.errors import OutputWriteError, os_error_reason

__all__ = ["AtomicFile", "check_writable", "temp_path", "write_atomically"]

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


class AtomicFile:
    """A file written through ``path.tmp`` and renamed into place by :meth:`commit`.

    Lines may be added over time (a run writes its results as their turn
    comes); a reader sees the old ``path`` until the commit, and the whole
    new one after it. Leaving the ``with`` block without a commit (an error,
    an interrupt) removes the ``.tmp`` file and leaves ``path`` as it was.

    Raises:
        OutputWriteError: from any method: the file system refused; the
            ``.tmp`` file is removed.
    """

    __slots__ = ("_fh", "_path", "_tmp")

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tmp = temp_path(path)
        self._fh: BinaryIO | None = None

    def __enter__(self) -> AtomicFile:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self._tmp.open("wb")
        except OSError as exc:
            raise self._refused(exc) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fh is not None:
            # Not committed: whatever was written is not a results file.
            self._fh.close()
            self._fh = None
            _remove(self._tmp)

    def write(self, lines: Iterable[bytes]) -> None:
        """Add ``lines`` (each with its newline) to the file."""
        assert self._fh is not None, "write() outside the with block"
        try:
            self._fh.writelines(lines)
        except OSError as exc:
            raise self._refused(exc) from None

    def commit(self) -> None:
        """Sync the file and rename it into place."""
        fh = self._fh
        assert fh is not None, "commit() outside the with block"
        try:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            self._fh = None
            self._tmp.replace(self._path)
        except OSError as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: OSError) -> OutputWriteError:
        if self._fh is not None:
            with suppress(OSError):
                self._fh.close()
            self._fh = None
        _remove(self._tmp)
        return OutputWriteError(
            f"cannot write the results to {self._path}: {os_error_reason(exc)} — free space or "
            f"choose another --out; {_KEPT}",
            path=str(self._path),
        )


def write_atomically(path: Path, lines: Iterable[bytes]) -> None:
    """Write ``lines`` (each with its newline) to ``path`` through ``path.tmp`` and a rename.

    Raises:
        OutputWriteError: the file system refused; the ``.tmp`` file is removed
            and an earlier ``path`` is left as it was.
    """
    with AtomicFile(path) as file:
        file.write(lines)
        file.commit()


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        # Nothing more can be done about a folder that refuses even this.
        return
