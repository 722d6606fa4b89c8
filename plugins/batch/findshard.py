"""What the journal tells a provider's ``find()`` about a shard whose batch may exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.types import JournaledShard

if TYPE_CHECKING:
    from plugins.batch.interfaces import ShardJournal
    from plugins.store.rows import Shard

__all__ = ["journaled_shard"]


def journaled_shard(store: ShardJournal, shard: Shard) -> JournaledShard:
    """The shard as ``BatchEndpoint.find`` gets it: id, size, keys, when journaled and sent.

    A shard in ``submitting`` last changed when its create was about to be
    sent, so that is when its batch, if any, was made.
    """
    return JournaledShard(
        shard_id=shard.shard_id,
        requests=shard.requests,
        keys=tuple(store.shard_keys(shard.shard_id)),
        journaled_at=shard.created_at or None,
        sent_at=(shard.updated_at or None) if shard.state == "submitting" else None,
        taken=frozenset(
            other.batch_id
            for other in store.shards(provider=shard.provider)
            if other.batch_id and other.shard_id != shard.shard_id
        ),
    )
