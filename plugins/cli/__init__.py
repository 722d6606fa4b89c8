"""The engine's command line: the ``lexibatch`` group and the commands of the engine.

A plugin adds commands through the ``register_commands(cli)`` hook; the
modules here are what a command needs to behave like the others.

- :mod:`~plugins.cli.group` — the root group (:data:`main`), open to plugins;
- :mod:`~plugins.cli.guard` — one-line errors and exit codes (2, 1, 130);
- :mod:`~plugins.cli.options` — the shared options and the settings they make;
- :mod:`~plugins.cli.session` — a connector for a command, progress, lines on stderr;
- :mod:`~plugins.cli.logs` — the library's log records shown on stderr;
- :mod:`~plugins.cli.running` — ``run`` and ``resume``;
- :mod:`~plugins.cli.batches` — ``batches list|show|cancel|forget``;
- :mod:`~plugins.cli.costs` — ``cost``;
- :mod:`~plugins.cli.emulator` — ``emulator``;
- :mod:`~plugins.cli.listing` — ``plugins``.
"""

from plugins.cli import batches, costs, emulator, listing, running
from plugins.cli.group import LexibatchGroup, main

__all__ = ["LexibatchGroup", "batches", "costs", "emulator", "listing", "main", "running"]
