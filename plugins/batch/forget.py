"""Giving up on a batch the provider can no longer give results for.

A created batch is resumed by every run until its results are stored: that
is what keeps a crash from paying twice. A batch that cannot be read any
more (deleted at the provider, made under another account or endpoint, its
output file expired) would stop every run. ``lexibatch batches forget``
ends that by hand: the requests it answered stay answered, the others are
journaled failed so the next run sends them again, and the shard is
journaled failed.

Forgetting a batch that is still running would pay for its requests twice,
so the provider is asked first: a batch it still runs is refused (cancel it,
or wait), and a provider that cannot be reached is an error, not a yes. A
batch the provider reports ended may still have results to read, so it is
forgotten only when asked for with ``even_if_ended``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from plugins.batch.lease import BatchLease
from providers.errors import InputError, ProviderError

if TYPE_CHECKING:
    from plugins.store import Shard, Store
    from providers.protocol import BatchEndpoint

__all__ = ["Forgotten", "forget_batch"]


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting a shard did.

    Attributes:
        shard_id: the shard given up on.
        batch_id: its provider batch, if it had one.
        provider_says: the batch's state at the provider, or why it has none.
        answered: its requests whose results were stored; they stay answered.
        resend: its requests a later run sends again.
    """

    shard_id: str
    batch_id: str | None
    provider_says: str
    answered: int
    resend: int


async def forget_batch(
    store: Store, endpoint: BatchEndpoint | None, shard: Shard, *, even_if_ended: bool = False
) -> Forgotten:
    """Journal ``shard`` as given up on, once the provider shows it runs no more.

    Args:
        store: the store whose journal holds ``shard``.
        endpoint: the batch endpoint of the shard's provider, to ask it.
        shard: the shard to give up on.
        even_if_ended: also give up a batch the provider reports ended
            (its results, if they can still be read, are paid for again).

    Raises:
        InputError: the shard is finished already, or its batch still runs,
            or it ended and ``even_if_ended`` is false.
        StoreBusyError: a batch run holds this store.
        ProviderError: the provider could not say (e.g. unreachable, a bad key).
    """
    from plugins.store import UNFINISHED_SHARD_STATES

    if shard.state not in UNFINISHED_SHARD_STATES:
        raise InputError(f"{_name(shard)} is {shard.state}: there is nothing to forget")
    lease = BatchLease(store.path)
    lease.acquire()  # no batch run may be driving this shard meanwhile
    try:
        says = await _provider_state(endpoint, shard, even_if_ended)
        reason = f"forgotten by hand (the provider: {says})"
        answered, resend = store.forget_shard(shard.shard_id, reason)
    finally:
        lease.release()
    return Forgotten(shard.shard_id, shard.batch_id, says, answered, resend)


async def _provider_state(endpoint: BatchEndpoint | None, shard: Shard, even_if_ended: bool) -> str:
    if not shard.batch_id:
        if shard.state == "submitting":
            # Its create may have reached the provider: only ``find`` can tell.
            if endpoint is None:
                raise InputError(f"{_name(shard)}: its provider has no batch endpoint to ask")
            found = await endpoint.find(shard.shard_id, since=shard.created_at)
            if found is not None:
                raise InputError(
                    f"{_name(shard)} has a batch at the provider ({found.id}, "
                    f"{found.state.value}): run the same command again to collect it"
                )
        return "no batch was created"
    if endpoint is None:
        raise InputError(f"{_name(shard)}: its provider has no batch endpoint to ask")
    try:
        info = await endpoint.poll(shard.batch_id)
    except ProviderError as exc:
        if exc.status_code == 404:
            return "not found"
        raise
    if not info.state.terminal:
        raise InputError(
            f"batch {shard.batch_id} is still {info.state.value} at the provider: forgetting "
            f"it would pay for its requests twice; cancel it first "
            f"(lexibatch batches cancel {shard.batch_id}) or wait for it to end"
        )
    if not even_if_ended:
        raise InputError(
            f"batch {shard.batch_id} ended ({info.state.value}) at the provider: run the same "
            f"command again to collect its results; if they cannot be read any more, forget it "
            f"with --even-if-ended (its unanswered requests are then sent and paid for again)"
        )
    return info.state.value


def _name(shard: Shard) -> str:
    return f"batch {shard.batch_id}" if shard.batch_id else f"shard {shard.shard_id}"
