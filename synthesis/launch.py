"""The ``lexibatch`` console script: Ctrl-C before a command starts ends the process at once.

Importing the command line and its libraries takes a moment. A Ctrl-C then
would surface as a traceback from whatever module was being imported (or
as a panic of a compiled one). Until a command starts, nothing has been
read, journaled or sent, so the process simply ends with status 130; from
the command's start (:class:`plugins.cli.group.LexibatchGroup`) Ctrl-C is
Python's ``KeyboardInterrupt`` again, which every command turns into one
line and status 130 with nothing paid for lost.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import NoReturn

__all__ = ["program"]


def _interrupted_before_start(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"lexibatch: interrupted\n")
    os._exit(130)


# How the command line knows this handler is to be replaced when a command starts.
_interrupted_before_start.before_command = True  # type: ignore[attr-defined]


def program() -> NoReturn:
    """Run ``lexibatch`` (see :func:`synthesis.cli.program`)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        # Not when Ctrl-C is ignored (a background job): that stays as it is.
        signal.signal(signal.SIGINT, _interrupted_before_start)
    from synthesis.cli import program as run

    run()
    sys.exit(0)  # never reached: run() ends the process
