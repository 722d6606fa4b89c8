"""The library's log records, shown to the person at the terminal.

Library code never prints: it logs to the ``lexibatch`` loggers. The command
line shows, on stderr, each record at ``WARNING`` or above and the notices
of :data:`plugins.notices.NOTICE_LOGGER` (which mode ``auto`` chose, that
the sandbox answers with placeholders), as their message after
``lexibatch: `` (the program's lines all begin so, for a log to be searched).
``--quiet`` drops the warnings (:func:`plugins.cli.session.hush`).
"""

from __future__ import annotations

import logging

import click

from plugins.notices import NOTICE_LOGGER

__all__ = ["show_logs"]


_PREFIX = "lexibatch: "


class _TerminalHandler(logging.Handler):
    """Writes a record's message to the current stderr (so a test runner captures it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if not message.startswith(_PREFIX):
                message = _PREFIX + message
            click.echo(message, err=True)
        except Exception:
            self.handleError(record)


def show_logs() -> None:
    """Show the library's warnings, errors and notices on stderr (idempotent)."""
    root = logging.getLogger("lexibatch")
    # Each command starts from the default level (an earlier --quiet in the
    # same process does not carry over).
    root.setLevel(logging.NOTSET)
    if not any(isinstance(h, _TerminalHandler) for h in root.handlers):
        root.addHandler(_TerminalHandler())
    logging.getLogger(NOTICE_LOGGER).setLevel(logging.INFO)
