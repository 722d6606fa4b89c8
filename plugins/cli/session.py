"""A command's work: its connector, the progress it shows, and what it says on stderr."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.connector import LexiConnector
    from plugins.progress import ProgressObserver

__all__ = ["hush", "observe", "run_coroutine", "say", "unobserve", "with_connector"]

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body to its end."""
    return asyncio.run(coro)


async def with_connector(settings: Settings, body: Callable[[LexiConnector], Awaitable[T]]) -> T:
    """``await body(connector)`` with a connector built from ``settings``, closed at the end."""
    from plugins.factory import open_connector

    connector = open_connector(settings)
    try:
        return await body(connector)
    finally:
        await connector.aclose()


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
