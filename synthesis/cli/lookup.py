"""The lookup commands of the ``lexibatch`` CLI: ``show`` and ``serve``.

Part of the composition root (the :mod:`synthesis.cli` package, which may
import ``plugins``): ``serve`` builds the connector and hands the app only the
``Connector`` protocol, the store's documents and the report functions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from plugins.cli.guard import guard
from plugins.cli.options import db_opt, model_opt, provider_opt, settings_from, store_to_read
from plugins.cli.session import run_coroutine, with_connector
from providers.errors import InputError, UserError
from synthesis.cli.stopping import ServerStop

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.connector import LexiConnector

__all__ = ["serve", "show"]


@click.command()
@click.argument("word")
@click.option(
    "--entries",
    "entries_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the entry from this JSONL output instead of the store.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
@db_opt
@click.pass_context
@guard
def show(
    ctx: click.Context, word: str, entries_file: Path | None, as_json: bool, **flags: Any
) -> None:
    """Print the entry of WORD as a dictionary page (from the store, or --entries)."""
    from synthesis.page import find_entry, print_entry

    if entries_file is not None:
        entry = find_entry(word, entries_file)
    else:
        from plugins.store import Store
        from synthesis.entrystore import entry_from_store

        settings = settings_from(ctx, **flags)
        db = store_to_read(settings, flags)
        entry = None
        if db is not None:
            with Store(db) as store:
                entry = entry_from_store(word, store)
    if entry is None:
        where = entries_file or "the store"
        raise InputError(
            f"no entry for {word!r} in {where} (synthesize it first, or look it up with "
            "`lexibatch serve`)"
        )
    if as_json:
        click.echo(entry.model_dump_json(indent=2))
    else:
        print_entry(entry)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--token",
    envvar="LEXIBATCH_SERVE_TOKEN",
    help="Bearer token the POST routes require (env LEXIBATCH_SERVE_TOKEN).",
)
@click.option(
    "--components",
    default="all",
    show_default=True,
    help="Comma-separated components, or all / definition / word.",
)
@provider_opt
@model_opt
@db_opt
@click.pass_context
@guard
def serve(
    ctx: click.Context, host: str, port: int, token: str | None, components: str, **flags: Any
) -> None:
    """Serve lookups over HTTP (now, or queued into batch rounds) and a web page at /."""
    from synthesis.components import parse_components
    from synthesis.sources import build_sources

    settings = settings_from(ctx, **flags)
    chosen = parse_components(components)
    sources = build_sources([])
    if token is None:
        # click reads an empty variable as unset; set but empty, it is refused below.
        token = os.environ.get("LEXIBATCH_SERVE_TOKEN")
    if token is not None:
        _check_token(token)
    # The server takes Ctrl-C and SIGTERM itself (see synthesis.cli.stopping).
    stop = run_coroutine(
        _serve(settings, host, port, token, chosen, sources), land_sent_calls=False
    )
    stop.outcome()


def _check_token(token: str) -> None:
    """Refuse a token no client could send, and an empty one (which would serve openly).

    Raises:
        UserError: the token is empty, or not printable ASCII without spaces.
    """
    where = "the serve token (--token or LEXIBATCH_SERVE_TOKEN)"
    if not token.strip():
        # Most likely a secret that was not set: serving without a token is asked for
        # by giving none, never by an empty one.
        raise UserError(f"{where} is empty — give a token, or unset it to serve without one")
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise UserError(
            f"{where} must be printable ASCII without spaces: a client sends it in an "
            "Authorization header — choose another"
        )


async def _serve(
    settings: Settings,
    host: str,
    port: int,
    token: str | None,
    components: tuple[str, ...],
    sources: Any,
) -> ServerStop:
    import socket

    import uvicorn

    from plugins.factory import SANDBOX_NOTICE
    from plugins.jsonreport import batches_json, cost_json
    from plugins.sandbox import SANDBOX
    from providers.errors import os_error_reason
    from synthesis.serve import ServeContext, create_app

    # Bound here, before anything starts: a taken port is one line, not a traceback.
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror as exc:
        raise UserError(
            f"cannot listen on {host}:{port}: no such address ({exc.strerror}) — "
            "give --host an address of this machine (127.0.0.1, or 0.0.0.0 for all)"
        ) from None
    try:
        listening = socket.create_server((host, port))
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port}: {os_error_reason(exc)} — choose another --port"
        ) from None
    port = listening.getsockname()[1]  # the one chosen, for --port 0

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Not uvicorn's: ServerStop takes SIGINT and SIGTERM.
            yield

    # GCIDE's letters load in a thread of their own, not on the loop as lookups ask.
    sources.preload_in_background()

    async def body(connector: LexiConnector) -> ServerStop:
        # Immediate lookups and batch jobs share this connector; each call says its mode.
        connector.disable_batch_mode()
        context = ServeContext(
            connector=connector,
            documents=connector.store,
            sources=sources,
            components=components,
            model_for=settings.model_for,
            has_batch=connector.provider.batch is not None,
            batches=lambda: batches_json(connector.store),
            cost=lambda: cost_json(connector.store),
            token=token,
            notice=SANDBOX_NOTICE if connector.provider_name == SANDBOX else None,
            release_batches=connector.release_batches,
        )
        app = create_app(context)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        server = Server(config)
        stop = ServerStop(server, connector)
        stop.install()
        # The port is bound already: a client that connects now is answered once it is up.
        click.echo(
            f"lexibatch: serving http://{host}:{port}/ (provider {connector.provider_name}; "
            f"API schema at /openapi.json{'; POST routes need the token' if token else ''})",
            err=True,
        )
        try:
            await server.serve(sockets=[listening])
        finally:
            stop.remove()
            stop.quiet_uvicorn()
            # Stopped at once, the app's own shutdown was skipped: its batch
            # jobs are stopped here (they stay journaled).
            await app.state.runner.aclose()
        return stop

    with listening:
        return await with_connector(settings, body)
