"""``lexibatch synthesize``: dictionary entries for a word list, written resumably."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from plugins.cli.guard import EXIT_PROVIDER, EXIT_USER, fail, guard, key_refused_line
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
    room_suffix,
    run_coroutine,
    say,
    unobserve,
    with_connector,
)
from synthesis.cli.estimate import estimate_synthesis, refuse_over_budget

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.connector import LexiConnector

__all__ = ["synthesize"]


@click.command()
@click.argument("words", type=click.Path(dir_okay=False, path_type=Path))
@provider_opt
@model_opt
@mode_opt
@db_opt
@click.option(
    "--components",
    default="all",
    show_default=True,
    help="Comma-separated components, or all / definition / word.",
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL of extra source definitions.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("entries.jsonl"),
    show_default=True,
)
@click.option(
    "--estimate", is_flag=True, help="Print what the run would cost in each mode and exit."
)
@click.option("--budget", type=float, help="Refuse to submit past this many USD.")
@retry_cancelled_opt
@quiet_opt
@click.pass_context
@guard
def synthesize(
    ctx: click.Context,
    words: Path,
    components: str,
    sources_file: Path | None,
    out: Path,
    estimate: bool,
    budget: float | None,
    quiet: bool,
    **flags: Any,
) -> None:
    """Synthesize dictionary entries for a word list (JSONL out, and in the store)."""
    from synthesis.components import parse_components
    from synthesis.sources import build_sources
    from synthesis.wordlist import read_word_list

    settings = settings_from(ctx, budget=budget, **flags)
    hush(quiet)
    word_list, report = read_word_list(words)
    if not report.clean:
        say(quiet, f"lexibatch: {report.summary()}")
    if not word_list:
        from providers.errors import InputError

        raise InputError(f"{words}: no usable words in the list")
    chosen = parse_components(components)
    sources = build_sources([sources_file] if sources_file else [])
    if not estimate:
        from plugins.outfile import check_writable

        # Before anything is sent: an output that cannot be written is found now.
        check_writable(
            out,
            store=settings.connector.db,
            inputs=[words, *([sources_file] if sources_file else [])],
            reads_back=True,
        )
    expected: int | None = None
    expected_usd: float | None = None
    # The budget of the command line or of the configuration: one setting.
    budget = settings.batch.budget_usd
    if estimate or budget is not None:
        from synthesis.runner import load_done

        # What this run would send: the words its output does not hold yet.
        done = load_done(out, repair=False)
        todo = [w for w in word_list if w.casefold() not in done]
        if len(todo) < len(word_list):
            say(
                quiet,
                f"lexibatch: {len(word_list) - len(todo)} of {len(word_list)} words "
                f"already in {out}; estimating the other {len(todo)}",
            )
        est = estimate_synthesis(settings, todo, chosen, sources)
        if estimate:
            click.echo(est.describe())
            # As `run --estimate --budget`: an estimate over the budget exits 2.
            refuse_over_budget(settings, est, len(todo), budget)
            return
        expected_usd = refuse_over_budget(settings, est, len(todo), budget)
        expected = est.requests
    run_coroutine(
        with_connector(
            settings,
            lambda c: _synthesize(
                c,
                settings,
                word_list,
                chosen,
                sources,
                out,
                expected,
                quiet=quiet,
                estimate_usd=expected_usd,
            ),
        )
    )


def _stage_of(task: str | None) -> str:
    """The pipeline round (:data:`synthesis.pipeline.STAGES`) a call of ``task`` belongs to."""
    from synthesis.components import COMPONENTS

    if task in ("cluster", "generate"):
        return "cluster"
    if task == "synthesize":
        return "synthesize"
    component = COMPONENTS.get(task or "")
    if component is not None:
        # Word-level components need no meanings: they run in the first round.
        return "enhance" if component.level == "definition" else "cluster"
    return task or "other"


async def _synthesize(
    connector: LexiConnector,
    settings: Settings,
    words: list[str],
    components: tuple[str, ...],
    sources: Any,
    out: Path,
    expected_requests: int | None = None,
    *,
    quiet: bool = False,
    estimate_usd: float | None = None,
) -> None:
    from plugins.dashboard import RunState
    from synthesis.entrystore import claim_spellings, store_entry
    from synthesis.pipeline import STAGES
    from synthesis.runner import load_done, run_synthesis

    # A word the store keeps in other capitals (a server's lookup made it) is
    # synthesized under that spelling: its calls are the ones already paid for.
    # The others' spellings are kept now, before their first call.
    words = claim_spellings(words, connector.store)
    done = load_done(out)
    todo = [w for w in words if w.casefold() not in done]
    # The threshold of auto mode counts calls: the estimate's when there is
    # one (so the budget was checked against the mode chosen here), else a
    # word's few dozen calls.
    if expected_requests is None:
        expected_requests = len(todo) * max(len(components), 1) * 2
    mode = connector.choose_mode(expected_requests, announce=not quiet)
    import time

    store = connector.store
    started = time.time()
    state = RunState(
        f"synthesize {len(todo):,} words",
        stages=STAGES,
        stage_of=_stage_of,
        estimate_usd=estimate_usd,
        budget_usd=settings.batch.budget_usd,
        batch_mode=mode == "batch",
    )
    state.set_units("words", 0, len(todo))
    observer = observe(state, quiet=quiet)

    def progress(word: str, finished: int, total: int) -> None:
        state.set_units("words", finished, total)

    def on_entry(entry: Any) -> None:
        store_entry(entry, store)

    try:
        with observer:
            summary = await run_synthesis(
                words,
                connector,
                components=components,
                sources=sources,
                out_path=out,
                done=done,
                batch_mode=mode == "batch",
                progress=progress,
                on_entry=on_entry,
                model_for=settings.model_for,
            )
    finally:
        unobserve(observer)
    from plugins.report import spent_line
    from providers.money import format_usd, usd_sum

    rows = store.cost_report(since=started, run=store.run_id)
    immediate = usd_sum(r.immediate_cost_usd for r in rows)
    say(
        quiet,
        f"{summary.written} entries written to {out}, {summary.skipped} already done, "
        f"{summary.failed} failed; {observer.requests} calls ({observer.cached} from cache); "
        f"cost {spent_line(rows, connector.timed_out_calls)} ({mode}); "
        f"the same calls immediately: {format_usd(immediate)}"
        f"{room_suffix(state)}",
    )
    if summary.key_refused is not None:
        refused = key_refused_line(settings, connector.provider_name, summary.key_refused)
        noun = "word" if summary.failed == 1 else "words"
        fail(f"{summary.failed:,} {noun} not done: {refused}", EXIT_USER)
    if summary.unreachable is not None:
        click.echo(
            f"lexibatch: error: could not reach the provider — {summary.unreachable}; "
            f"{summary.failed} words not done: run the same command again to resume "
            "(what was answered is kept)",
            err=True,
        )
    else:
        for word, message in summary.failures[:10]:
            click.echo(f"  failed: {word}: {message}", err=True)
    if summary.failed:
        sys.exit(EXIT_PROVIDER)
