"""``lexibatch batches …``: the journaled batches listed, shown, cancelled or given up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from plugins.cli.group import main
from plugins.cli.guard import guard
from plugins.cli.options import db_opt, provider_opt, settings_from, store_to_read
from plugins.cli.session import run_coroutine, with_connector
from providers.errors import ProviderError

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.connector import LexiConnector

__all__ = ["batches"]


@main.group()
def batches() -> None:
    """Show and control provider batches recorded in the journal."""


@batches.command("list")
@provider_opt
@db_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON array (money as exact strings).")
@click.pass_context
@guard
def batches_list(ctx: click.Context, as_json: bool, **flags: Any) -> None:
    """List the journaled batches: states, counts, cost, local times and ages."""
    from plugins.store import Store
    from plugins.tables import batch_json, batch_views, batches_table, stdout_console

    settings = settings_from(ctx, **flags)
    db = store_to_read(settings, flags)
    views = []
    if db is not None:
        with Store(db) as store:
            views = batch_views(store, store.shards(provider=flags.get("provider")))
    if as_json:
        import orjson

        rows = [batch_json(v, raw=False) for v in views]
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
        return
    if not views:
        click.echo("no batches in the journal")
        return
    stdout_console().print(batches_table(views))


@batches.command("show")
@click.argument("batch")
@db_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON object (money as exact strings).")
@click.pass_context
@guard
def batches_show(ctx: click.Context, batch: str, as_json: bool, **flags: Any) -> None:
    """Show one batch (by batch id or shard id), as journaled and as its provider sees it now."""
    from plugins.tables import batch_detail, batch_json, batch_views, stdout_console

    shard, settings = _shard_andsettings_from(ctx, batch, flags)

    async def body(connector: LexiConnector) -> None:
        (view,) = batch_views(connector.store, [shard])
        endpoint = connector.provider.batch
        info = None
        if shard.batch_id and endpoint is not None:
            try:
                info = await endpoint.poll(shard.batch_id)
            except ProviderError as exc:
                # A collected batch may be deleted at the provider (Gemini's
                # are, with their files): the journal is all there is to show.
                if exc.status_code != 404 or shard.state != "collected":
                    raise
        if as_json:
            import orjson

            click.echo(orjson.dumps(batch_json(view, info), option=orjson.OPT_INDENT_2))
        else:
            stdout_console().print(batch_detail(view, info))

    run_coroutine(with_connector(settings, body))


@batches.command("cancel")
@click.argument("batch")
@db_opt
@click.pass_context
@guard
def batches_cancel(ctx: click.Context, batch: str, **flags: Any) -> None:
    """Cancel a batch: its unanswered requests end as cancelled (--retry-cancelled resends them)."""
    shard, settings = _shard_andsettings_from(ctx, batch, flags)

    async def body(connector: LexiConnector) -> None:
        from plugins.store import UNFINISHED_SHARD_STATES
        from providers.errors import InputError, UnsupportedError

        if shard.state == "ended" or shard.state not in UNFINISHED_SHARD_STATES:
            # Nothing runs at the provider any more: asking it would only be refused.
            raise InputError(
                f"{batch} is {shard.state}: its batch has ended, there is nothing to cancel"
                + (" (its results are collected by the next run)" if shard.state == "ended" else "")
            )
        endpoint = connector.provider.batch
        if endpoint is None:
            raise UnsupportedError(f"provider {connector.provider_name!r} has no batch endpoint")
        batch_id = shard.batch_id
        if not batch_id and shard.state == "submitting":
            # Created, perhaps, but not journaled before a crash: ask the provider.
            from plugins.batch.findshard import journaled_shard

            found = await endpoint.find(journaled_shard(connector.store, shard))
            batch_id = found.id if found is not None else None
        if not batch_id:
            raise InputError(f"{batch}: this shard never reached the provider; nothing to cancel")
        from plugins.batch.usercancel import record_user_cancel

        # Journaled before the provider is asked: whichever process collects
        # the batch ends its unanswered requests as cancelled, never resends them.
        record_user_cancel(connector.store, shard.shard_id)
        info = await endpoint.cancel(batch_id)
        if shard.batch_id:
            connector.store.update_shard(shard.shard_id, batch_status=info.state.value)
        click.echo(f"{batch_id}: {info.state.value}")

    run_coroutine(with_connector(settings, body))


@batches.command("forget")
@click.argument("batch")
@click.option(
    "--yes",
    is_flag=True,
    help="Forget it although the provider may still hold it (ended, or not found with this key).",
)
@db_opt
@click.pass_context
@guard
def batches_forget(ctx: click.Context, batch: str, yes: bool, **flags: Any) -> None:
    """Give up on a batch whose results cannot be had (gone at the provider, expired).

    The batch's own provider is asked first; one it still runs is refused
    (cancel it first). Its answered requests stay answered; the others are
    queued again for the next run (or `lexibatch resume`).
    """
    shard, settings = _shard_andsettings_from(ctx, batch, flags)

    async def body(connector: LexiConnector) -> None:
        from plugins.batch.forget import forget_batch

        done = await forget_batch(
            connector.store,
            connector.provider.batch,
            shard,
            confirmed=yes,
            delete_files=settings.batch.delete_files,
        )
        click.echo(
            f"{done.batch_id or done.shard_id}: forgotten (the provider: {done.provider_says}); "
            f"{done.answered} answered requests kept, {done.resend} queued again for the next "
            f"run (or lexibatch resume --provider {shard.provider})"
            + (f"; its input file {done.input_deleted} deleted" if done.input_deleted else "")
        )

    run_coroutine(with_connector(settings, body))


def _shard_andsettings_from(
    ctx: click.Context, ident: str, flags: dict[str, Any]
) -> tuple[Any, Settings]:
    """The journaled shard ``ident`` names, and settings for its own provider.

    Whatever provider the config names, only the shard's own knows its batch.
    """
    from plugins.store import Store
    from providers.errors import InputError

    db = store_to_read(settings_from(ctx, **flags), flags)
    if db is None:
        raise InputError(f"no batch {ident!r} in the journal: no run has made the store yet")
    with Store(db) as store:
        shard = _shard_of(store, ident)
    # The model too: a provider may pick its batch API by model (LiteLLM: azure/…, openai/…).
    model = {"model": shard.model} if shard.model != "*" else {}
    return shard, settings_from(ctx, provider=shard.provider, **model, **flags)


def _shard_of(store: Any, ident: str) -> Any:
    from providers.errors import InputError

    shard = store.get_shard(ident) or store.shard_by_batch_id(ident)
    if shard is None:
        raise InputError(
            f"no batch or shard {ident!r} in the journal (see `lexibatch batches list`)"
        )
    return shard
