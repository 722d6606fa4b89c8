"""``lexibatch plugins``: the registered providers and strategies, and where each comes from.

What is printed is :func:`plugin_lines`'s, in one place.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

from plugins.cli.group import main
from plugins.cli.guard import guard

__all__ = ["plugin_lines", "plugins"]


def plugin_lines() -> Iterator[str]:
    """The lines ``lexibatch plugins`` prints: every provider, every strategy, what was left out."""
    from plugins.estimate import price_table, unknown_prices
    from plugins.manager import get_plugin_manager

    manager = get_plugin_manager()
    registry = manager.registry()
    prices = price_table({n: e.spec for n, e in registry.providers.items()})
    yield "providers:"
    for entry in sorted(registry.providers.values(), key=lambda e: e.name):
        batch = "batch" if entry.has_batch else "no batch"
        yield f"  {entry.name:<12} {entry.origin:<24} [{batch}] {entry.description}"
        for line in entry.spec.describe():
            yield f"      {line}"
        wrong = unknown_prices(entry.spec, prices)
        if wrong is not None:
            yield f"      warning: {wrong}"
    yield "strategies:"
    for sentry in sorted(registry.strategies.values(), key=lambda e: e.name):
        yield f"  {sentry.name:<12} {sentry.origin:<24} {sentry.description}"
    left_out = manager.not_loaded()
    if left_out:
        yield "left out:"
        yield from (f"  {why}" for why in left_out)


@main.command()
@guard
def plugins() -> None:
    """List registered providers (their key variable, limits and options) and strategies."""
    for line in plugin_lines():
        click.echo(line)
