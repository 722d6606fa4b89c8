"""``lexibatch cost``: what was spent, by provider, mode, task and model."""

from __future__ import annotations

from typing import Any

import click

from plugins.cli.group import main
from plugins.cli.guard import guard
from plugins.cli.options import db_opt, settings_from, store_to_read

__all__ = ["cost"]


@main.command()
@db_opt
@click.option("--json", "as_json", is_flag=True, help="Rows and totals as JSON (exact strings).")
@click.option("--chart", is_flag=True, help="Also draw the spend over time, by minute to week.")
@click.pass_context
@guard
def cost(ctx: click.Context, as_json: bool, chart: bool, **flags: Any) -> None:
    """Report spend by provider, mode, task and model, and the saving against immediate."""
    from plugins.report import summary_line
    from plugins.spendchart import SpendBucket, spend_buckets, spend_chart
    from plugins.store import Store
    from plugins.tables import ProviderCostRow, cost_json, cost_rows, cost_table, stdout_console

    settings = settings_from(ctx, **flags)
    db = store_to_read(settings, flags)
    rows: list[ProviderCostRow] = []
    buckets: list[SpendBucket] = []
    summary, name, fmt = "", "", ""
    if db is not None:
        with Store(db) as store:
            rows = cost_rows(store)
            summary = summary_line(store.cost_report()) if rows else ""
            buckets, name, fmt = spend_buckets(store) if chart else ([], "", "")
    if as_json:
        import orjson

        click.echo(orjson.dumps(cost_json(rows), option=orjson.OPT_INDENT_2))
        return
    if not rows:
        click.echo("no paid calls recorded yet")
        return
    console = stdout_console()
    console.print(cost_table(rows))
    console.print(summary)
    if chart:
        console.print()
        console.print(spend_chart(buckets, name, fmt))
