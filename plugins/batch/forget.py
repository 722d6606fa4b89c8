"""Giving up on a batch the provider can no longer give results for.

A created batch is resumed by every run until its results are stored: that
is what keeps a crash from paying twice. A batch that cannot be read any
more (deleted at the provider, made under another account or endpoint, its
output file expired) would stop every run. ``lexibatch batches forget``
ends that by hand: the requests it answered stay answered, the others are
queued again in the journal (the next run, or ``lexibatch resume``, sends
them), and the shard is journaled failed.

Forgetting a batch that still runs would pay for its requests twice, so the
provider is asked first, and a batch it still runs is refused (cancel it, or
wait); a provider that cannot be reached is an error, not a yes. Whatever
else it says (the batch ended, or is not found, which may also mean it was
made under another key) is shown, and the shard is forgotten only when the
caller confirms (``confirmed``). A shard that never reached the provider
needs no confirmation.

The shard's uploaded input file is of no more use (its requests are sent
again in new shards, with files of their own), so it is deleted at the
provider as a collected batch's files are (``batch.delete_files``):
journaled in the transaction that gives the shard up, so a failed or
interrupted delete is finished by the next run. Its output and error files,
if any, are left alone: they hold answers that were paid for.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plugins.batch.cleanup import FileCleanup
from plugins.batch.findshard import journaled_shard
from plugins.lease import BatchLease
from plugins.store import UNFINISHED_SHARD_STATES
from providers.errors import InputError, ProviderError

if TYPE_CHECKING:
    from plugins.store import Shard, Store
    from providers.protocol import BatchEndpoint
    from providers.types import BatchInfo

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
        input_deleted: its uploaded input file, when it was deleted at the provider.
    """

    shard_id: str
    batch_id: str | None
    provider_says: str
    answered: int
    resend: int
    input_deleted: str | None = None


async def forget_batch(
    store: Store,
    endpoint: BatchEndpoint | None,
    shard: Shard,
    *,
    confirmed: bool = False,
    delete_files: bool = True,
) -> Forgotten:
    """Journal ``shard`` as given up on, once its provider shows it runs no more.

    Args:
        store: the store whose journal holds ``shard``.
        endpoint: the batch endpoint of the shard's own provider, to ask it.
        shard: the shard to give up on.
        confirmed: the caller accepts that its unanswered requests are sent
            (and paid for) again although the provider may still hold a
            batch of them (ended, or not visible with this key).
        delete_files: delete its uploaded input file at the provider
            (``batch.delete_files``), when the endpoint can delete files.

    Raises:
        InputError: the shard is finished already, or its batch still runs,
            or forgetting it needs ``confirmed``.
        StoreBusyError: a batch run holds this store.
        ProviderError: the provider could not say (e.g. unreachable, a bad key).
    """
    lease = BatchLease(store.path)
    lease.acquire()  # no batch run may move this shard on meanwhile
    try:
        # Read again under the lease: a run may have moved it on since.
        current = store.get_shard(shard.shard_id)
        if current is None or current.state not in UNFINISHED_SHARD_STATES:
            state = "gone" if current is None else current.state
            raise InputError(f"{_name(shard)} is {state}: there is nothing to forget")
        says = await _provider_state(endpoint, current, confirmed, store)
        cleanup = (
            FileCleanup(store, endpoint, current.provider, enabled=delete_files)
            if endpoint is not None
            else None
        )
        with store.in_transaction(durable=True):
            answered, resend = store.forget_shard(
                current.shard_id, f"forgotten by hand (the provider: {says})"
            )
            # With the requests queued again: never before they are.
            planned = cleanup is not None and cleanup.plan_unused_input(current)
    finally:
        lease.release()
    _drop_spool(current)
    # A failed delete is logged and left journaled for the next run.
    deleted = None
    if cleanup is not None and planned and await cleanup.run(current.shard_id) > 0:
        deleted = current.input_file_id
    return Forgotten(current.shard_id, current.batch_id, says, answered, resend, deleted)


async def _provider_state(
    endpoint: BatchEndpoint | None, shard: Shard, confirmed: bool, store: Store
) -> str:
    """What the provider says of the shard's batch; raises unless forgetting it may go on."""
    if shard.state in ("written", "uploaded"):
        return "no batch was created"  # it never reached the provider: nothing to pay twice
    if endpoint is None:
        raise InputError(f"{_name(shard)}: its provider has no batch endpoint to ask")
    unknown = "not found"
    try:
        if shard.batch_id:
            info: BatchInfo | None = await endpoint.poll(shard.batch_id)
        else:
            # Its create may have reached the provider: only ``find`` can tell.
            info = await endpoint.find(journaled_shard(store, shard))
    except ProviderError as exc:
        # Not found, or a list of batches that cannot be searched: either way
        # the provider cannot show one, and only a confirmation goes on.
        if exc.status_code != 404 and exc.code != "list_not_paging":
            raise
        info = None
        if exc.code == "list_not_paging":
            unknown = "cannot be looked up (its list of batches does not page)"
    if info is not None and not info.state.terminal:
        raise InputError(
            f"batch {info.id} is still {info.state.value} at the provider: forgetting it would "
            f"pay for its requests twice; cancel it first (lexibatch batches cancel "
            f"{shard.batch_id or shard.shard_id}), or wait for it to end and run the batch "
            f"again (or lexibatch resume) to collect it"
        )
    if info is not None:
        says = info.state.value
        risk = (
            f"batch {info.id} ended ({says}) at the provider: running the batch again (or "
            f"lexibatch resume) collects its results; if they cannot be read any more"
        )
    else:
        says = unknown
        risk = (
            f"{_name(shard)} {unknown} at the provider with this key and address; if a batch "
            f"was made from it, it may still be billed, and"
        )
    if not confirmed:
        raise InputError(
            f"{risk} forgetting it sends its unanswered requests again (paid for again): "
            f"add --yes to forget it"
        )
    return says


def _drop_spool(shard: Shard) -> None:
    # The requests are queued anew from the journal: the batch's file is not
    # needed, and one left behind (unremovable) costs only its disk space.
    if shard.path:
        with contextlib.suppress(OSError):
            Path(shard.path).unlink(missing_ok=True)


def _name(shard: Shard) -> str:
    return f"batch {shard.batch_id}" if shard.batch_id else f"shard {shard.shard_id}"
