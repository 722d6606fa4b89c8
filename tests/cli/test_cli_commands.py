"""The command line is open to plugins: ``register_commands`` adds commands beside the engine's."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.plugindist import install_plugin, plugin_env

#: The commands ``lexibatch --help`` lists: the engine's, then the dictionary's.
ENGINE_COMMANDS = ["batches", "cost", "emulator", "plugins", "resume", "run"]
DICTIONARY_COMMANDS = ["serve", "show", "synthesize"]

GREETER_SOURCE = textwrap.dedent(
    '''
    """A third-party plugin adding one command."""
    import click
    from plugins import hookimpl
    from plugins.cli.guard import guard
    from providers.errors import InputError

    @hookimpl
    def register_commands(cli):
        @cli.command()
        @click.argument("name")
        @guard
        def greet(name):
            """Greet NAME."""
            if not name.isalpha():
                raise InputError(f"{name!r} is not a name")
            click.echo(f"hello, {name}")
    '''
)


def _lexibatch(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synthesis.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


def _commands(help_text: str) -> list[str]:
    listed = help_text.split("Commands:", 1)[1]
    return re.findall(r"^  (\S+)", listed, flags=re.MULTILINE)


def test_help_lists_the_engine_commands_and_the_dictionary_commands() -> None:
    done = _lexibatch("--help")
    assert done.returncode == 0, done.stderr
    assert _commands(done.stdout) == sorted(ENGINE_COMMANDS + DICTIONARY_COMMANDS)


def test_the_engine_group_alone_has_the_engine_commands() -> None:
    from plugins.cli.group import main

    # The engine's commands are on the group itself; the dictionary's come
    # through the hook, once a program built on the engine hands it its plugin.
    assert set(ENGINE_COMMANDS) <= set(main.commands)


def test_the_dictionary_registers_its_commands_through_the_hook() -> None:
    import click

    from synthesis.cli import commands

    group = click.Group("probe")
    commands.register_commands(cli=group)
    assert sorted(group.commands) == DICTIONARY_COMMANDS


@pytest.fixture
def greeter_plugin(tmp_path: Path) -> dict[str, str]:
    """``lexi_greeter`` installed as a distribution with a ``lexibatch`` entry point."""
    site = tmp_path / "site"
    install_plugin(
        site, "lexi_greeter", GREETER_SOURCE, dist="lexi-greeter", version="1.0", entry="greeter"
    )
    return plugin_env(site, "greeter")


def test_a_plugin_adds_a_command_that_help_lists_and_that_runs(
    greeter_plugin: dict[str, str],
) -> None:
    listed = _lexibatch("--help", env=greeter_plugin)
    assert listed.returncode == 0, listed.stderr
    assert _commands(listed.stdout) == sorted([*ENGINE_COMMANDS, *DICTIONARY_COMMANDS, "greet"])
    greeted = _lexibatch("greet", "ada", env=greeter_plugin)
    assert (greeted.returncode, greeted.stdout) == (0, "hello, ada\n"), greeted.stderr
    refused = _lexibatch("greet", "4da", env=greeter_plugin)
    assert refused.returncode == 2
    assert refused.stderr == "lexibatch: error: '4da' is not a name\n"


def test_a_plugin_that_fails_to_load_is_left_out_in_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    source = "raise RuntimeError('half installed')\n"
    install_plugin(site, "lexi_broken", source, dist="lexi-broken", version="0.1", entry="broken")
    env = plugin_env(site)
    said = (
        "lexibatch: plugin broken (lexi_broken) failed to load: RuntimeError: half installed "
        "— left out (fix or uninstall it, or leave it out of LEXIBATCH_LOAD_PLUGINS)"
    )
    # The commands that do not need it run, saying it once.
    done = _lexibatch("--help", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == said + "\n" and "run" in done.stdout
    # A run naming a provider it would have registered is told why it is missing.
    (tmp_path / "r.jsonl").write_text('{"prompt": "hi"}\n')
    wanted = _lexibatch(
        "run",
        str(tmp_path / "r.jsonl"),
        "--provider",
        "broken",
        "--db",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "o.jsonl"),
        env=env,
    )
    assert wanted.returncode == 2, wanted.stderr
    last = wanted.stderr.strip().splitlines()[-1]
    assert last.startswith("lexibatch: error: unknown provider 'broken' — registered providers:")
    assert last.endswith(
        "; left out: plugin broken (lexi_broken) failed to load: RuntimeError: half installed"
    )
    assert "Traceback" not in wanted.stderr


def test_a_plugin_command_never_replaces_one_already_there(tmp_path: Path) -> None:
    site = tmp_path / "site"
    source = (
        "import click\n"
        "from plugins import hookimpl\n"
        "@hookimpl\n"
        "def register_commands(cli):\n"
        "    @cli.command()\n"
        "    def greet():\n"
        "        click.echo('hello')\n"
        "    @cli.command()\n"
        "    def run():\n"
        "        click.echo('not the real run')\n"
    )
    install_plugin(
        site, "lexi_usurper", source, dist="lexi-usurper", version="0.1", entry="usurper"
    )
    env = plugin_env(site)
    done = _lexibatch("run", "requests.jsonl", env=env, cwd=tmp_path)
    warning = (
        "lexibatch: plugin usurper:lexi_usurper (lexi-usurper 0.1): a plugin's command 'run' "
        "would replace the 'run' command already there — left out (fix or uninstall it, or "
        "leave it out of LEXIBATCH_LOAD_PLUGINS)\n"
    )
    # The real run ran (and found no request file); the plugin is left out whole,
    # the command it added before the one refused among it.
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(warning)
    assert done.stderr.endswith(
        "requests.jsonl: cannot read the request file (No such file or directory)\n"
    ), done.stderr
    greet = _lexibatch("greet", env=env, cwd=tmp_path)
    assert greet.returncode == 2 and "No such command 'greet'" in greet.stderr
    listed = _lexibatch("--help", env=env, cwd=tmp_path)
    assert listed.returncode == 0
    assert _commands(listed.stdout) == sorted(ENGINE_COMMANDS + DICTIONARY_COMMANDS)
