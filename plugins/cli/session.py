"""A command's work: its connector, the progress it shows, and what it says on stderr."""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

from plugins.cli.guard import StoppedBySignal

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.connector import LexiConnector
    from plugins.progress import ProgressObserver

__all__ = [
    "hush",
    "observe",
    "requests_kept",
    "run_coroutine",
    "say",
    "skip_final_collection",
    "unobserve",
    "with_connector",
]

# Full collections while requests read from a file are answered: one for every
# this many collections of the middle generation (Python's default: 10).
_FULL_COLLECTION_EVERY = 100

T = TypeVar("T")


# The connectors the running command has open (see run_coroutine's Ctrl-C).
_open_connectors: list[LexiConnector] = []


def run_coroutine(coro: Coroutine[Any, Any, T], *, land_sent_calls: bool = True) -> T:
    """Run a command's async body to its end.

    Ctrl-C stops it as ``KeyboardInterrupt``, after the calls already sent
    to the provider have landed: they may be paid for whatever happens, so
    their answers are stored first, and nothing new is sent meanwhile. A
    second Ctrl-C stops at once, and says how many sent calls it gave up.
    SIGTERM (what ``timeout``, ``docker stop``, systemd and job schedulers
    send) and SIGHUP (the terminal closed) stop it the same way, as
    :class:`~plugins.cli.guard.StoppedBySignal` (exit 143 and 129); SIGHUP
    not when it is ignored (``nohup``).
    ``land_sent_calls=False`` leaves Ctrl-C to asyncio (a server that winds
    down its own requests).
    """
    if not land_sent_calls:
        return asyncio.run(coro)
    stopped = _Interrupts()
    try:
        return asyncio.run(_interruptible(coro, stopped))
    except asyncio.CancelledError:
        if not stopped.count:
            raise
        # Raised here, once the event loop is closed, as asyncio's own Ctrl-C is.
        said = None
        if stopped.abandoned:
            said = (
                f"{stopped.what} again — {stopped.abandoned:,} calls already sent were given "
                "up: the provider may charge for their answers, which are not stored; run the "
                "same command again to continue"
            )
        if stopped.first is not None and stopped.first != _SIGINT:
            raise StoppedBySignal(stopped.first.name, 128 + stopped.first, said) from None
        raise KeyboardInterrupt(*([said] if said else [])) from None


_SIGINT = signal.SIGINT
#: The signals that stop a command as Ctrl-C does (SIGHUP: not on every system).
_STOPPING = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)


class _Interrupts:
    """Which signal stopped the command first, how many came, and the sent calls given up."""

    __slots__ = ("abandoned", "count", "first")

    def __init__(self) -> None:
        self.count = 0
        self.abandoned = 0
        self.first: signal.Signals | None = None

    @property
    def what(self) -> str:
        """``interrupted`` (Ctrl-C) or ``stopped by SIGTERM``, for the lines it causes."""
        if self.first is None or self.first == _SIGINT:
            return "interrupted"
        return f"stopped by {self.first.name}"


async def _interruptible(coro: Coroutine[Any, Any, T], stopped: _Interrupts) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    landing: set[asyncio.Task[None]] = set()

    def on_interrupt(sig: signal.Signals) -> None:
        stopped.count += 1
        if stopped.first is None:
            stopped.first = sig
        sending = sum(c.stop_sending() for c in _open_connectors)
        if stopped.count > 1 or not sending:
            stopped.abandoned = sending if stopped.count > 1 else 0
            task.cancel()
            return
        again = "Ctrl-C" if sig == _SIGINT else sig.name
        click.echo(
            f"lexibatch: {stopped.what} — waiting for the {sending:,} calls already sent, so "
            f"that their answers are stored; nothing new is sent ({again} again to stop now: "
            "the provider may charge for those answers without their being stored)",
            err=True,
        )

        async def then_stop() -> None:
            await asyncio.gather(*(c.sent_calls_landed() for c in list(_open_connectors)))
            task.cancel()

        landed = loop.create_task(then_stop())
        landing.add(landed)
        landed.add_done_callback(landing.discard)

    # A signal the process ignores (SIGHUP under nohup) stays ignored.
    taken = [s for s in _STOPPING if s == _SIGINT or signal.getsignal(s) is not signal.SIG_IGN]
    try:
        for sig in taken:
            loop.add_signal_handler(sig, on_interrupt, sig)
    except (NotImplementedError, RuntimeError, ValueError):
        # Not the main thread (or no such signals here): asyncio's own handling stands.
        for sig in taken:
            loop.remove_signal_handler(sig)
        return await task
    try:
        return await task
    finally:
        for sig in taken:
            loop.remove_signal_handler(sig)
        for landed in landing:
            landed.cancel()


async def with_connector(settings: Settings, body: Callable[[LexiConnector], Awaitable[T]]) -> T:
    """``await body(connector)`` with a connector built from ``settings``, closed at the end."""
    from plugins.factory import open_connector

    connector = open_connector(settings)
    _open_connectors.append(connector)
    try:
        return await body(connector)
    finally:
        try:
            await connector.aclose()
        finally:
            _open_connectors.remove(connector)


def requests_kept(ctx: click.Context, read: Callable[[], T]) -> T:
    """What ``read()`` returns, kept out of the collector's way until the command ends.

    ``read()`` runs with the collector held off, and everything it made is
    frozen as soon as it returns (with everything imported so far), before
    any collection: none walks the requests, neither the young collection
    that would follow the reading nor a full one while they are answered;
    and full collections, which walk every answer held so far, are ten
    times rarer. The young generations are collected as usual, so
    short-lived cycles are still freed. Both are undone when the command's
    context closes, however it ends (objects frozen by the caller before
    stay frozen, with the requests: a freeze cannot be undone in part).
    When the program ends its process at once, what ``read()`` returned is
    held until then (:func:`plugins.cli.quickexit.keep_until_exit`).
    """
    from plugins.batch.gcpause import GcHold
    from plugins.cli.quickexit import keep_until_exit

    threshold = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    GcHold.hold()
    try:
        kept = read()
        gc.freeze()
    finally:
        GcHold.release()

    def restore() -> None:
        gc.set_threshold(*threshold)
        if not frozen_before:
            gc.unfreeze()

    ctx.call_on_close(restore)
    gc.set_threshold(threshold[0], threshold[1], max(threshold[2], _FULL_COLLECTION_EVERY))
    keep_until_exit(kept)
    return kept


_final_collection_skipped = False


def skip_final_collection() -> None:
    """When this process exits, the interpreter's last full collection is skipped.

    A command that answered hundreds of thousands of requests leaves millions
    of objects, and the collector's pass at exit walks every one of them to
    find cycles to free, moments before the whole memory goes back to the
    system (about a third of a second for 100,000 requests). Frozen at exit
    (``gc.freeze``), they are left out of that pass. Nothing the command
    writes waits on it: the results file, the store and the logs are closed
    and flushed before the command returns. Registered once per process.
    """
    global _final_collection_skipped
    if not _final_collection_skipped:
        _final_collection_skipped = True
        atexit.register(gc.freeze)


def observe(state: Any, *, quiet: bool) -> ProgressObserver:
    """Show ``state`` (a :class:`plugins.dashboard.RunState`) on stderr while a command runs."""
    from plugins.manager import get_plugin_manager
    from plugins.progress import ProgressObserver

    get_plugin_manager().pm.register(state, name=f"progress-{id(state)}")
    return ProgressObserver(state, quiet=quiet)


def unobserve(observer: ProgressObserver) -> None:
    """Stop telling the observer's state of the run's events."""
    from plugins.manager import get_plugin_manager

    get_plugin_manager().pm.unregister(observer.state)


def room_suffix(state: Any) -> str:
    """``; shards waited … for queue room …`` for a summary line, or nothing."""
    note = state.room_note()
    return f"; {note}" if note else ""


def hush(quiet: bool) -> None:
    """With ``--quiet``, only errors reach stderr (warnings and notes are dropped).

    A notice stays: that the sandbox answers with placeholders is said even then.
    """
    if quiet:
        logging.getLogger("lexibatch").setLevel(logging.ERROR)


def say(quiet: bool, message: str) -> None:
    """A line for the person at the terminal, on stderr, unless ``--quiet``."""
    if not quiet:
        click.echo(message, err=True)
