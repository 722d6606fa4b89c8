"""Notices for the person running a program: logged, never printed.

Which mode ``auto`` chose and why, or that the sandbox answers with
placeholders, is worth a line on the terminal but is not a warning. Library
code logs such lines at ``INFO`` on :data:`NOTICE_LOGGER`; the command line
shows them (:mod:`plugins.cli.logs`), and an application shows or silences
them as it configures logging.
"""

from __future__ import annotations

import logging

__all__ = ["NOTICE_LOGGER", "notice"]

#: The logger of notices.
NOTICE_LOGGER = "lexibatch.notice"

_log = logging.getLogger(NOTICE_LOGGER)


def notice(message: str) -> None:
    """Log ``message`` as a notice (shown as it is by the command line)."""
    _log.info("%s", message)
