"""Claims: one process at a time sends a given immediate request.

Two processes on one store (two ``lexibatch run`` at once, a server and a
script) would otherwise both send — and pay for — the requests they share:
each looks in the cache, finds nothing yet, and sends. Before an immediate
request is sent it is therefore *claimed* in the store's ``claims`` table: a
row naming the owner (host, process id and a token of its own) and a lease.
A second process that finds the request claimed does not send it; it waits
for the owner's answer to land in the cache (its other requests go on
meanwhile), and sends it itself only if the claim is let go without one.

The owner renews its leases while it works (a heartbeat task) and lets each
claim go once the answer is stored or the request failed. A claim whose
owner died (``kill -9``) is taken over when its lease runs out, or at once
when the owner was a process of this host that no longer exists (or whose
process id this process now has).

Batch requests are not claimed: one process at a time runs a store's
batches (:mod:`plugins.lease`), and an immediate run and a batch run
at once look at each other's records (:mod:`plugins.crossmode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING

from providers.errors import StoreWriteError

if TYPE_CHECKING:
    from plugins.store import Store

__all__ = ["DEFAULT_LEASE", "ClaimBook"]

#: Seconds a claim holds without being renewed; renewed every third of it.
DEFAULT_LEASE = 30.0

#: The owners of this process's open claim books. A claim naming this host and
#: this process id but none of them was left by an earlier process whose id
#: this one reuses (a container's process 1 restarted): it is taken over at once.
_OPEN_OWNERS: set[str] = set()


class ClaimBook:
    """This process's claims on immediate requests in one store, for one provider.

    Args:
        store: the store (``":memory:"``: nothing is shared, every claim is granted).
        provider: the provider the requests go to (claims are per provider, like results).
        lease: seconds a claim holds without a heartbeat.
    """

    def __init__(self, store: Store, provider: str, *, lease: float = DEFAULT_LEASE) -> None:
        self.store = store
        self.provider = provider
        self.lease = lease
        self.host = socket.gethostname()
        #: Who this process is in the claims table.
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        _OPEN_OWNERS.add(self.owner)
        self._shared = store.path != ":memory:"
        self._held: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    def claim(self, key: str) -> str | None:
        """Claim ``key`` for this process.

        Returns:
            ``None`` when this process holds the claim now; else the owner
            that holds it (alive, its lease running).

        Raises:
            StoreWriteError: the store cannot be written.
        """
        if not self._shared:
            return None
        now = time.time()
        holder = self.store.take_claim(
            self.provider,
            key,
            self.owner,
            now + self.lease,
            lambda owner, expires_at: self.lapsed(owner, expires_at, now),
        )
        if holder is None:
            self._held.add(key)
            self._start_heartbeat()
        return holder

    def holds(self, key: str) -> bool:
        """Whether this process holds the claim on ``key``."""
        return key in self._held

    def holder(self, key: str) -> str | None:
        """The other live process that holds ``key``, if one does (a read, no claim)."""
        if not self._shared:
            return None
        claim = self.store.claim_on(self.provider, key)
        if claim is None:
            return None
        owner, expires_at = claim
        if owner == self.owner or self.lapsed(owner, expires_at, time.time()):
            return None
        return str(owner)

    def release(self, key: str) -> None:
        """Let the claim on ``key`` go (the answer is stored, or the request failed).

        A store that refuses the write leaves the claim to run out its lease.
        """
        if key not in self._held:
            return
        self._held.discard(key)
        if not self._held and self._heartbeat is not None:
            # Nothing to keep alive: no task lingers past the last request.
            self._heartbeat.cancel()
            self._heartbeat = None
        with contextlib.suppress(StoreWriteError):
            self.store.release_claim(self.provider, key, self.owner)

    async def aclose(self) -> None:
        """Stop the heartbeat and let every claim still held go."""
        _OPEN_OWNERS.discard(self.owner)
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None and beat.get_loop() is asyncio.get_running_loop():
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if self._held and self._shared:
            self._held.clear()
            with contextlib.suppress(StoreWriteError):
                self.store.release_claims(self.owner)

    def lapsed(self, owner: str, expires_at: float, now: float | None = None) -> bool:
        """Whether a claim may be taken over: its lease ran out, or its owner is gone."""
        if expires_at < (time.time() if now is None else now):
            return True
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        if host != self.host or not pid.isdigit():
            return False
        if int(pid) == os.getpid():
            # This process: alive only as one of its open claim books.
            return owner not in _OPEN_OWNERS
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            # Exists, but belongs to someone else (EPERM): alive.
            return False
        return False

    def _start_heartbeat(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Claimed outside an event loop: the claim holds for its lease alone.
            return
        beat = self._heartbeat
        if beat is None or beat.done() or beat.get_loop() is not loop:
            self._heartbeat = loop.create_task(self._beat(), name="lexibatch-claims-heartbeat")

    async def _beat(self) -> None:
        while self._held:
            await asyncio.sleep(self.lease / 3)
            # A renewal the store refuses is tried again at the next beat.
            with contextlib.suppress(StoreWriteError):
                self.store.renew_claims(self.owner, self.lease)
