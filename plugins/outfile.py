"""Writing an output file safely: checked before anything is spent, replaced atomically.

A results file is written to a temporary file of its own beside it
(``.NAME.<unique>.tmp``) and renamed into place, so a reader never sees half a
file, and two commands writing the same ``--out`` never write into, or
remove, each other's temporary file (the last to finish wins, whole).
Whatever the file system refuses — a folder that cannot be made, a file
where a folder should be, a read-only mount, a full disk, a denied
permission — becomes one
:class:`~providers.errors.OutputWriteError` naming the path and what to do,
and no temporary file is left behind.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import secrets
import stat
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from providers.errors import OutputWriteError, os_error_reason

__all__ = ["AtomicFile", "check_writable", "temp_paths", "writes_through"]

_KEPT = (
    "every answer is kept in the store: run the same command again once it can be "
    "written (nothing is paid twice)"
)


def temp_paths(path: Path) -> list[Path]:
    """The temporary files beside ``path`` that writers of it have open now."""
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, made for this writer alone: its descriptor and path.

    Created exclusively under a name no other writer uses, with the mode a
    plain ``open`` gives (the process's umask applies).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


# SQLite's files beside a database file (lexibatch's own are named where they are made).
_SQLITE_FILES = ("", "-wal", "-shm", "-journal")


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.samefile(b)  # a hard link, or another name of one file
    except OSError:
        return False


def _refuse_overwriting(
    path: Path, store: str | os.PathLike[str] | None, inputs: Iterable[Path]
) -> None:
    """Refuse an output that is the store or one of the command's own input files."""
    if store is not None and str(store) != ":memory:":
        # Beside the name given and beside the real file (SQLite's -wal and
        # -shm, and the lease's lock, sit beside the file a link names).
        from plugins.lease import LOCK_SUFFIX
        from plugins.safekeep import RESERVE_SUFFIX, SPILL_SUFFIX

        suffixes = (*_SQLITE_FILES, RESERVE_SUFFIX, SPILL_SUFFIX, LOCK_SUFFIX)
        names = {str(store), os.path.realpath(store)}
        for base, suffix in ((name, suffix) for name in names for suffix in suffixes):
            if _same_file(path, Path(f"{base}{suffix}")):
                raise OutputWriteError(
                    f"--out {path} is the store's own file ({store}{suffix}): writing the "
                    "results there would destroy every answer paid for — give --out another "
                    "file name; nothing was sent",
                    path=str(path),
                )
    for source in inputs:
        if _same_file(path, source):
            raise OutputWriteError(
                f"--out {path} is the input file {source}: the results would replace the "
                "requests — give --out another file name; nothing was sent",
                path=str(path),
            )


# A process's own open files by name: /dev/stdout, /dev/fd/3, /proc/self/fd/1.
_OPEN_FILE_NAMES = re.compile(r"/dev/(stdin|stdout|stderr|fd/\d+)|/proc/(self|\d+)/fd/\d+")


def writes_through(path: Path) -> bool:
    """Whether ``path`` is written as it is, appended to: a device, a pipe, an open file.

    A device or a pipe (``/dev/null``, a FIFO), or one of the process's open
    files named as such (``/dev/stdout``, even when the shell sent it to a
    file with ``>>``): none can be replaced by renaming another file onto it
    (that would put a plain file where the device, the pipe or the shell's
    file was), nor written beside.
    """
    if _OPEN_FILE_NAMES.fullmatch(str(path.absolute())):
        return True
    try:
        mode = path.stat().st_mode  # what the path finally names
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_writable(
    path: Path,
    *,
    store: str | os.PathLike[str] | None = None,
    inputs: Iterable[Path] = (),
    reads_back: bool = False,
) -> None:
    """Make sure ``path`` can be written, before anything is sent (or paid for).

    Missing folders are made. A probe file is written (one byte, synced) and
    removed, so a read-only mount or a full disk shows here, not after the
    run has paid for its answers. A device or a pipe is checked for writing
    only (see :func:`writes_through`).

    Args:
        path: the output file.
        store: the store's database file: ``path`` may not be it, nor any
            file of the store beside it.
        inputs: the command's input files, which ``path`` may not be either.
        reads_back: the command reads its output again (to resume): a
            device or a pipe will not do.

    Raises:
        OutputWriteError: it cannot be written, or must not be; names the
            path, why, and what to do.
    """
    if path.is_dir():
        raise OutputWriteError(
            f"cannot write the results to {path}: it is a folder — give --out a file name; "
            "nothing was sent",
            path=str(path),
        )
    _refuse_overwriting(path, store, inputs)
    if writes_through(path):
        if reads_back:
            raise OutputWriteError(
                f"--out {path} is a device or a pipe, and this command reads its output back "
                "to resume — give --out a file name; nothing was sent",
                path=str(path),
            )
        if not os.access(path, os.W_OK):
            raise OutputWriteError(
                f"cannot write the results to {path}: permission denied — choose another "
                "--out; nothing was sent",
                path=str(path),
            )
        return
    if path.is_symlink():
        # What is written is the link's target (see AtomicFile): its folder is probed.
        path = Path(os.path.realpath(path))
    probe: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = _open_temp(path)
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
        if probe is not None:
            _remove(probe)


class AtomicFile:
    """A file written through a temporary file of its own and renamed into place by :meth:`commit`.

    Lines may be added over time (a run writes its results as their turn
    comes); a reader sees the old ``path`` until the commit, and the whole
    new one after it. Leaving the ``with`` block without a commit (an error,
    an interrupt) removes the temporary file and leaves ``path`` as it was.

    Raises:
        OutputWriteError: from any method: the file system refused; the
            temporary file is removed.
    """

    __slots__ = ("_fh", "_path", "_through", "_tmp")

    def __init__(self, path: Path) -> None:
        self._through = writes_through(path)
        # A symlink's target is replaced, not the link itself.
        self._path = (
            Path(os.path.realpath(path)) if path.is_symlink() and not self._through else path
        )
        self._tmp: Path | None = None
        self._fh: BinaryIO | None = None

    def __enter__(self) -> AtomicFile:
        try:
            if self._through:
                # A device or a pipe: written as it is, line by line (see writes_through).
                # Appended to: a file the shell opened with >> keeps what it held.
                self._fh = self._path.open("ab")
                return self
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = _open_temp(self._path)
            self._fh = os.fdopen(fd, "wb")
        except OSError as exc:
            raise self._refused(exc) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fh is not None:
            # Not committed: whatever was written is not a results file.
            with suppress(OSError):
                self._fh.close()
            self._fh = None
        if self._tmp is not None:
            _remove(self._tmp)
            self._tmp = None

    def write(self, lines: Iterable[bytes]) -> None:
        """Add ``lines`` (each with its newline) to the file."""
        assert self._fh is not None, "write() outside the with block"
        try:
            self._fh.writelines(lines)
        except OSError as exc:
            raise self._refused(exc) from None

    def commit(self) -> None:
        """Sync the file and rename it into place."""
        fh, tmp = self._fh, self._tmp
        assert fh is not None, "commit() outside the with block"
        try:
            if tmp is None:
                # Written through: nothing to sync or rename.
                fh.close()
                self._fh = None
                return
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            self._fh = None
            tmp.replace(self._path)
            self._tmp = None
        except OSError as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: OSError) -> OutputWriteError:
        self.__exit__()
        if exc.errno == errno.EPIPE:
            # `--out /dev/stdout | head`: the reader had what it wanted.
            return OutputWriteError(
                f"the results to {self._path} were not all written: their reader closed it "
                f"(a broken pipe); {_KEPT}",
                path=str(self._path),
            )
        return OutputWriteError(
            f"cannot write the results to {self._path}: {os_error_reason(exc)} — free space or "
            f"choose another --out; {_KEPT}",
            path=str(self._path),
        )


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        # Nothing more can be done about a folder that refuses even this.
        return
