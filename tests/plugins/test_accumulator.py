"""Spooling shards: lines written in groups, every line on disk when a shard is sealed."""

from __future__ import annotations

import errno
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugins.batch.accumulator import WRITE_BYTES, BatchAccumulator, SealedShard
from providers.errors import StoreWriteError
from providers.types import BatchLimits


def _line(i: int, size: int = 1000) -> bytes:
    return (f'{{"custom_id":"k{i}","pad":"' + "x" * size + '"}').encode()


class _Spool:
    def __init__(self, tmp_path: Path, max_requests: int = 1000) -> None:
        self.sealed: list[SealedShard] = []
        self.lost: list[tuple[list[str], StoreWriteError]] = []
        self.acc = BatchAccumulator(
            tmp_path / "spool",
            BatchLimits(max_requests=max_requests, max_bytes=10**9),
            self.sealed.append,
            lambda keys, error: self.lost.append((keys, error)),
        )


def test_every_line_is_in_the_file_in_order_once_the_shard_is_sealed(tmp_path: Path) -> None:
    spool = _Spool(tmp_path)
    lines = [_line(i) for i in range(WRITE_BYTES // 1000 + 50)]  # more than one group
    shard_ids = {spool.acc.add(f"k{i}", "gpt", line) for i, line in enumerate(lines)}
    (path,) = (tmp_path / "spool").iterdir()
    # Before the seal the file holds a first part of the lines at most (the rest waits in memory).
    whole = b"".join(line + b"\n" for line in lines)
    held = path.read_bytes()
    assert len(held) < len(whole) and whole.startswith(held)
    spool.acc.seal_all()
    (sealed,) = spool.sealed
    assert {sealed.shard_id} == shard_ids and sealed.keys == [f"k{i}" for i in range(len(lines))]
    assert path.read_bytes() == whole and sealed.bytes == len(whole)


def test_lines_waiting_for_their_write_hold_about_their_own_size(tmp_path: Path) -> None:
    def encoded(i: int) -> bytes:
        # As the encoder returns it: such bytes keep a 4 KiB buffer whatever their length.
        return orjson.dumps({"custom_id": f"k{i}", "pad": "x" * 150})

    keys = [f"k{i}" for i in range(1000)]
    whole = b"".join(b"%b\n" % encoded(i) for i in range(1000))
    assert len(whole) < WRITE_BYTES  # none written yet: all of them wait in memory
    spool = _Spool(tmp_path, max_requests=10_000)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i, key in enumerate(keys):
            spool.acc.add(key, "gpt", encoded(i))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The lines' own bytes (and the list of their keys), not 4 KiB a line.
    assert held - before < 2 * len(whole)
    spool.acc.seal_all()
    assert spool.sealed[0].path.read_bytes() == whole


def test_a_full_shard_is_flagged_and_sealed_when_asked(tmp_path: Path) -> None:
    spool = _Spool(tmp_path, max_requests=3)
    for i in range(2):
        spool.acc.add(f"k{i}", "gpt", _line(i, 10))
        assert not spool.acc.full
    spool.acc.add("k2", "gpt", _line(2, 10))
    assert spool.acc.full and spool.sealed == []
    spool.acc.seal_if_full("gpt")
    assert not spool.acc.full and [s.keys for s in spool.sealed] == [["k0", "k1", "k2"]]
    assert spool.sealed[0].path.read_bytes().count(b"\n") == 3


class _FullDisk:
    """A spool file on a disk that has just filled up."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def test_a_group_the_disk_refuses_loses_its_shard_and_fails_the_request_adding_it(
    tmp_path: Path,
) -> None:
    spool = _Spool(tmp_path)
    spool.acc.add("k0", "gpt", _line(0))
    shard = spool.acc._open["gpt"]
    shard.fh = _FullDisk(shard.fh)
    added = ["k0"]
    with pytest.raises(StoreWriteError, match=r"spool folder .* cannot be written"):
        for i in range(1, WRITE_BYTES // 1000 + 2):
            spool.acc.add(f"k{i}", "gpt", _line(i))
            added.append(f"k{i}")
    # The requests spooled before it are handed over as lost; the file is gone, nothing sealed.
    ((keys, error),) = spool.lost
    assert keys == added and "disk is full" in str(error)
    assert list((tmp_path / "spool").iterdir()) == [] and spool.sealed == []
    assert len(spool.acc) == 0
