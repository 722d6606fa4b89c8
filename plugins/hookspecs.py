"""Hook specifications of lexibatch: the whole plugin API in one module.

A plugin is any module or object with functions marked ``@hookimpl`` whose
names match the specs below. Built-in providers and strategies are plugins
too (``plugins.manager.DEFAULT_PLUGINS``); third-party ones are found through
the ``lexibatch`` entry-point group::

    # pyproject.toml of a third-party package
    [project.entry-points.lexibatch]
    myprovider = "myprovider_plugin"

    # myprovider_plugin.py
    from plugins import hookimpl

    @hookimpl
    def register_providers(register):
        register("myprovider", make_provider, description="My service",
                 spec=ProviderSpec(key_env="MYPROVIDER_API_KEY"))

Every hook is called with keyword arguments; an implementation may accept
any subset of a spec's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from plugins.registry import RegisterProvider, RegisterStrategy, Workload
    from plugins.requestevents import RequestOutcome
    from providers.errors import LexibatchError
    from providers.types import BatchInfo, BatchState, Request, Response

__all__ = ["PROJECT", "hookimpl", "hookspec"]

#: The pluggy project name, and the entry-point group plugins are found under.
PROJECT = "lexibatch"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers(register: RegisterProvider) -> None:
    """Register providers.

    Call ``register(name, factory, description=..., spec=ProviderSpec(...))``
    once per provider. A name is registered once: registered again (by
    another plugin, another entry point of the same distribution, or the same
    hook) it goes to neither, rather than one silently replacing the other —
    unless a built-in has it, which keeps it. A hook that raises registers
    nothing. Either way what is left out is said in one warning line naming
    the plugin, listed by ``lexibatch plugins``, and given as the reason to
    a command that names the provider; the other commands run. The
    :class:`plugins.providerspec.ProviderSpec` declares
    what the core needs to know without building the provider: the options
    model of its ``[providers.NAME]`` table (a
    :class:`plugins.provideroptions.ProviderSettings` subclass), its default API-key
    variable, the price-map entry that prices it, its batch limits and
    abilities — a :class:`plugins.providerspec.BatchSpec`: requests and bytes
    a batch, mixed models, file or inline input, whether create is
    idempotent, and ``queue_full_as_quota`` when its API words a full batch
    queue as any exhausted quota (a 429 that does not name the queue; a
    lasting one at create then waits for room instead of stopping the
    shard). (``has_batch=True`` without a spec still registers a provider
    that has a batch endpoint, with every provider's options only.)

    ``factory(name, settings)`` receives the name the provider is used under
    and its options (an instance of ``spec.options``: ``base_url``,
    ``api_key_env``, limits and its own keys; ``settings.api_key(name)`` reads
    the key) — plus ``context=`` (a :class:`plugins.providerspec.ProviderContext`:
    the connector's model and where its store lives) when it has a ``context``
    parameter — and returns an object that meets
    :class:`providers.protocol.Provider` (its batch endpoint meets
    :class:`~providers.protocol.BatchEndpoint`, whose methods say what each
    must return: when a batch's results are ready, what each result item
    carries, how long a call may take). It is called only when the provider
    is used, so heavy SDK imports belong inside it.

    :param register: the callback that records one provider.
    """


@hookspec
def register_strategies(register: RegisterStrategy) -> None:
    """Register strategies (how requests reach a provider: immediate, batch, ...).

    Call ``register(name, factory, description=...)``. ``factory(context)``
    receives a :class:`plugins.registry.StrategyContext` (provider, store,
    config, hook relay) and returns a :class:`plugins.registry.Strategy`.

    :param register: the callback that records one strategy.
    """


@hookspec(firstresult=True)
def choose_strategy(workload: Workload) -> str | None:
    """Pick the strategy for a workload in ``mode = "auto"``; the first non-``None`` answer wins.

    This is where ``mode = "auto"`` lives, and only it: a mode the user named
    (``immediate``, ``batch``) is used without asking. The built-in
    implementation picks ``batch`` when the workload is at least
    ``batch.auto_threshold`` requests and the provider has a batch endpoint,
    ``immediate`` otherwise. A plugin may decide differently (by time of day,
    by budget, ...) by answering first.

    :param workload: the requested mode, the number of requests expected and
        what the provider can do.
    :return: ``"immediate"`` or ``"batch"``, or ``None`` to let others
        decide (any other answer is refused, one line naming it).
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``lexibatch`` command line.

    Called once, before the command line lists or runs a command, with the
    root :class:`click.Group`; attach commands or groups to it::

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello")

    A plugin whose hook raises, or adds a command under a name already
    taken, is left out whole (the commands it added before are taken back),
    in one warning line; the other commands run. The engine's own commands
    (``run``, ``resume``, ``batches``, ``cost``,
    ``emulator``, ``plugins``) are on the group already; the dictionary's
    (``synthesize``, ``show``, ``serve``) come through this hook.
    :mod:`plugins.cli.guard`, :mod:`plugins.cli.options` and
    :mod:`plugins.cli.session` hold what a command needs to behave like
    the others (one-line errors and exit codes, the shared options, a
    connector built from the configuration).

    :param cli: the root command group.
    """


@hookspec
def batch_submitted(batch: BatchInfo, shard_id: str, provider: str, requests: int) -> None:
    """A batch was created at the provider (observers: progress, reports).

    :param batch: the provider's batch as created.
    :param shard_id: lexibatch's id of the shard the batch carries.
    :param provider: the provider's registered name.
    :param requests: how many requests the batch holds.
    """


@hookspec
def batch_status_changed(batch: BatchInfo, previous: BatchState | None, provider: str) -> None:
    """A polled batch changed state or counts.

    :param batch: the new snapshot.
    :param previous: the state before, or ``None`` when first seen.
    :param provider: the provider's registered name.
    """


@hookspec
def batch_waiting_for_room(
    shard_id: str, provider: str, model: str, enqueued: int, cap: int | None, waiting: bool
) -> None:
    """A shard starts (``waiting``) or stops waiting for room in the provider's queue.

    :param shard_id: the shard held before its batch is created.
    :param provider: the provider's registered name.
    :param model: the model whose queue is full.
    :param enqueued: the tokens this run has enqueued for ``model``.
    :param cap: the configured cap (``None``: the provider refused a batch,
        no cap is configured).
    :param waiting: whether the shard starts (true) or stops waiting.
    """


@hookspec
def requests_started(requests: Sequence[Request]) -> None:
    """Requests are being looked up and, unless the store has their answers, sent.

    Called once for many requests: those started in one turn of the event
    loop (a chunk of a request file, a ``gather`` of calls), so a run of
    100,000 requests makes about a hundred calls, not 100,000. Each request
    is in exactly one call, and every request that will end in
    :func:`requests_finished` is told here first (a duplicate awaiting the
    same request in flight is neither started nor finished), so observers
    know the work queued before it ends. This is the hook a progress display
    implements (:class:`plugins.dashboard.RunState` does). A plugin
    implements this form or the per-request one (:func:`request_started`),
    not both: with both, it is told of each request twice.

    :param requests: the requests started, in the order they started.
    """


@hookspec
def requests_finished(outcomes: Sequence[RequestOutcome]) -> None:
    """Requests ended; one call for those that ended in one turn of the event loop.

    Each outcome is a :class:`plugins.requestevents.RequestOutcome`
    ``(request, response, error)`` with exactly one of ``response`` and
    ``error`` set; cache hits are included (``response.cached`` is then
    true). A request's :func:`requests_started` call comes before (or is the
    same turn's, made first). The outcome of one awaited call (``generate``,
    ``structured``) is told by the time the await returns.

    :param outcomes: how each request ended, in the order they ended.
    """


@hookspec
def request_started(request: Request) -> None:
    """One request is being looked up and, unless the store has its answer, sent.

    The per-request form of :func:`requests_started`: called at the moment
    each request starts, once per request, and only when some plugin
    implements it (every call costs a walk through the hook machinery, so a
    plugin that only counts should implement :func:`requests_started`).

    :param request: the request.
    """


@hookspec
def request_finished(
    request: Request, response: Response | None, error: LexibatchError | None
) -> None:
    """One request ended: exactly one of ``response`` and ``error`` is set.

    The per-request form of :func:`requests_finished`: called at the moment
    each request ends, cache hits too (``response.cached`` is then true),
    only when some plugin implements it.

    :param request: the request.
    :param response: its response, when it succeeded.
    :param error: its typed error, when it failed.
    """


#: Names of the hooks that only observe. Each implementation is called alone;
#: one that raises is logged and passed over (see :mod:`plugins.observers`).
OBSERVER_HOOKS: tuple[str, ...] = (
    "batch_submitted",
    "batch_status_changed",
    "batch_waiting_for_room",
    "requests_started",
    "requests_finished",
    "request_started",
    "request_finished",
)

#: Signature of an observer callback, for typing relays.
Observer = Callable[..., Any]
