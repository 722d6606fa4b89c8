"""One runner at a time for the batches of a store.

The batch journal is resumed by whoever opens the store in batch mode. Two
runners at once would both drive the same unfinished shards: both poll and
collect them (billing the ledger twice), and both may create the provider
batch of a shard caught between upload and creation — paying for it twice.
The lease is an exclusive lock on a file beside the database, taken when the
batch strategy starts and let go when it closes; the operating system drops
it with the process, so a run killed with ``kill -9`` never leaves it behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from providers.errors import StoreBusyError, StoreWriteError, os_error_reason

__all__ = ["LOCK_SUFFIX", "BatchLease", "lease_held_here", "runner_elsewhere"]

_MEMORY = ":memory:"

# A runner starting waits this long for the lease: another process's probe
# (runner_elsewhere) holds it for an instant, never long enough to refuse a run.
_START_GRACE = 1.0

# The leases this process holds, by lock file.
_HELD_HERE: set[Path] = set()


#: What the lock file's name adds to the store's.
LOCK_SUFFIX = ".batches.lock"


def _lock_path(db_path: str) -> Path:
    """The lock file of the store at ``db_path``, beside the database file itself.

    The path is resolved first: a process reaching the store through a symlink,
    a relative path or a linked folder must lock the same file as one using the
    real path, or both would run the store's batches at once.
    """
    return Path(f"{os.path.realpath(db_path)}{LOCK_SUFFIX}")


def lease_held_here(db_path: str) -> bool:
    """Whether this process holds the lease of the store at ``db_path``."""
    return _lock_path(db_path) in _HELD_HERE


def runner_elsewhere(db_path: str) -> bool:
    """Whether another process runs the batches of the store at ``db_path`` now.

    The lock is tried, without waiting, and let go at once when it was free.
    """
    if db_path == _MEMORY:
        return False
    path = _lock_path(db_path)
    if path in _HELD_HERE:
        return False
    probe = FileLock(path, thread_local=False, timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    except OSError:
        # The lock file cannot be made here: no runner could have taken it either.
        return False
    probe.release()
    return False


class BatchLease:
    """The exclusive right to run the batches of the store at ``db_path``.

    Args:
        db_path: the store's database file (``":memory:"``: nothing to share,
            the lease is always granted).
    """

    def __init__(self, db_path: str) -> None:
        self.path: Path | None = None if db_path == _MEMORY else _lock_path(db_path)
        self._lock = (
            None if self.path is None else FileLock(self.path, thread_local=False, timeout=0)
        )

    @property
    def held(self) -> bool:
        """Whether this lease is taken."""
        return self._lock is None or self._lock.is_locked

    def acquire(self) -> None:
        """Take the lease, or fail at once.

        Raises:
            StoreBusyError: another process or connector holds it.
        """
        if self._lock is None or self._lock.is_locked:
            return
        if self.path in _HELD_HERE:
            # Another connector of this very process: waiting would wait for itself.
            raise StoreBusyError(
                f"another connector of this process is running the batches of this store "
                f"({self.path} is locked) — use one connector per store in a process (or "
                "close the first before opening the next)"
            )
        try:
            self._lock.acquire(timeout=_START_GRACE)
        except Timeout:
            raise StoreBusyError(
                f"another lexibatch process is running the batches of this store "
                f"({self.path} is locked) — wait for it to finish, or give this run a "
                f"store of its own (--db)"
            ) from None
        except OSError as exc:
            raise StoreWriteError(
                f"the lock file {self.path} beside the store cannot be made "
                f"({os_error_reason(exc)}): the store's folder must be writable — fix it or "
                "set connector.db (or --db) to a writable place"
            ) from None
        assert self.path is not None
        _HELD_HERE.add(self.path)

    def release(self) -> None:
        """Let the lease go (idempotent)."""
        if self._lock is not None and self._lock.is_locked:
            self._lock.release()
            if self.path is not None:
                _HELD_HERE.discard(self.path)
