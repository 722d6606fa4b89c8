"""Ending the ``lexibatch`` process at once, without freeing its memory object by object.

A command that answered hundreds of thousands of requests leaves the
process with hundreds of thousands of objects and every module it imported
(the provider SDKs alone define thousands of classes). The interpreter's
own exit tears them all down one by one, a tenth of a second or more,
moments before the system takes the whole memory back at once.
:func:`run_and_exit` runs the program as a console script does, then ends
the process with the program's exit status after doing what an exit must
not skip:

* the exit handlers run (:mod:`atexit`: the log handlers are flushed and
  closed, a plugin's own handlers are called), as at any exit;
* standard output and standard error are flushed (if that fails, the
  interpreter's own exit takes over and reports it, as it always has).

Nothing a command writes waits for the teardown: the results file is
renamed into place and the store closed before the command returns, and
the store's journal is safe even against an abrupt end (the crash tests
kill -9 a run in every phase). When a thread that is not a daemon is still
running, the interpreter's usual exit waits for it as always.

A command hands what it holds to the end with :func:`keep_until_exit` (a
run's requests: freeing 100,000 of them one by one takes a twentieth of a
second), so that it is not freed when the command returns either.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import click

__all__ = ["exit_status", "keep_until_exit", "run_and_exit"]

# What commands hand to the end of the process, while run_and_exit runs them.
_kept: list[object] = []
_ending_at_once = False


def keep_until_exit(held: object) -> None:
    """Hold ``held`` until the process ends, if :func:`run_and_exit` ends it.

    The memory then goes back to the system at once, never freed object by
    object. Otherwise (a program run another way, a test's runner) nothing
    is held: ``held`` is freed as usual.
    """
    if _ending_at_once:
        _kept.append(held)


def run_and_exit(program: click.Command) -> NoReturn:
    """Run ``program`` on this process's arguments, then end the process with its status."""
    global _ending_at_once
    _ending_at_once = True
    try:
        program.main()  # in standalone mode it always ends by SystemExit
    except SystemExit as exc:
        status = exit_status(exc.code)
    if _others_running():
        sys.exit(status)
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: the descriptor was closed before the start
                stream.flush()
    except (OSError, ValueError):
        # What could not be written (a full disk, a reader gone): the
        # interpreter's exit tries once more and reports it as it always has
        # (status 120).
        sys.exit(status)
    os._exit(status)


def exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` ends a process with (a message is printed to stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            print(code, file=sys.stderr)
    return 1


def _others_running() -> bool:
    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())
