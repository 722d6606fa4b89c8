"""``lexibatch run`` and ``lexibatch resume``: requests from a file, and the journal's leftovers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from plugins.cli.group import main
from plugins.cli.guard import EXIT_PROVIDER, guard, say_input_error
from plugins.cli.options import (
    db_opt,
    mode_opt,
    model_opt,
    provider_opt,
    quiet_opt,
    retry_cancelled_opt,
    settings_from,
)
from plugins.cli.session import (
    hush,
    observe,
    requests_kept,
    room_suffix,
    run_coroutine,
    say,
    skip_final_collection,
    unobserve,
    with_connector,
)

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.connector import LexiConnector

__all__ = ["estimate_or_refuse", "resume", "run"]


@main.command()
@click.argument("requests", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("results.jsonl"),
    show_default=True,
)
@provider_opt
@model_opt
@mode_opt
@db_opt
@click.option("--estimate", is_flag=True, help="Print the expected cost and exit without sending.")
@click.option("--budget", type=float, help="Refuse to submit past this many USD.")
@retry_cancelled_opt
@quiet_opt
@click.pass_context
@guard
def run(
    ctx: click.Context,
    requests: Path,
    out: Path,
    estimate: bool,
    budget: float | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Send provider-neutral requests from a JSONL file; write one result per line."""
    from plugins.jobs import read_requests, run_requests
    from plugins.outfile import check_writable

    settings = settings_from(ctx, budget=budget, **flags)
    items = requests_kept(
        ctx,
        lambda: read_requests(
            requests, default_model=settings.connector.model, route=settings.model_for
        ),
    )
    hush(quiet)
    expected_usd: float | None = None
    if estimate or budget is not None:
        expected_usd = estimate_or_refuse(
            settings, [i.request for i in items], estimate=estimate, budget=budget
        )
        if estimate:
            return
    # Before anything is sent: a results file that cannot be written is found now.
    check_writable(out, store=settings.connector.db, inputs=[requests])

    async def body(connector: LexiConnector) -> None:
        import time

        from plugins.dashboard import RunState
        from plugins.report import spent_line

        started = time.time()
        # A line no batch of the provider can hold is refused as it is queued,
        # from the one batch line written for it: it fails alone, never sent.
        connector.choose_mode(len(items), announce=not quiet)
        state = RunState(
            f"run {requests.name}",
            total=len(items),
            stages=["requests"],
            stage_of=lambda task: "requests",
            estimate_usd=expected_usd,
            budget_usd=settings.batch.budget_usd,
            batch_mode=connector.batch_mode,
        )
        observer = observe(state, quiet=quiet)
        try:
            with observer:
                summary = await run_requests(connector, items, out)
        finally:
            unobserve(observer)
        # Every call this run paid for, from the ledger `lexibatch cost` reads.
        spent = connector.store.cost_report(since=started, run=connector.store.run_id)
        say(
            quiet,
            f"{summary.succeeded} succeeded, {summary.failed} failed, {summary.cached} from cache; "
            f"cost {spent_line(spent)}; results in {out}{room_suffix(state)}",
        )
        if summary.unreachable is not None:
            click.echo(
                f"lexibatch: error: could not reach the provider — {summary.unreachable}; "
                f"{summary.not_reached} requests not answered: run the same command again "
                "to resume (what was answered is kept)",
                err=True,
            )
        if summary.refused:
            refusal = summary.refusal_error(requests, out)
            if summary.failed == summary.refused:
                raise refusal
            # Others failed at the provider as well: the refused lines are named
            # all the same, and the exit is a provider failure's, so a script that
            # runs the command again on 1 does so.
            say_input_error(refusal)
            sys.exit(EXIT_PROVIDER)
        if summary.failed:
            sys.exit(EXIT_PROVIDER)

    skip_final_collection()
    run_coroutine(with_connector(settings, body))


def estimate_or_refuse(
    settings: Settings, requests: list[Any], *, estimate: bool, budget: float | None
) -> float | None:
    """Print the estimate, or refuse a run over ``budget``; the estimate in the mode chosen."""
    from plugins.estimate import estimate_requests
    from plugins.factory import resolve_provider_name
    from providers.errors import BudgetExceededError

    provider = resolve_provider_name(settings)
    est = estimate_requests(requests, provider=provider)
    mode = settings.connector.mode
    batch_mode = mode == "batch" or (
        mode == "auto" and len(requests) >= settings.batch.auto_threshold
    )
    chosen = est.batch_usd if batch_mode else est.immediate_usd
    if estimate:
        click.echo(est.describe())
    if budget is not None and chosen is not None and chosen > budget:
        raise BudgetExceededError(chosen, budget)
    return chosen


@main.command()
@provider_opt
@db_opt
@retry_cancelled_opt
@quiet_opt
@click.pass_context
@guard
def resume(ctx: click.Context, quiet: bool, **flags: Any) -> None:
    """Finish the journaled work of earlier runs without the original input."""
    settings = settings_from(ctx, **flags)
    hush(quiet)

    async def body(connector: LexiConnector) -> None:
        import time

        from plugins.dashboard import RunState
        from plugins.report import spent_line

        started = time.time()
        strategy = connector.batch_strategy()
        if settings.batch.retry_cancelled:
            from plugins.batch.usercancel import requeue_cancelled

            again = requeue_cancelled(connector.store, connector.provider_name)
            if not quiet:
                click.echo(f"{again} requests of cancelled batches queued again", err=True)
        state = RunState(
            f"resume ({connector.provider_name})",
            budget_usd=settings.batch.budget_usd,
            batch_mode=True,
        )
        observer = observe(state, quiet=quiet)
        try:
            with observer:
                requeued = await strategy.resume()  # type: ignore[attr-defined]
        finally:
            unobserve(observer)
        counts = connector.store.count_requests(connector.provider_name)
        spent = connector.store.cost_report(since=started, run=connector.store.run_id)
        say(
            quiet,
            f"resumed ({requeued} queued requests sent); cost {spent_line(spent)}; journal now: "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + room_suffix(state),
        )

    run_coroutine(with_connector(settings, body))
