"""The dictionary's commands, added to ``lexibatch`` through the ``register_commands`` hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.hookspecs import hookimpl
from synthesis.cli.lookup import serve, show
from synthesis.cli.synthesize import synthesize

if TYPE_CHECKING:
    import click

__all__ = ["register_commands"]


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``synthesize``, ``show`` and ``serve``."""
    for command in (synthesize, show, serve):
        cli.add_command(command)
