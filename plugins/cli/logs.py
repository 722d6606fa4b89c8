"""The library's log records, shown to the person at the terminal.

Library code never prints: it logs to the ``lexibatch`` loggers. The command
line shows, on stderr, each record at ``WARNING`` or above and the notices
of :data:`plugins.notices.NOTICE_LOGGER` (which mode ``auto`` chose, that
the sandbox answers with placeholders), as their bare message, as Python's
last-resort handler did. ``--quiet`` leaves errors only.
"""

from __future__ import annotations

import logging

import click

from plugins.notices import NOTICE_LOGGER

__all__ = ["quiet_logs", "show_logs"]


class _TerminalHandler(logging.Handler):
    """Writes a record's message to the current stderr (so a test runner captures it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:
            self.handleError(record)


def show_logs() -> None:
    """Show the library's warnings, errors and notices on stderr (idempotent)."""
    root = logging.getLogger("lexibatch")
    if not any(isinstance(h, _TerminalHandler) for h in root.handlers):
        root.addHandler(_TerminalHandler())
    logging.getLogger(NOTICE_LOGGER).setLevel(logging.INFO)


def quiet_logs() -> None:
    """Only errors reach stderr (warnings and notices are dropped): ``--quiet``."""
    logging.getLogger("lexibatch").setLevel(logging.ERROR)
    logging.getLogger(NOTICE_LOGGER).setLevel(logging.ERROR)
