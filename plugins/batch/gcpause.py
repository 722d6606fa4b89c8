"""Holding Python's cyclic garbage collector off while requests are queued or results stored.

Storing a chunk of results makes tens of thousands of short-lived objects
(parsed lines, completions, ledger and cache rows) that are all freed by
reference counting once the chunk is stored. Left to the collector, they
outlive its young generations, count towards the next full collection, and
make it run again and again over every long-lived object in the process (the
caller's pending promises and answers): a quarter of the client's CPU on a
100,000-request batch. With the collector held off for the chunk, those
objects are gone before it ever sees them.

Queuing is the same story from the other side: a ``gather`` that starts
thousands of calls queues them all in one turn of the event loop, and every
few hundred allocations the collector would walk the young pending records
and promote them, each promotion bringing the next full collection closer.
The batch strategy holds the collector off from the first request of a turn
until the loop turns again (and lets it run every 20,000 requests of a longer
turn); the records are collected, if ever, in one pass afterwards.

Cyclic garbage made while a hold is taken is freed when the hold ends; the
holds are bounded (a chunk of results, one loop turn) so it cannot pile up.

Holds nest (several shards may be collected at once) and the collector is
switched back on only by the hold that switched it off, so a program that
disabled it itself keeps it disabled.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["GcHold"]


class GcHold:
    """A process-wide, nesting hold on the cyclic garbage collector.

    ``hold()`` and ``release()`` come in pairs (``release`` in a ``finally``);
    the collector is off while at least one hold is taken and is switched
    back on when the last one ends, unless it was off before the first.
    """

    _depth = 0
    _was_enabled = False
    # Event loops in several threads may hold at once.
    _lock = threading.Lock()

    @classmethod
    def hold(cls) -> None:
        """Take a hold: the collector is off until the matching :meth:`release`."""
        with cls._lock:
            if cls._depth == 0:
                cls._was_enabled = gc.isenabled()
                gc.disable()
            cls._depth += 1

    @classmethod
    def release(cls) -> None:
        """End a hold; the last one switches the collector back on if it was on."""
        with cls._lock:
            if cls._depth == 0:
                return
            cls._depth -= 1
            if cls._depth == 0 and cls._was_enabled:
                gc.enable()

    @classmethod
    def held(cls) -> bool:
        """Whether a hold is taken now."""
        return cls._depth > 0
