"""The ``lexibatch`` command line: the composition root.

It is the one module of ``synthesis`` that may import ``plugins``: it reads
the configuration, builds the connector, and hands it to the pipeline, which
sees only the ``Connector`` protocol. Every error is one line on stderr and a
non-zero exit: 2 for what the user must change, 1 for what a provider did,
130 for an interrupt (nothing paid for is lost: re-run to continue).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from providers.errors import InputError, LexibatchError, UserError

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.connector import LexiConnector

T = TypeVar("T")

EXIT_USER = 2
EXIT_PROVIDER = 1
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int) -> None:
    click.echo(f"lexibatch: error: {message}", err=True)
    sys.exit(code)


def _guard(func: Callable[..., T]) -> Callable[..., T]:
    """Turn the project's errors into one line and an exit code."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            # Every bad line of an input on its own line, then what it adds up to.
            if exc.message != "; ".join(exc.problems):
                for problem in exc.problems:
                    click.echo(f"lexibatch: error: {problem}", err=True)
            _fail(str(exc), EXIT_USER)
        except UserError as exc:
            _fail(str(exc), EXIT_USER)
        except LexibatchError as exc:
            _fail(str(exc), EXIT_PROVIDER)
        except KeyboardInterrupt:
            click.echo(
                "lexibatch: interrupted — everything paid for is stored; "
                "run the same command again to continue",
                err=True,
            )
            sys.exit(EXIT_INTERRUPTED)
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapper


def _settings(ctx: click.Context, **flags: Any) -> Settings:
    from plugins.config import load_settings

    overrides: dict[str, Any] = {}
    mapping = {
        "provider": "connector.provider",
        "model": "connector.model",
        "mode": "connector.mode",
        "db": "connector.db",
        "budget": "batch.budget_usd",
    }
    for flag, dotted in mapping.items():
        value = flags.get(flag)
        if value is not None:
            overrides[dotted] = value
    if flags.get("retry_cancelled"):
        overrides["batch.retry_cancelled"] = True
    config = ctx.obj.get("config") if ctx.obj else None
    return load_settings(Path(config) if config else None, overrides=overrides)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _with_connector(settings: Settings, body: Callable[[LexiConnector], Awaitable[T]]) -> T:
    from plugins.factory import open_connector

    connector = open_connector(settings)
    try:
        return await body(connector)
    finally:
        await connector.aclose()


def _observe(state: Any, *, quiet: bool) -> Any:
    """Show ``state`` (a :class:`plugins.dashboard.RunState`) on stderr while a command runs."""
    from plugins.manager import get_plugin_manager
    from plugins.progress import ProgressObserver

    get_plugin_manager().pm.register(state, name=f"progress-{id(state)}")
    return ProgressObserver(state, quiet=quiet)


def _unobserve(observer: Any) -> None:
    from plugins.manager import get_plugin_manager

    get_plugin_manager().pm.unregister(observer.state)


def _hush(quiet: bool) -> None:
    """With ``--quiet``, only errors reach stderr (warnings and notes are dropped)."""
    if quiet:
        import logging

        logging.getLogger("lexibatch").setLevel(logging.ERROR)


def _room(state: Any) -> str:
    """``; shards waited … for queue room …`` for a summary line, or nothing."""
    note = state.room_note()
    return f"; {note}" if note else ""


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        click.echo(message, err=True)


_provider_opt = click.option("--provider", help="Provider name (see `lexibatch plugins`).")
_model_opt = click.option("--model", help="Default model.")
_mode_opt = click.option(
    "--mode", type=click.Choice(["immediate", "batch", "auto"]), help="How requests are sent."
)
_db_opt = click.option("--db", type=click.Path(path_type=Path), help="The SQLite store.")
_retry_cancelled_opt = click.option(
    "--retry-cancelled",
    is_flag=True,
    help="Send again the requests of batches you cancelled (they stay cancelled otherwise).",
)
_quiet_opt = click.option(
    "--quiet", "-q", is_flag=True, help="Print nothing but errors (no progress, no summary)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = {"config": config}


@main.command()
@_guard
def plugins() -> None:
    """List registered providers (their key variable, limits and options) and strategies."""
    from plugins.manager import get_plugin_manager

    registry = get_plugin_manager().registry()
    click.echo("providers:")
    for entry in sorted(registry.providers.values(), key=lambda e: e.name):
        batch = "batch" if entry.has_batch else "no batch"
        click.echo(f"  {entry.name:<12} {entry.origin:<24} [{batch}] {entry.description}")
        for line in entry.spec.describe():
            click.echo(f"      {line}")
    click.echo("strategies:")
    for sentry in sorted(registry.strategies.values(), key=lambda e: e.name):
        click.echo(f"  {sentry.name:<12} {sentry.origin:<24} {sentry.description}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep files and batches here across restarts.",
)
@click.option(
    "--batch-seconds", type=float, default=None, help="Seconds a batch takes to complete."
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
@_guard
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
    from providers.emulator import EmulatorConfig, serve

    fields: dict[str, Any] = {}
    if batch_seconds is not None:
        fields["batch_seconds"] = batch_seconds
    if enqueued_token_limit is not None:
        fields["enqueued_token_limit"] = enqueued_token_limit
    if api_keys:
        fields["api_keys"] = list(api_keys)
    serve(host, port, state, EmulatorConfig(**fields))


@main.command()
@click.argument("requests", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("results.jsonl"),
    show_default=True,
)
@_provider_opt
@_model_opt
@_mode_opt
@_db_opt
@click.option("--estimate", is_flag=True, help="Print the expected cost and exit without sending.")
@click.option("--budget", type=float, help="Refuse to submit past this many USD.")
@_retry_cancelled_opt
@_quiet_opt
@click.pass_context
@_guard
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

    settings = _settings(ctx, budget=budget, **flags)
    items = read_requests(
        requests, default_model=settings.connector.model, route=settings.model_for
    )
    _hush(quiet)
    expected_usd: float | None = None
    if estimate or budget is not None:
        expected_usd = _estimate_or_refuse(
            settings, [i.request for i in items], estimate=estimate, budget=budget
        )
        if estimate:
            return
    # Before anything is sent: a results file that cannot be written is found now.
    check_writable(out)

    async def body(connector: LexiConnector) -> None:
        import time

        from plugins.dashboard import RunState
        from plugins.report import spent_line

        started = time.time()
        connector.choose_mode(len(items), announce=not quiet)
        if connector.batch_mode:
            from plugins.batch.oversize import refuse_oversize

            # A line no batch of the provider can hold: refused before anything is sent.
            refuse_oversize(connector.batch_strategy(), items, requests)
        state = RunState(
            f"run {requests.name}",
            total=len(items),
            stages=["requests"],
            stage_of=lambda task: "requests",
            estimate_usd=expected_usd,
            budget_usd=settings.batch.budget_usd,
            batch_mode=connector.batch_mode,
        )
        observer = _observe(state, quiet=quiet)
        try:
            with observer:
                summary = await run_requests(connector, items, out)
        finally:
            _unobserve(observer)
        # Every call this run paid for, from the ledger `lexibatch cost` reads.
        spent = connector.store.cost_report(since=started, run=connector.store.run_id)
        _say(
            quiet,
            f"{summary.succeeded} succeeded, {summary.failed} failed, {summary.cached} from cache; "
            f"cost {spent_line(spent)}; results in {out}{_room(state)}",
        )
        if summary.unreachable is not None:
            click.echo(
                f"lexibatch: error: could not reach the provider — {summary.unreachable}; "
                f"{summary.not_reached} requests not answered: run the same command again "
                "to resume (what was answered is kept)",
                err=True,
            )
        if summary.failed:
            sys.exit(EXIT_PROVIDER)

    _run(_with_connector(settings, body))


def _estimate_or_refuse(
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
@click.argument("words", type=click.Path(dir_okay=False, path_type=Path))
@_provider_opt
@_model_opt
@_mode_opt
@_db_opt
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
@_retry_cancelled_opt
@_quiet_opt
@click.pass_context
@_guard
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

    settings = _settings(ctx, budget=budget, **flags)
    _hush(quiet)
    word_list, report = read_word_list(words)
    if not report.clean:
        _say(quiet, f"lexibatch: {report.summary()}")
    if not word_list:
        from providers.errors import InputError

        raise InputError(f"{words}: no usable words in the list")
    chosen = parse_components(components)
    sources = build_sources([sources_file] if sources_file else [])
    if not estimate:
        from plugins.outfile import check_writable

        # Before anything is sent: an output that cannot be written is found now.
        check_writable(out)
    expected: int | None = None
    expected_usd: float | None = None
    if estimate or budget is not None:
        from synthesis.runner import load_done

        # What this run would send: the words its output does not hold yet.
        done = load_done(out, repair=False)
        todo = [w for w in word_list if w.casefold() not in done]
        if len(todo) < len(word_list):
            _say(
                quiet,
                f"lexibatch: {len(word_list) - len(todo)} of {len(word_list)} words "
                f"already in {out}; estimating the other {len(todo)}",
            )
        est = _estimate_synthesis(settings, todo, chosen, sources)
        if estimate:
            click.echo(est.describe())
            return
        expected_usd = _refuse_over_budget(settings, est, len(todo), budget)
        expected = est.requests
    _run(
        _with_connector(
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
    from synthesis.pipeline import STAGES
    from synthesis.runner import load_done, run_synthesis

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
    observer = _observe(state, quiet=quiet)

    def progress(word: str, finished: int, total: int) -> None:
        state.set_units("words", finished, total)

    def on_entry(entry: Any) -> None:
        store.put_document("entries", entry.word, entry.model_dump(mode="json"))

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
        _unobserve(observer)
    from plugins.report import spent_line
    from providers.money import format_usd, usd_sum

    rows = store.cost_report(since=started, run=store.run_id)
    immediate = usd_sum(r.immediate_cost_usd for r in rows)
    _say(
        quiet,
        f"{summary.written} entries written to {out}, {summary.skipped} already done, "
        f"{summary.failed} failed; {observer.requests} calls ({observer.cached} from cache); "
        f"cost {spent_line(rows)} ({mode}); the same calls immediately: {format_usd(immediate)}"
        f"{_room(state)}",
    )
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


def _estimate_synthesis(
    settings: Settings, words: list[str], components: tuple[str, ...], sources: Any
) -> Any:
    """Run the pipeline on the offline sandbox to see which calls it makes, then price them.

    The calls carry the configured models, so they are priced as the real
    provider would bill them; large word lists are estimated from a sample.
    Nothing is written: the dry run's store is in memory, and a sandbox
    emulator it had to start is stopped again (so the real run starts its
    own, keeping its state beside the real store).
    """
    import random

    from plugins.estimate import estimate_requests
    from plugins.factory import resolve_provider_name
    from plugins.hookspecs import hookimpl
    from plugins.manager import get_plugin_manager
    from plugins.sandbox import SANDBOX, sandbox_emulator, stop_sandbox_emulator
    from synthesis.pipeline import synthesize_many

    provider = resolve_provider_name(settings)
    sample = words if len(words) <= 100 else random.Random(0).sample(words, 100)
    requests: list[Any] = []

    class Recorder:
        @hookimpl
        def request_finished(self, request: Any, response: Any) -> None:
            # A cache hit of the dry run would be one in the real run too: free.
            if response is None or not response.cached:
                requests.append(request)

    dry = settings.model_copy(
        update={
            "connector": settings.connector.model_copy(
                update={"provider": SANDBOX, "mode": "immediate", "db": ":memory:"}
            )
        }
    )
    started_sandbox = sandbox_emulator() is None
    recorder = Recorder()
    pm = get_plugin_manager().pm
    pm.register(recorder, name=f"estimate-recorder-{id(recorder)}")
    try:
        if sample:
            _run(
                _with_connector(
                    dry,
                    lambda c: synthesize_many(
                        sample,
                        c,
                        components=components,
                        sources=sources,
                        collect=False,
                        on_error=lambda w, e: None,
                    ),
                )
            )
    finally:
        pm.unregister(recorder)
        if started_sandbox:
            stop_sandbox_emulator()
    est = estimate_requests(requests, provider=provider)
    if len(sample) < len(words):
        factor = len(words) / len(sample)
        est.requests = round(est.requests * factor)
        est.input_tokens = round(est.input_tokens * factor)
        est.output_tokens = round(est.output_tokens * factor)
        est.immediate_usd *= factor
        est.batch_usd *= factor
    return est


def _refuse_over_budget(
    settings: Settings, est: Any, size: int, budget: float | None
) -> float | None:
    """Refuse a run whose estimate, in the mode it will run in, is over ``budget``.

    Returns that estimate (``None`` without a budget or words to price).

    The mode is chosen as the connector will choose it for ``est.requests``
    requests (the ``choose_strategy`` hook), so ``auto`` is priced right.
    """
    from plugins.factory import resolve_provider_name
    from plugins.manager import get_plugin_manager
    from plugins.registry import Workload
    from providers.errors import BudgetExceededError

    if budget is None or size == 0:
        return None
    manager = get_plugin_manager()
    provider = resolve_provider_name(settings)
    workload = Workload(
        requested=settings.connector.mode,
        size=est.requests,
        provider=provider,
        has_batch=manager.registry().provider(provider).has_batch,
        auto_threshold=settings.batch.auto_threshold,
    )
    mode = manager.hook.choose_strategy(workload=workload) or "immediate"
    chosen = est.batch_usd if mode == "batch" else est.immediate_usd
    if chosen > budget:
        raise BudgetExceededError(chosen, budget)
    return float(chosen)


@main.command()
@_provider_opt
@_db_opt
@_retry_cancelled_opt
@_quiet_opt
@click.pass_context
@_guard
def resume(ctx: click.Context, quiet: bool, **flags: Any) -> None:
    """Finish the journaled work of earlier runs without the original input."""
    settings = _settings(ctx, **flags)
    _hush(quiet)

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
        observer = _observe(state, quiet=quiet)
        try:
            with observer:
                requeued = await strategy.resume()  # type: ignore[attr-defined]
        finally:
            _unobserve(observer)
        counts = connector.store.count_requests(connector.provider_name)
        spent = connector.store.cost_report(since=started, run=connector.store.run_id)
        _say(
            quiet,
            f"resumed ({requeued} queued requests sent); cost {spent_line(spent)}; journal now: "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + _room(state),
        )

    _run(_with_connector(settings, body))


@main.group()
def batches() -> None:
    """Show and control provider batches recorded in the journal."""


@batches.command("list")
@_provider_opt
@_db_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON array (money as exact strings).")
@click.pass_context
@_guard
def batches_list(ctx: click.Context, as_json: bool, **flags: Any) -> None:
    """List the journaled batches: states, counts, cost, local times and ages."""
    from plugins.store import Store
    from plugins.tables import batch_json, batch_views, batches_table, stdout_console

    settings = _settings(ctx, **flags)
    with Store(settings.connector.db) as store:
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
@_db_opt
@click.option("--json", "as_json", is_flag=True, help="One JSON object (money as exact strings).")
@click.pass_context
@_guard
def batches_show(ctx: click.Context, batch: str, as_json: bool, **flags: Any) -> None:
    """Show one batch (by batch id or shard id), as journaled and as its provider sees it now."""
    from plugins.tables import batch_detail, batch_json, batch_views, stdout_console

    shard, settings = _shard_and_settings(ctx, batch, flags)

    async def body(connector: LexiConnector) -> None:
        (view,) = batch_views(connector.store, [shard])
        endpoint = connector.provider.batch
        info = None
        if shard.batch_id and endpoint is not None:
            info = await endpoint.poll(shard.batch_id)
        if as_json:
            import orjson

            click.echo(orjson.dumps(batch_json(view, info), option=orjson.OPT_INDENT_2))
        else:
            stdout_console().print(batch_detail(view, info))

    _run(_with_connector(settings, body))


@batches.command("cancel")
@click.argument("batch")
@_db_opt
@click.pass_context
@_guard
def batches_cancel(ctx: click.Context, batch: str, **flags: Any) -> None:
    """Cancel a batch: its unanswered requests end as cancelled (--retry-cancelled resends them)."""
    shard, settings = _shard_and_settings(ctx, batch, flags)

    async def body(connector: LexiConnector) -> None:
        from providers.errors import InputError, UnsupportedError

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

    _run(_with_connector(settings, body))


@batches.command("forget")
@click.argument("batch")
@click.option(
    "--yes",
    is_flag=True,
    help="Forget it although the provider may still hold it (ended, or not found with this key).",
)
@_db_opt
@click.pass_context
@_guard
def batches_forget(ctx: click.Context, batch: str, yes: bool, **flags: Any) -> None:
    """Give up on a batch whose results cannot be had (gone at the provider, expired).

    The batch's own provider is asked first; one it still runs is refused
    (cancel it first). Its answered requests stay answered; the others are
    queued again for the next run (or `lexibatch resume`).
    """
    shard, settings = _shard_and_settings(ctx, batch, flags)

    async def body(connector: LexiConnector) -> None:
        from plugins.batch.forget import forget_batch

        done = await forget_batch(connector.store, connector.provider.batch, shard, confirmed=yes)
        click.echo(
            f"{done.batch_id or done.shard_id}: forgotten (the provider: {done.provider_says}); "
            f"{done.answered} answered requests kept, {done.resend} queued again for the next "
            f"run (or lexibatch resume --provider {shard.provider})"
        )

    _run(_with_connector(settings, body))


def _shard_and_settings(
    ctx: click.Context, ident: str, flags: dict[str, Any]
) -> tuple[Any, Settings]:
    """The journaled shard ``ident`` names, and settings for its own provider.

    Whatever provider the config names, only the shard's own knows its batch.
    """
    from plugins.store import Store

    with Store(_settings(ctx, **flags).connector.db) as store:
        shard = _shard_of(store, ident)
    # The model too: a provider may pick its batch API by model (LiteLLM: azure/…, openai/…).
    model = {"model": shard.model} if shard.model != "*" else {}
    return shard, _settings(ctx, provider=shard.provider, **model, **flags)


def _shard_of(store: Any, ident: str) -> Any:
    from providers.errors import InputError

    shard = store.get_shard(ident) or store.shard_by_batch_id(ident)
    if shard is None:
        raise InputError(
            f"no batch or shard {ident!r} in the journal (see `lexibatch batches list`)"
        )
    return shard


@main.command()
@_db_opt
@click.option("--json", "as_json", is_flag=True, help="Rows and totals as JSON (exact strings).")
@click.option("--chart", is_flag=True, help="Also draw the spend over time, by minute to week.")
@click.pass_context
@_guard
def cost(ctx: click.Context, as_json: bool, chart: bool, **flags: Any) -> None:
    """Report spend by provider, mode, task and model, and the saving against immediate."""
    from plugins.report import summary_line
    from plugins.spendchart import spend_buckets, spend_chart
    from plugins.store import Store
    from plugins.tables import cost_json, cost_rows, cost_table, stdout_console

    settings = _settings(ctx, **flags)
    with Store(settings.connector.db) as store:
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


# The lookup commands (show, serve) live in their own module; importing it registers them.
from synthesis import cli_lookup  # noqa: E402

__all__ = ["cli_lookup", "main"]


if __name__ == "__main__":  # pragma: no cover
    # Run as ``python -m synthesis.cli``, this file is ``__main__``; the lookup
    # commands registered themselves on the importable module's group.
    from synthesis.cli import main as registered

    registered()
