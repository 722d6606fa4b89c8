"""One line and an exit code for every error a command meets.

2 for what the user must change (input, configuration), 1 for what a
provider did, 130 for an interrupt, 143 and 129 for SIGTERM and SIGHUP
(nothing paid for is lost: the same command continues). No traceback
reaches the user for the project's errors.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from providers.errors import InputError, LexibatchError, UserError

if TYPE_CHECKING:
    from plugins.config import Settings

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_PROVIDER",
    "EXIT_USER",
    "StoppedBySignal",
    "fail",
    "guard",
    "key_refused_line",
    "say_input_error",
]

T = TypeVar("T")

EXIT_USER = 2
EXIT_PROVIDER = 1
EXIT_INTERRUPTED = 130


class StoppedBySignal(KeyboardInterrupt):
    """A command stopped by SIGTERM or SIGHUP, as Ctrl-C stops one (see plugins.cli.session).

    A ``KeyboardInterrupt``, so that everything that winds down on Ctrl-C winds
    down on it too; the command ends with :attr:`status` (128 + the signal's
    number) instead of 130, and says :attr:`name` instead of "interrupted".
    """

    def __init__(self, name: str, status: int, said: str | None = None) -> None:
        super().__init__(*([said] if said else []))
        #: The signal's name (``"SIGTERM"``).
        self.name = name
        #: The exit status the command ends with.
        self.status = status


def fail(message: str, code: int) -> NoReturn:
    """Print ``lexibatch: error: <message>`` on stderr and exit with ``code``."""
    click.echo(f"lexibatch: error: {message}", err=True)
    sys.exit(code)


def key_refused_line(settings: Settings, provider: str, error: Exception) -> str:
    """The closing error of a run whose provider refused the API key: which variable to fix."""
    env = settings.provider_settings(provider).api_key_env
    where = f"the key in {env}" if env else "its key"
    return (
        f"the provider refused {where}: {error} — set a valid key and run the same command "
        "again (what was answered is kept)"
    )


def say_input_error(exc: InputError) -> None:
    """Print every bad line of an input on its own line, then what it adds up to."""
    if exc.message != "; ".join(exc.problems):
        for problem in exc.problems:
            click.echo(f"lexibatch: error: {problem}", err=True)
    click.echo(f"lexibatch: error: {exc}", err=True)


def guard(func: Callable[..., T]) -> Callable[..., T]:
    """Turn the project's errors raised by a command into one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            say_input_error(exc)
            sys.exit(EXIT_USER)
        except UserError as exc:
            fail(str(exc), EXIT_USER)
        except LexibatchError as exc:
            fail(str(exc), EXIT_PROVIDER)
        except KeyboardInterrupt as exc:
            # A second Ctrl-C that gave up calls already sent says so (plugins.cli.session).
            said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
            signalled = exc if isinstance(exc, StoppedBySignal) else None
            what = f"stopped by {signalled.name}" if signalled else "interrupted"
            # A command adds what the user may misread (plugins.cli.running: an older --out).
            notes = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
            click.echo(
                f"lexibatch: {said}"
                if said
                else f"lexibatch: {what} — everything paid for is stored{notes}; "
                "run the same command again to continue",
                err=True,
            )
            sys.exit(signalled.status if signalled else EXIT_INTERRUPTED)

    return wrapper
