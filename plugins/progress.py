"""The progress a command shows while it runs: live, in plain lines, or not at all.

:class:`ProgressObserver` registers a :class:`~plugins.dashboard.RunState`
with the hooks for the length of a command and shows it on stderr:

- in a terminal, as a live dashboard (rich ``Live``), redrawn a few times a second;
- when stderr is a file or a pipe, as plain lines a person can read later:
  one when a batch is submitted or changes state (or a wait starts or ends),
  and one every ``interval`` seconds while the run goes on, never one per request;
- with ``quiet``, nothing at all.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import IO, Any, Literal

from plugins.dashboard import RunState

__all__ = ["ProgressObserver", "Style"]

#: How progress is shown: ``live`` (terminal), ``lines`` (a log), ``none``.
Style = Literal["live", "lines", "none"]

#: Seconds between two plain progress lines when nothing changes state.
DEFAULT_INTERVAL = 30.0

# The environment variables by which rich may take a stream that is not a
# terminal for one.
_MAY_FORCE_TERMINAL = frozenset({"FORCE_COLOR", "TTY_COMPATIBLE"})


class ProgressObserver:
    """Shows a :class:`RunState` on stderr while a command runs.

    Args:
        state: what is shown (it is also the plugin to register).
        style: ``live``, ``lines`` or ``none``; by default ``live`` when the
            stream is a terminal, ``lines`` otherwise.
        quiet: show nothing (``--quiet``), whatever the style.
        interval: seconds between plain lines when nothing changes.
        stream: where to write (stderr by default).
    """

    def __init__(
        self,
        state: RunState,
        *,
        style: Style | None = None,
        quiet: bool = False,
        interval: float = DEFAULT_INTERVAL,
        stream: IO[str] | None = None,
    ) -> None:
        self.state = state
        if stream is None:
            stream = sys.stderr
        if stream is None:
            # The process was started with its standard error closed: there
            # is nowhere to show anything, and the run goes on all the same.
            stream, quiet = io.StringIO(), True
        self.stream = stream
        #: rich's console, made only for a live dashboard (or to decide on one).
        self.console: Any = None
        if quiet:
            style = "none"
        elif style is None:
            style = "live" if self._is_terminal() else "lines"
        self.style: Style = style
        self.interval = interval
        self._live: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_changes = 0

    # The counts, for the command's closing summary.
    @property
    def succeeded(self) -> int:
        """Requests answered (cached ones included)."""
        return sum(c.succeeded for c in self.state.stages.values())

    @property
    def failed(self) -> int:
        """Requests that ended in an error."""
        return sum(c.failed for c in self.state.stages.values())

    @property
    def cached(self) -> int:
        """Requests answered from the store."""
        return sum(c.cached for c in self.state.stages.values())

    @property
    def requests(self) -> int:
        """Requests finished so far (cached ones included)."""
        return self.succeeded + self.failed

    def _is_terminal(self) -> bool:
        # rich decides (its environment variables, Jupyter, IDLE); a stream
        # that is no terminal, with none of the variables that say otherwise,
        # is answered without importing rich.
        if not _MAY_FORCE_TERMINAL.intersection(os.environ):
            try:
                if not self.stream.isatty():
                    return False
            except (AttributeError, ValueError, OSError):  # no isatty, a closed stream
                return False
        return bool(self._rich_console().is_terminal)

    def _rich_console(self) -> Any:
        if self.console is None:
            from rich.console import Console

            self.console = Console(file=self.stream)
        return self.console

    def __enter__(self) -> ProgressObserver:
        if self.style == "live":
            from rich.live import Live

            self._live = Live(
                get_renderable=self.state.render,
                console=self._rich_console(),
                refresh_per_second=4,
                transient=False,
            )
            self._live.start()
        elif self.style == "lines":
            self._write_line()
            self._thread = threading.Thread(
                target=self._lines, name="lexibatch-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._write_line()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _lines(self) -> None:
        # Wake often to hear about state changes; write on a change or when the interval is up.
        tick = min(self.interval, 0.25)
        waited = 0.0
        while not self._stop.wait(tick):
            waited += tick
            if self.state.changes != self._seen_changes or waited >= self.interval:
                self._write_line()
                waited = 0.0

    def _write_line(self) -> None:
        self._seen_changes = self.state.changes
        try:
            self.stream.write(f"lexibatch: {self.state.status_line()}\n")
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken log must not stop the run: progress is only shown.
            self._stop.set()
