"""How ``lexibatch serve`` stops: Ctrl-C and SIGTERM let the calls already sent land.

Left to uvicorn, a stopping server lets the lookups under way run to their
end — sending the calls of every round still ahead of them — and a second
Ctrl-C cancels calls already sent, paid for, their answers lost. Here the
first signal stops the server taking connections and the connector sending
new calls (a lookup that needs one fails at once: 503), so the server ends
as soon as the calls already sent have landed and their answers are stored.
A second one stops at once and says how many sent calls it gave up. Batch
jobs stay journaled either way, and resume when the server starts again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from plugins.connector import LexiConnector

__all__ = ["ServerStop"]

#: The exit status of a server stopped by each signal (128 + its number).
_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class ServerStop:
    """Stops one server and its connector on SIGINT or SIGTERM (installed on the running loop)."""

    def __init__(self, server: Any, connector: LexiConnector) -> None:
        """``server``: the uvicorn server; ``connector``: the one its lookups call through."""
        self.server = server
        self.connector = connector
        #: The first signal that came, if any.
        self.signal: signal.Signals | None = None
        #: Calls already sent that a second signal gave up (their answers not stored).
        self.abandoned = 0

    def install(self) -> None:
        """Take SIGINT and SIGTERM (uvicorn's own handling is switched off)."""
        loop = asyncio.get_running_loop()
        for sig in _STATUS:
            loop.add_signal_handler(sig, self.stop, sig)

    def remove(self) -> None:
        """Give SIGINT and SIGTERM back."""
        loop = asyncio.get_running_loop()
        for sig in _STATUS:
            loop.remove_signal_handler(sig)

    def stop(self, sig: signal.Signals) -> None:
        """One signal: stop gently the first time, at once the second."""
        if self.signal is None:
            self.signal = sig
            sending = self.connector.stop_sending(refuse=True)
            self.server.should_exit = True
            waiting = (
                f"waiting for the {sending:,} calls already sent, so that their answers are "
                "stored; nothing new is sent (Ctrl-C again to stop now: the provider may "
                "charge for those answers without their being stored)"
                if sending
                else "no call is under way"
            )
            click.echo(f"lexibatch: stopping — {waiting}", err=True)
            return
        self.abandoned = self.connector.stop_sending(refuse=True)
        self.server.force_exit = True

    def quiet_uvicorn(self) -> None:
        """Once the server has stopped for a signal, uvicorn says nothing more.

        What is left (the lookups a second signal gave up, the app's life cycle
        when the signal came as it started) is cancelled with the loop: this
        stop's doing, not failures to report, though uvicorn would print each as
        a traceback. The stop's own lines say what happened.
        """
        if self.signal is not None:
            logging.getLogger("uvicorn.error").disabled = True

    def outcome(self) -> None:
        """End the command as the signal asks: nothing when none came.

        Raises:
            KeyboardInterrupt: after SIGINT (status 130), saying what was given up.
            SystemExit: after SIGTERM (status 143).
        """
        if self.signal is None:
            return
        said = (
            f"interrupted again — {self.abandoned:,} calls already sent were given up: the "
            "provider may charge for their answers, which are not stored"
            if self.abandoned
            else f"{'interrupted' if self.signal is signal.SIGINT else 'stopped'} — every "
            "answer paid for is stored; batch lookups under way resume when the server "
            "starts again"
        )
        if self.signal is signal.SIGINT:
            raise KeyboardInterrupt(said)
        click.echo(f"lexibatch: {said}", err=True)
        raise SystemExit(_STATUS[self.signal])
