"""Building a connector from configuration: the composition of provider, strategies and store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugins.config import Settings
from plugins.connector import LexiConnector
from plugins.estimate import price_table, unknown_prices
from plugins.manager import PluginManager, get_plugin_manager
from plugins.notices import notice
from plugins.providerspec import ProviderContext, call_factory
from plugins.sandbox import SANDBOX
from plugins.store import Store
from providers.errors import ConfigError, LexibatchError, UnknownPluginError

if TYPE_CHECKING:
    from plugins.registry import ProviderEntry
    from providers.protocol import Provider

__all__ = ["SANDBOX_NOTICE", "open_connector", "resolve_provider_name"]

#: What the sandbox is, said once: its answers must not be mistaken for real ones.
SANDBOX_NOTICE = (
    "no provider configured — using the offline sandbox, whose answers are synthetic "
    "placeholders, not real definitions (set [connector] provider or pass --provider "
    "to use a real one)"
)

_announced = False
# Providers whose declared price-map provider was warned about (once a process).
_warned_prices: set[str] = set()

log = logging.getLogger("lexibatch.plugins")


def resolve_provider_name(settings: Settings, *, announce: bool = True) -> str:
    """The configured provider, or the sandbox (said once, as a notice)."""
    global _announced
    name = settings.connector.provider
    if name:
        return name
    if announce and not _announced:
        _announced = True
        notice(f"lexibatch: {SANDBOX_NOTICE}")
    return SANDBOX


def open_connector(
    settings: Settings,
    *,
    manager: PluginManager | None = None,
    store: Store | None = None,
) -> LexiConnector:
    """Build the connector the settings describe.

    The provider is built from the options model and key variable it
    registered; a pace of polling it declared applies unless the user set one.

    Raises:
        providers.errors.UnknownPluginError: the provider is not registered.
        providers.errors.ConfigError: its ``[providers.NAME]`` table does not suit it.
        providers.errors.MissingAPIKeyError: its API key variable is unset.
    """
    manager = manager or get_plugin_manager()
    registry = manager.registry()
    name = resolve_provider_name(settings)
    try:
        entry = registry.provider(name)
    except UnknownPluginError as exc:
        # The provider may be in a plugin that could not be used, or was not asked for.
        why = manager.not_loaded()
        if not why:
            raise
        raise UnknownPluginError(exc.kind, exc.name, exc.known, left_out="; ".join(why)) from None
    db_path = Path(settings.connector.db)
    pace = entry.spec.poll_interval
    if pace is not None and "poll_interval" not in settings.batch.model_fields_set:
        batch = settings.batch.model_copy(update={"poll_interval": pace})
        settings = settings.model_copy(update={"batch": batch})
    options = settings.provider_settings(name, entry.spec)
    context = ProviderContext(model=settings.connector.model, db=db_path)
    provider = _build(entry, name, options, context)
    if store is None:
        store = Store(db_path)
    prices = price_table({n: e.spec for n, e in registry.providers.items()}, settings.prices)
    wrong = unknown_prices(entry.spec, prices)
    if wrong is not None and name not in _warned_prices:
        # The plugin's mistake, not the user's: the run goes on, priced as well as it can be.
        _warned_prices.add(name)
        log.warning("lexibatch: provider %s (%s): %s", name, entry.origin, wrong)
    return LexiConnector(
        provider=provider,
        provider_name=name,
        settings=settings,
        store=store,
        prices=prices,
        manager=manager,
        registry=registry,
    )


# What a provider, and its batch endpoint, must have (providers.protocol).
_PROVIDER_NEEDS = ("name", "complete", "batch", "aclose")
_ENDPOINT_NEEDS = ("limits", "encode", "upload", "create", "find", "poll", "results", "cancel")


def _build(entry: ProviderEntry, name: str, options: Any, context: ProviderContext) -> Provider:
    """The provider ``entry`` makes, checked whole before anything is sent through it.

    Raises:
        ConfigError: its factory failed with an error that is not lexibatch's
            (a defect of its plugin), or what it made lacks part of the protocol.
    """
    made = f"provider {name!r} ({entry.origin})"
    advice = "fix or uninstall its plugin, or choose another provider"
    try:
        provider = call_factory(entry.factory, name, options, context)
    except LexibatchError:
        raise  # a missing key, a bad option: the user's to fix, said as it is
    except Exception as exc:
        what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ConfigError(f"{made} could not be built: {what} — {advice}") from exc
    # Found now rather than at a crash, when a shard in doubt needs find().
    lacking = [f"{attr}" for attr in _PROVIDER_NEEDS if not hasattr(provider, attr)]
    endpoint = getattr(provider, "batch", None)
    if endpoint is not None:
        lacking += [f"batch.{attr}" for attr in _ENDPOINT_NEEDS if not hasattr(endpoint, attr)]
    if lacking:
        raise ConfigError(
            f"{made} is incomplete: it has no {', '.join(lacking)} (see providers.protocol) "
            f"— {advice}"
        )
    return provider
