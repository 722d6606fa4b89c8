"""How a batch job uses the machine: the collector paused, a second process if a core is free.

A large job is split in two and half of it answered in a forked child
(:mod:`providers.emulator.jobs`). The child only pays off with a core of its
own: the emulator serves a client that is itself busy (building the next
shard, reading the last results), so on a machine of two cores the child
would take the client's core, and forking a large process costs CPU of its
own (its pages copied as either side writes them). It is forked where the
machine has more cores than the client and the emulator use.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator

__all__ = ["CORES", "MIN_CORES_FOR_A_CHILD", "gc_paused"]

#: Cores this process may run on.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

#: Below this many cores a job runs in one process (one core for the client, one for the emulator).
MIN_CORES_FOR_A_CHILD = 3

_gc_lock = threading.Lock()
_gc_users = 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: it would rescan the growing job again and again."""
    global _gc_users
    with _gc_lock:
        _gc_users += 1
        if _gc_users == 1:
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.enable()
