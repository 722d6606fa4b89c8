"""The ``lexibatch`` program: the engine's command line, with the dictionary's commands.

The composition root, and the one part of ``synthesis`` that may import
``plugins``: it reads the configuration, builds the connector and hands it
to the pipeline, which sees only the ``Connector`` protocol. The engine's
commands are :data:`plugins.cli.main`'s; the dictionary's (``synthesize``,
``show``, ``serve``) are added as any plugin's are, through the
``register_commands`` hook (:mod:`synthesis.cli.commands`).

- :mod:`~synthesis.cli.commands` — the plugin adding the commands below;
- :mod:`~synthesis.cli.synthesize` — ``synthesize``;
- :mod:`~synthesis.cli.estimate` — what a synthesis would cost, before it runs;
- :mod:`~synthesis.cli.lookup` — ``show`` and ``serve``.
"""

from typing import NoReturn

from plugins.cli import main
from plugins.cli.quickexit import run_and_exit
from synthesis.cli import commands

main.add_plugin(commands)

__all__ = ["main", "program"]


def program() -> NoReturn:
    """The ``lexibatch`` console script: :data:`main` run, then the process ended at once.

    See :mod:`plugins.cli.quickexit`.
    """
    run_and_exit(main)
