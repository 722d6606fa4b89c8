"""Shard records an earlier lexibatch kept for Anthropic batches, read so they are honoured.

Message batches carry no metadata, so earlier versions wrote one small JSON
file per shard sent to ``create`` (``provider-state/anthropic/`` beside the
store, or ``~/.cache/lexibatch/anthropic-shards``): its entry count, first and
last custom id, when it was sent, and the batch id once the create was
answered. The journal now gives ``find()`` all of that
(:class:`~providers.types.JournaledShard`), so nothing is written any more;
a store journaled by an earlier version may still have a shard in doubt
whose only trace is such a file, and :func:`read_record` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

__all__ = ["ShardRecord", "default_records_dir", "read_record"]


@dataclass(frozen=True)
class ShardRecord:
    """What an earlier version recorded about a shard it sent to ``create``.

    Attributes:
        shard_id: the shard.
        count: its number of entries.
        first_custom_id: the custom id of its first entry.
        last_custom_id: the custom id of its last entry.
        sent_at: when the create was sent (epoch seconds).
        batch_id: the batch the create answered with, when it was answered.
    """

    shard_id: str
    count: int
    first_custom_id: str | None
    last_custom_id: str | None
    sent_at: float
    batch_id: str | None = None


def default_records_dir() -> Path:
    """Where records went when no store folder was known: the user's cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lexibatch" / "anthropic-shards"


def read_record(folder: Path, shard_id: str) -> ShardRecord | None:
    """The record of ``shard_id`` in ``folder``, or ``None`` (none, or unreadable)."""
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in shard_id)
    try:
        data = orjson.loads((folder / f"{safe}.json").read_bytes())
        record = ShardRecord(
            shard_id=str(data["shard_id"]),
            count=int(data["count"]),
            first_custom_id=data.get("first_custom_id"),
            last_custom_id=data.get("last_custom_id"),
            sent_at=float(data["sent_at"]),
            batch_id=data.get("batch_id") or None,
        )
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    # A file renamed or copied by hand is not this shard's.
    return record if record.shard_id == shard_id else None
