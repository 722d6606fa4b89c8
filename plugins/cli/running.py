"""``lexibatch run`` and ``lexibatch resume``: requests from a file, and the journal's leftovers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from plugins.cli.group import main
from plugins.cli.guard import (
    EXIT_PROVIDER,
    EXIT_USER,
    fail,
    guard,
    key_refused_line,
    say_input_error,
)
from plugins.cli.options import (
    db_opt,
    mode_opt,
    model_opt,
    provider_opt,
    quiet_opt,
    retry_cancelled_opt,
    settings_from,
    store_to_read,
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
    # The budget of the command line or of the configuration: one setting.
    budget = settings.batch.budget_usd
    if estimate or budget is not None:
        expected_usd = estimate_or_refuse(
            settings, [i.request for i in items], estimate=estimate, budget=budget, quiet=quiet
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
            f"cost {spent_line(spent, connector.timed_out_calls)}; results in {out}"
            f"{room_suffix(state)}",
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
        if summary.key_refused is not None:
            refused = key_refused_line(settings, connector.provider_name, summary.key_refused)
            noun = "request" if summary.failed == 1 else "requests"
            fail(f"{summary.failed:,} {noun} not answered: {refused}", EXIT_USER)
        if summary.failed:
            failed_here = summary.failed - summary.not_reached
            if summary.first_failure is not None and failed_here:
                # Shown even with --quiet, which hides everything but errors.
                line, error = summary.first_failure
                more = f" (and {failed_here - 1:,} more)" if failed_here > 1 else ""
                click.echo(
                    f"lexibatch: error: {requests}:{line}: {type(error).__name__}: {error}{more} "
                    f"— each failed request's error is in {out}",
                    err=True,
                )
            sys.exit(EXIT_PROVIDER)

    skip_final_collection()
    older = out.exists()
    try:
        run_coroutine(with_connector(settings, body))
    except KeyboardInterrupt as stopped:
        if older and not stopped.args:
            # The results go to a temporary file renamed over --out at the end:
            # the file there is the earlier run's, not a part of this one.
            stopped.add_note(f"{out} still holds an earlier run's results")
        raise


def estimate_or_refuse(
    settings: Settings,
    requests: list[Any],
    *,
    estimate: bool,
    budget: float | None,
    quiet: bool = False,
) -> float | None:
    """Print the estimate, or refuse a run over ``budget``; the estimate in the mode chosen.

    Only what the run would pay for is estimated: requests whose answer is in
    the store, or which a batch of an earlier run holds, cost it nothing.
    """
    from plugins.estimate import estimate_requests, price_table, priced_mode
    from plugins.factory import resolve_provider_name
    from providers.errors import BudgetExceededError

    provider = resolve_provider_name(settings)
    paid = _paid_already(settings, provider, requests)
    if paid:
        say(
            quiet,
            f"lexibatch: {len(paid):,} of {len(requests):,} requests are answered in the store "
            f"or in a batch sent earlier (no cost); estimating the other "
            f"{len(requests) - len(paid):,}",
        )
    est = estimate_requests(
        (r for r in requests if r.key not in paid),
        provider=provider,
        prices=price_table(own=settings.prices),
    )
    mode = priced_mode(settings, provider, len(requests))
    chosen = est.batch_usd if mode == "batch" else est.immediate_usd
    if estimate:
        click.echo(est.describe())
    if budget is not None:
        est.check_budget_bounds()
    if budget is not None and chosen is not None and chosen > budget:
        raise BudgetExceededError(chosen, budget)
    return chosen


def _paid_already(settings: Settings, provider: str, requests: list[Any]) -> set[str]:
    """The keys among ``requests`` this run will not pay for: answered, or in a sent batch."""
    db = settings.connector.db
    if str(db) == ":memory:" or not Path(db).is_file():
        return set()
    from plugins.store import Store

    keys = [r.key for r in requests]
    with Store(db) as store:
        paid = store.result_keys(provider, keys)
        states = store.request_states(provider, [k for k in keys if k not in paid])
    paid.update(k for k, state in states.items() if state == "submitted")
    return paid


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
    if store_to_read(settings, flags) is None:
        # Nothing was ever journaled here: no store is made only to say so.
        say(quiet, f"nothing to resume: no run has made the store {settings.connector.db} yet")
        return

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
            f"resumed ({requeued} queued requests sent); "
            f"cost {spent_line(spent, connector.timed_out_calls)}; journal now: "
            + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty")
            + room_suffix(state),
        )
        others = connector.store.unsettled_by_provider()
        others.pop(connector.provider_name, None)
        for name, n in sorted(others.items()):
            click.echo(
                f"lexibatch: {n:,} requests of provider {name} are still queued or in a batch "
                f"in this store: `lexibatch resume --provider {name}` finishes them",
                err=True,
            )

    run_coroutine(with_connector(settings, body))
