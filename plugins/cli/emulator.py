"""``lexibatch emulator``: the emulated provider APIs, served on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from plugins.cli.group import main
from plugins.cli.guard import guard

__all__ = ["emulator"]


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="0: any free port.",
)
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep files and batches here across restarts.",
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds a batch takes to complete.",
)
@click.option(
    "--enqueued-token-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Tokens a model may have in batches not yet ended; past it batches are refused.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="A key to accept (repeatable); without it any key is accepted.",
)
@guard
def emulator(
    host: str,
    port: int,
    state: Path | None,
    batch_seconds: float | None,
    enqueued_token_limit: int | None,
    api_keys: tuple[str, ...],
) -> None:
    """Serve the OpenAI, Anthropic, Gemini and Mistral APIs on loopback (synthetic answers).

    Mistral's API is under /mistral (its paths are OpenAI's too).
    """
    import math
    import signal
    import sys

    from providers.emulator import EmulatorConfig, serve
    from providers.errors import UserError, os_error_reason

    fields: dict[str, Any] = {}
    if batch_seconds is not None:
        if not math.isfinite(batch_seconds):
            raise UserError(f"--batch-seconds must be a number of seconds, got {batch_seconds}")
        fields["batch_seconds"] = batch_seconds
    if enqueued_token_limit is not None:
        fields["enqueued_token_limit"] = enqueued_token_limit
    if api_keys:
        fields["api_keys"] = list(api_keys)
    config = EmulatorConfig(**fields)
    try:
        stopped_by = serve(host, port, state, config, ready=lambda line: click.echo(line, err=True))
    except OSError as exc:
        reason = os_error_reason(exc)
        if exc.filename is not None:
            raise UserError(
                f"the emulator cannot keep its state in {state}: {reason} — give --state a "
                "folder it may write"
            ) from None
        raise UserError(
            f"the emulator cannot listen on {host}:{port}: {reason} — choose another --port "
            "(0: any free one), or a --host of this machine"
        ) from None
    if stopped_by == signal.SIGINT:
        sys.exit(130)  # stopped with Ctrl-C, as every command stopped so
