"""What a synthesis would cost, priced before anything is sent (``--estimate``, ``--budget``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugins.cli.session import run_coroutine, with_connector

if TYPE_CHECKING:
    from plugins.config import Settings

__all__ = ["estimate_synthesis", "refuse_over_budget"]


def estimate_synthesis(
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

    from plugins.estimate import estimate_requests, price_table
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
            run_coroutine(
                with_connector(
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
    est = estimate_requests(requests, provider=provider, prices=price_table(own=settings.prices))
    if len(sample) < len(words):
        factor = len(words) / len(sample)
        est.requests = round(est.requests * factor)
        est.input_tokens = round(est.input_tokens * factor)
        est.output_tokens = round(est.output_tokens * factor)
        est.immediate_usd *= factor
        est.batch_usd *= factor
    return est


def refuse_over_budget(
    settings: Settings, est: Any, size: int, budget: float | None
) -> float | None:
    """Refuse a run whose estimate, in the mode it will run in, is over ``budget``.

    Returns that estimate (``None`` without a budget or words to price).

    The mode is chosen as the connector will choose it for ``est.requests``
    requests (the ``choose_strategy`` hook), so ``auto`` is priced right.
    """
    from plugins.estimate import priced_mode
    from plugins.factory import resolve_provider_name
    from providers.errors import BudgetExceededError

    if budget is None or size == 0:
        return None
    est.check_budget_bounds()
    mode = priced_mode(settings, resolve_provider_name(settings), est.requests)
    chosen = est.batch_usd if mode == "batch" else est.immediate_usd
    if chosen > budget:
        raise BudgetExceededError(chosen, budget)
    return float(chosen)
