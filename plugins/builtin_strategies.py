"""The built-in strategies and the built-in answer to "which strategy for this workload"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from plugins.registry import RegisterStrategy, Strategy, StrategyContext, Workload


def make_immediate(context: StrategyContext) -> Strategy:
    """Concurrent, rate-limited, retried calls."""
    from plugins.immediate import ImmediateStrategy

    return ImmediateStrategy(context)


def make_batch(context: StrategyContext) -> Strategy:
    """Shared batches through the provider's batch endpoint, journaled."""
    from plugins.batch import BatchStrategy

    return BatchStrategy(context)


@hookimpl
def register_strategies(register: RegisterStrategy) -> None:
    """Register immediate and batch."""
    register("immediate", make_immediate, description="send each request at once, concurrently")
    register(
        "batch",
        make_batch,
        description="collect requests into provider batches (about half the price, within 24 h)",
    )


@hookimpl(trylast=True)
def choose_strategy(workload: Workload) -> str | None:
    """``auto``: batch from ``auto_threshold`` requests when the provider can, else immediate."""
    if workload.requested != "auto":
        return workload.requested
    if workload.has_batch and workload.size >= workload.auto_threshold:
        return "batch"
    return "immediate"
