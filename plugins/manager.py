"""The plugin manager: built-in plugins, entry-point plugins, and the registry they fill.

Loading is lazy (nothing happens until a registry is first asked for) and
idempotent (asking again returns the same one). Built-ins are plugins like any
other, listed in :data:`DEFAULT_PLUGINS`. Third-party plugins are found
through the ``lexibatch`` entry-point group; ``LEXIBATCH_LOAD_PLUGINS``
restricts which (a comma-separated list of entry-point or distribution
names; an empty value loads none, which is what the test suite does).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from plugins import hookspecs
from plugins.providerspec import ProviderSpec
from plugins.registry import (
    BUILTIN_ORIGIN,
    ProviderEntry,
    ProviderFactory,
    Registry,
    StrategyEntry,
    StrategyFactory,
)
from providers.errors import ConfigError

__all__ = [
    "BUILTIN_ORIGIN",
    "DEFAULT_PLUGINS",
    "LOAD_PLUGINS_ENV",
    "PluginManager",
    "get_plugin_manager",
    "reset_plugin_manager",
]

#: Modules holding the built-in providers and strategies, registered first.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.builtin_providers",
    "plugins.builtin_strategies",
)

#: Environment variable restricting which entry-point plugins load.
LOAD_PLUGINS_ENV = "LEXIBATCH_LOAD_PLUGINS"

log = logging.getLogger("lexibatch.plugins")


class PluginManager:
    """A pluggy manager for the ``lexibatch`` hooks plus the registry it fills."""

    def __init__(self, *, load_entrypoints: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._origins: dict[str, str] = {}
        self._load_entrypoints = load_entrypoints
        self._registry: Registry | None = None
        #: Why each entry-point plugin that could not be used was left out.
        self.left_out: list[str] = []
        #: Installed entry-point plugins the allow-list leaves out.
        self.excluded: list[str] = []
        self._lock = threading.Lock()
        self._loaded = False

    @property
    def hook(self) -> Any:
        """The hook relay (``manager.hook.batch_submitted(...)``)."""
        self._ensure_loaded()
        return self.pm.hook

    def register(self, plugin: object, *, name: str | None = None, origin: str) -> None:
        """Register a plugin object or module, recording where it came from.

        Raises:
            ConfigError: the plugin implements a hook that does not exist.
        """
        plugin_name = name or getattr(plugin, "__name__", None) or repr(plugin)
        if self.pm.is_registered(plugin) or self.pm.has_plugin(plugin_name):
            return
        self.pm.register(plugin, name=plugin_name)
        self._origins[plugin_name] = origin
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            self._origins.pop(plugin_name, None)
            raise ConfigError(
                f"plugin {plugin_name} ({origin}) is invalid: {exc} — {_fix_or_exclude()}"
            ) from None
        self._registry = None

    def origin_of(self, plugin_name: str) -> str:
        """Where the plugin registered under ``plugin_name`` came from."""
        return self._origins.get(plugin_name, "unknown")

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            # Another thread may have loaded them while this one waited.
            if not self._loaded:
                for module_name in DEFAULT_PLUGINS:
                    self.register(importlib.import_module(module_name), origin=BUILTIN_ORIGIN)
                if self._load_entrypoints:
                    self._load_entrypoint_plugins()
                self._loaded = True

    def _load_entrypoint_plugins(self) -> None:
        allowed = _allow_list()
        named = set(allowed or ())
        for ep in _entry_points():
            named -= {_normal(ep.name), _normal(ep.dist.name if ep.dist is not None else "")}
            dist = ep.dist.name if ep.dist is not None else ""
            if allowed is not None and not {_normal(ep.name), _normal(dist)} & allowed:
                self.excluded.append(ep.name)
                continue
            # A plugin that cannot load is left out, said once: the commands that
            # do not use it still run (`--help`, `cost`, another provider's run),
            # and one that names its provider is told why it is missing.
            try:
                plugin = ep.load()
            except Exception as exc:
                what = " ".join(f"{exc.__class__.__name__}: {exc}".split())[:300]
                self._left_out(f"plugin {ep.name} ({ep.value}) failed to load: {what}")
                continue
            version = ep.dist.version if ep.dist is not None else ""
            origin = f"{dist} {version}".strip() if dist else ep.value
            try:
                self.register(plugin, name=f"{ep.name}:{ep.value}", origin=origin)
            except ConfigError as exc:
                self._left_out(exc.message.split(" — ")[0])
        if named:
            # A name that matches nothing installed: most likely a typo.
            log.warning(
                "lexibatch: %s names %s, which no installed plugin is called",
                LOAD_PLUGINS_ENV,
                ", ".join(sorted(named)),
            )

    def not_loaded(self) -> list[str]:
        """Why each plugin that is installed is not used, one line each (none: all are)."""
        why = list(self.left_out)
        if self.excluded:
            why.append(
                f"installed but not in {LOAD_PLUGINS_ENV}: {', '.join(sorted(self.excluded))}"
            )
        return why

    def _left_out(self, why: str) -> None:
        """Leave a plugin out, saying why (as a warning, and again to whoever misses it).

        Said once however often the registry is built again.
        """
        if why in self.left_out:
            return
        self.left_out.append(why)
        log.warning("lexibatch: %s — left out (%s)", why, _fix_or_exclude())

    def call_each(
        self,
        hook: str,
        *,
        checkpoint: Callable[[], Callable[[], None]] | None = None,
        **kwargs: Any,
    ) -> None:
        """Call every implementation of the registering hook ``hook`` with ``kwargs``.

        A third-party plugin whose implementation raises is left out, as in
        :meth:`registry`: ``checkpoint()``, called before each implementation,
        returns what undoes the half of its work it did before it raised.

        Raises:
            ConfigError: a built-in plugin's implementation raised (a defect).
        """
        for impl in getattr(self.hook, hook).get_hookimpls():
            undo = checkpoint() if checkpoint is not None else None
            kept = self._registered(impl, self.origin_of(impl.plugin_name), **kwargs)
            if not kept and undo is not None:
                undo()

    def registry(self) -> Registry:
        """Every registered provider and strategy (built once, then cached).

        A third-party plugin whose registering hook fails registers nothing,
        and a name two plugins register (or one registers twice) goes to
        neither, unless a built-in has it: both are left out like a plugin
        that cannot load, said once, so the commands that do not use them
        still run and one that names them is told why they are missing.

        Raises:
            ConfigError: a built-in plugin's registration failed (a defect).
        """
        self._ensure_loaded()
        if self._registry is not None:
            return self._registry
        registry = Registry()
        providers: list[ProviderEntry] = []
        strategies: list[StrategyEntry] = []
        for impl in self.pm.hook.register_providers.get_hookimpls():
            origin = self.origin_of(impl.plugin_name)
            staged: list[ProviderEntry] = []
            if self._registered(impl, origin, register=_provider_register(staged, origin)):
                providers += staged
        for impl in self.pm.hook.register_strategies.get_hookimpls():
            origin = self.origin_of(impl.plugin_name)
            staged_strategies: list[StrategyEntry] = []
            register = _strategy_register(staged_strategies, origin)
            if self._registered(impl, origin, register=register):
                strategies += staged_strategies
        for why in registry.fill(providers, strategies):
            self._left_out(why)
        self._registry = registry
        return registry

    def _registered(self, impl: Any, origin: str, **kwargs: Any) -> bool:
        """Call one registering hook; whether what it registered is to be kept.

        Raises:
            ConfigError: the hook of a built-in plugin failed.
        """
        try:
            _registering(impl, origin, **kwargs)
        except ConfigError as exc:
            if origin == BUILTIN_ORIGIN:
                raise
            self._left_out(exc.message.split(" — ")[0])
            return False
        return True


def _registering(impl: Any, origin: str, **kwargs: Any) -> None:
    """Call one plugin's registering hook; a mistake in it is one line naming the plugin.

    Raises:
        ConfigError: the hook raised (a wrong call of ``register``, a spec that
            does not hold, a name taken by another plugin).
    """
    try:
        impl.function(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"plugin {impl.plugin_name} ({origin}): {exc.message}") from None
    except Exception as exc:
        what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ConfigError(
            f"plugin {impl.plugin_name} ({origin}) failed in {impl.function.__name__}: "
            f"{what} — {_fix_or_exclude()}"
        ) from exc


def _fix_or_exclude() -> str:
    return f"fix or uninstall it, or leave it out of {LOAD_PLUGINS_ENV}"


def _provider_register(staged: list[ProviderEntry], origin: str) -> Callable[..., None]:
    def register(
        name: str,
        factory: ProviderFactory,
        *,
        description: str = "",
        has_batch: bool = False,
        spec: ProviderSpec | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a provider's name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise TypeError(f"provider {name!r}: factory must be callable, got {factory!r}")
        if spec is not None and not isinstance(spec, ProviderSpec):
            raise TypeError(
                f"provider {name!r}: spec must be a ProviderSpec, got {type(spec).__name__}"
            )
        spec = spec or ProviderSpec()
        batch = has_batch or spec.batch is not None
        staged.append(ProviderEntry(name, factory, description, batch, origin, spec))

    return register


def _strategy_register(staged: list[StrategyEntry], origin: str) -> Callable[..., None]:
    def register(name: str, factory: StrategyFactory, *, description: str = "") -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a strategy's name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise TypeError(f"strategy {name!r}: factory must be callable, got {factory!r}")
        staged.append(StrategyEntry(name, factory, description, origin))

    return register


def _allow_list() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {_normal(part) for part in raw.split(",") if part.strip()}


def _normal(name: str) -> str:
    """A plugin's or distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=hookspecs.PROJECT)


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use)."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = PluginManager()
    return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager, so the next use loads plugins anew."""
    global _manager
    with _manager_lock:
        _manager = None


def register_module(module: ModuleType | object, *, origin: str = "runtime") -> None:
    """Register an extra plugin into the process-wide manager (tests, embedding apps)."""
    get_plugin_manager().register(module, origin=origin)
