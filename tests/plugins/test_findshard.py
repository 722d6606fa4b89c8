"""What find() is told of a shard in doubt: its journal row, its keys, other shards' batches."""

from __future__ import annotations

from pathlib import Path

from plugins.batch.findshard import journaled_shard
from plugins.store import Shard, Store


def test_the_journaled_shard_carries_what_the_journal_knows(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        store.add_shard(Shard("shard_done", "anthropic", "m", requests=3))
        store.update_shard("shard_done", state="created", batch_id="msgbatch_done")
        store.add_shard(Shard("shard_elsewhere", "openai", "m", requests=3))
        store.update_shard("shard_elsewhere", state="created", batch_id="batch_openai")
        doubt = store.add_shard(Shard("shard_doubt", "anthropic", "m", requests=3))
        sending = store.update_shard("shard_doubt", state="submitting")
        told = journaled_shard(store, sending)
        assert (told.shard_id, told.requests) == ("shard_doubt", 3)
        assert told.journaled_at == doubt.created_at and told.sent_at == sending.updated_at
        # Only the same provider's batches are another shard's to keep.
        assert told.taken == frozenset({"msgbatch_done"})
        uploaded = store.update_shard("shard_doubt", state="uploaded")
        assert journaled_shard(store, uploaded).sent_at is None
    finally:
        store.close()
