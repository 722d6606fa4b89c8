"""The ``lexibatch`` command group, open to plugins.

The engine's commands are attached to :data:`main` by the modules of
:mod:`plugins.cli`. Any plugin adds its own through the
``register_commands(cli)`` hook (:mod:`plugins.hookspecs`), called once,
the first time the group lists or looks up a command — so ``--help`` shows
them all. A program built on the engine (``synthesis.cli``) hands the group
its own plugin with :meth:`LexibatchGroup.add_plugin` before that.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from plugins.cli.guard import EXIT_USER, StoppedBySignal, fail
from plugins.cli.logs import show_logs
from providers.errors import ConfigError

__all__ = ["LexibatchGroup", "main"]


def _command_starting() -> None:
    """From here on Ctrl-C is ``KeyboardInterrupt``, which every command turns into exit 130.

    Until now the console script (``synthesis.launch``) ended the process at
    once on Ctrl-C: nothing had been read, journaled or sent.
    """
    handler = signal.getsignal(signal.SIGINT)
    if getattr(handler, "before_command", False):
        signal.signal(signal.SIGINT, signal.default_int_handler)


class LexibatchGroup(click.Group):
    """A click group that asks the plugins for their commands before it lists any."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins: list[object] = []
        self._loaded = False

    def add_plugin(self, plugin: object) -> None:
        """Register ``plugin`` (built into the program) before the hook is called."""
        self._plugins.append(plugin)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command line's group and its command (see :func:`_command_starting`).

        A Ctrl-C that reaches here came before the command's own handling
        (its ``guard``) or from a command without one: one line, exit 130,
        where click would say ``Aborted!`` and exit 1.
        """
        _command_starting()
        try:
            return super().invoke(ctx)
        except StoppedBySignal as exc:
            click.echo(f"lexibatch: stopped by {exc.name}", err=True)
            ctx.exit(exc.status)
        except KeyboardInterrupt:
            click.echo("lexibatch: interrupted", err=True)
            ctx.exit(130)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def _load_plugin_commands(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from plugins.manager import BUILTIN_ORIGIN, get_plugin_manager

        manager = get_plugin_manager()
        try:
            for plugin in self._plugins:
                manager.register(plugin, origin=BUILTIN_ORIGIN)
            manager.call_each("register_commands", cli=self, checkpoint=self._checkpoint)
        except ConfigError as exc:
            # A built-in that cannot be loaded: one line, as every command says it.
            fail(str(exc), EXIT_USER)

    def _checkpoint(self) -> Callable[[], None]:
        """What takes the commands back to what they are now (a plugin that failed halfway)."""
        before = dict(self.commands)

        def undo() -> None:
            self.commands = before

        return undo

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Add ``cmd``; a plugin's command never takes the name of one already there.

        Raises:
            ConfigError: the name is taken (by lexibatch or another plugin).
        """
        name = name or cmd.name
        if name in self.commands:
            raise ConfigError(
                f"a plugin's command {name!r} would replace the {name!r} command already "
                "there — give it another name"
            )
        super().add_command(cmd, name)


@click.group(cls=LexibatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="LEXIBATCH_CONFIG",
    help="Config file (default: ./lexibatch.toml).",
)
@click.version_option(package_name="lexibatch")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Many small structured LLM calls, immediately or through batch endpoints."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    show_logs()
    ctx.obj = {"config": config}
