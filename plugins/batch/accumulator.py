"""Collecting pending requests into shards that fit a provider's batch limits.

Encoded lines go to a spool file per open shard as they arrive, written in
groups of up to :data:`WRITE_BYTES` (one write call per group, not per line),
so memory holds only keys and that much of each open shard's lines, whatever
the prompt size. A shard's last lines are written when it is sealed, before
its file is synced. A shard is sealed when one
more line would break the provider's limit by count or by bytes; one model
per shard when the provider needs that (OpenAI).

A spool folder that cannot be written (a full disk, a read-only mount, a
denied permission) is the store's :class:`~providers.errors.StoreWriteError`,
naming the folder: the request being added gets it, and the requests of a
shard whose file was broken by it are handed to ``on_lost``. Nothing of such
a shard was sent, and its file is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from providers.errors import StoreWriteError, os_error_reason
from providers.types import BatchLimits

__all__ = ["WRITE_BYTES", "BatchAccumulator", "SealedShard", "new_shard_id", "spool_error"]

#: Lines of an open shard are written once they reach this many bytes (and when it is sealed).
WRITE_BYTES = 256 << 10


def spool_error(spool_dir: Path, exc: OSError) -> StoreWriteError:
    """The one-line error of a spool folder the file system refused to write."""
    return StoreWriteError(
        f"the spool folder {spool_dir} cannot be written ({os_error_reason(exc)}): free disk "
        "space or set batch.spool_dir to a writable folder, then run the same command again; "
        "nothing of the requests it holds was sent"
    )


def new_shard_id() -> str:
    """A unique, time-ordered shard id."""
    return f"shard_{int(time.time() * 1000):x}_{secrets.token_hex(4)}"


@dataclass
class SealedShard:
    """A spool file that is complete and ready to be submitted as one batch."""

    shard_id: str
    model: str
    path: Path
    keys: list[str]
    bytes: int
    est_cost: float


@dataclass
class _OpenShard:
    shard_id: str
    model: str
    path: Path
    fh: BinaryIO
    keys: list[str] = field(default_factory=list)
    bytes: int = 0
    est_cost: float = 0.0
    # Lines not written to the file yet, each with its newline. Copied in, not
    # kept as the encoder's bytes: each of those holds 4 KiB whatever its length.
    unwritten: bytearray = field(default_factory=bytearray)

    def write_out(self) -> None:
        """Write the lines held so far (raises :class:`OSError` as the file does)."""
        self.fh.write(self.unwritten)
        self.unwritten.clear()


class BatchAccumulator:
    """Open shards by model group, spooled to disk, sealed at the provider's limits."""

    def __init__(
        self,
        spool_dir: Path,
        limits: BatchLimits,
        on_sealed: Callable[[SealedShard], None],
        on_lost: Callable[[list[str], StoreWriteError], None] | None = None,
    ) -> None:
        self.spool_dir = spool_dir
        self.limits = limits
        self.on_sealed = on_sealed
        self.on_lost = on_lost
        self._open: dict[str, _OpenShard] = {}
        #: Whether the line just added filled its shard (see :meth:`seal_if_full`).
        self.full = False
        try:
            spool_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise spool_error(spool_dir, exc) from None

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self._open.values())

    def add(self, key: str, model: str, line: bytes, est_cost: float = 0.0) -> str:
        """Spool one encoded request line; seals the shard first if it would overflow.

        Returns:
            The id of the shard the line went into.
        """
        group = "*" if self.limits.mixed_models else model
        size = len(line) + 1
        shard = self._open.get(group)
        if shard is not None and (
            len(shard.keys) >= self.limits.max_requests
            or shard.bytes + size > self.limits.max_bytes
        ):
            self._seal(group)
            shard = None
        if shard is None:
            shard_id = new_shard_id()
            path = self.spool_dir / f"{shard_id}.jsonl"
            try:
                fh = path.open("wb")
            except OSError as exc:
                raise spool_error(self.spool_dir, exc) from None
            shard = _OpenShard(shard_id, model, path, fh)
            self._open[group] = shard
        unwritten = shard.unwritten
        unwritten += line
        unwritten += b"\n"
        if len(unwritten) >= WRITE_BYTES:
            try:
                shard.write_out()
            except OSError as exc:
                # The file may hold part of the lines: the whole shard is lost
                # (this line's request gets the error; the others go to on_lost).
                error = spool_error(self.spool_dir, exc)
                self._lose(group, error)
                raise error from None
        keys = shard.keys
        keys.append(key)
        shard.bytes += size
        shard.est_cost += est_cost
        self.full = len(keys) >= self.limits.max_requests
        return shard.shard_id

    def seal_if_full(self, model: str) -> None:
        """Seal the open shard ``model``'s requests go into if it holds all it may.

        Called once the line just added is journaled, so a full shard leaves at
        once instead of waiting for the next request or the linger; :attr:`full`
        says whether that line filled it.
        """
        group = "*" if self.limits.mixed_models else model
        shard = self._open.get(group)
        if shard is not None and len(shard.keys) >= self.limits.max_requests:
            self._seal(group)
        self.full = False

    def seal_all(self) -> None:
        """Seal every open shard (dispatch now)."""
        for group in list(self._open):
            self._seal(group)

    def _seal(self, group: str) -> None:
        shard = self._open[group]
        try:
            if shard.unwritten:
                shard.write_out()
            shard.fh.flush()
            # The journal will say this file is written; make that true on disk first.
            os.fsync(shard.fh.fileno())
            shard.fh.close()
        except OSError as exc:
            self._lose(group, spool_error(self.spool_dir, exc))
            return
        del self._open[group]
        self.on_sealed(
            SealedShard(
                shard.shard_id, shard.model, shard.path, shard.keys, shard.bytes, shard.est_cost
            )
        )

    def _lose(self, group: str, error: StoreWriteError) -> None:
        """Drop an open shard whose file could not be written; its requests go to ``on_lost``."""
        shard = self._open.pop(group)
        with contextlib.suppress(OSError):
            shard.fh.close()
        with contextlib.suppress(OSError):
            shard.path.unlink(missing_ok=True)
        if self.on_lost is not None and shard.keys:
            self.on_lost(shard.keys, error)

    def close(self) -> None:
        """Close open spool files without sealing (their requests stay queued in the journal)."""
        for shard in self._open.values():
            with contextlib.suppress(OSError):
                shard.fh.close()
            with contextlib.suppress(OSError):
                shard.path.unlink(missing_ok=True)
        self._open.clear()
