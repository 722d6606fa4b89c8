"""What plugins register, and the strategy protocol they implement.

A provider plugin registers a *factory* (called only when the provider is
used); a strategy plugin registers a factory that gets a
:class:`StrategyContext`. The plugin manager keeps these in
:class:`Registry`, together with where each came from, which is what
``lexibatch plugins`` shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from plugins.providerspec import ProviderSpec
from providers.errors import ConfigError, UnknownPluginError

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.retry import RetryPolicy
    from plugins.store import Store
    from providers.pricing import PriceTable
    from providers.protocol import Provider
    from providers.types import Request, Response

__all__ = [
    "BUILTIN_ORIGIN",
    "ProviderEntry",
    "ProviderFactory",
    "RegisterProvider",
    "RegisterStrategy",
    "Registry",
    "Strategy",
    "StrategyContext",
    "StrategyEntry",
    "StrategyFactory",
    "Workload",
]

#: Where a built-in provider or strategy comes from (a plugin's is its distribution).
BUILTIN_ORIGIN: Final = "built-in"

#: ``factory(name, options)`` (plus ``context=`` when it takes one): see
#: :mod:`plugins.providerspec`.
ProviderFactory = Callable[..., "Provider"]


class Strategy(Protocol):
    """How requests reach a provider (immediately, through a batch endpoint, ...)."""

    name: str

    async def run(self, request: Request) -> Response:
        """Send ``request`` and return its validated response (or raise its typed error)."""
        ...

    async def flush(self) -> None:
        """Send what is pending now and wait until it has resolved."""
        ...

    async def aclose(self) -> None:
        """Finish or hand over pending work and release resources."""
        ...


@dataclass
class StrategyContext:
    """What a strategy is built from.

    Attributes:
        provider: the provider instance.
        provider_name: its registered name.
        settings: the whole validated configuration.
        store: the store (cache + journal).
        prices: the price table.
        hooks: the plugin manager's hook relay, for lifecycle notifications.
        immediate: the immediate strategy, for strategies that fall back to it.
        batch: the connector's batch strategy, built on first call, for a
            strategy that must hand a request to the batch that holds it;
            raises ``UnsupportedError`` without a batch endpoint and
            ``StoreBusyError`` while another process runs the store's batches.
        retry_policy: the retry policy every call to the provider goes
            through (made from ``settings.retry`` when not given); see :attr:`retry`.
        spec: what the provider declared when it registered (its batch
            endpoint's behaviour included).
    """

    provider: Provider
    provider_name: str
    settings: Settings
    store: Store
    prices: PriceTable
    hooks: Any
    immediate: Strategy | None = None
    batch: Callable[[], Strategy] | None = None
    retry_policy: RetryPolicy | None = None
    spec: ProviderSpec = field(default_factory=ProviderSpec)

    @property
    def retry(self) -> RetryPolicy:
        """The one retry policy of this provider's calls, shared by every strategy."""
        if self.retry_policy is None:
            from plugins.retry import RetryPolicy

            self.retry_policy = RetryPolicy(self.settings.retry, provider=self.provider_name)
        return self.retry_policy


StrategyFactory = Callable[[StrategyContext], Strategy]


class RegisterProvider(Protocol):
    """The ``register`` callback of ``register_providers``."""

    def __call__(
        self,
        name: str,
        factory: ProviderFactory,
        *,
        description: str = "",
        has_batch: bool = False,
        spec: ProviderSpec | None = None,
    ) -> None: ...


class RegisterStrategy(Protocol):
    """The ``register`` callback of ``register_strategies``."""

    def __call__(self, name: str, factory: StrategyFactory, *, description: str = "") -> None: ...


@dataclass(frozen=True)
class ProviderEntry:
    """A registered provider.

    Attributes:
        name: the name it is used under.
        factory: builds it (called only when it is used).
        description: one line for ``lexibatch plugins``.
        has_batch: whether it has a batch endpoint.
        origin: the plugin it came from (``built-in`` or a distribution).
        spec: what it declared about itself.
    """

    name: str
    factory: ProviderFactory
    description: str
    has_batch: bool
    origin: str
    spec: ProviderSpec = field(default_factory=ProviderSpec)


@dataclass(frozen=True)
class StrategyEntry:
    """A registered strategy."""

    name: str
    factory: StrategyFactory
    description: str
    origin: str


@dataclass(frozen=True)
class Workload:
    """What ``choose_strategy`` decides on.

    Attributes:
        requested: the configured mode (``immediate``, ``batch`` or ``auto``).
        size: how many requests the caller expects (0 when unknown).
        provider: the provider's registered name.
        has_batch: whether the provider has a batch endpoint.
        auto_threshold: the configured size from which ``auto`` picks batch.
    """

    requested: str
    size: int
    provider: str
    has_batch: bool
    auto_threshold: int

    def strategy(self, choose_strategy: Any) -> str:
        """The strategy this workload runs in: the mode named, or for ``auto`` what the
        ``choose_strategy`` hook (``choose_strategy``, the hook caller) answers."""
        if self.requested != "auto":
            return self.requested
        chosen = choose_strategy(workload=self) or "immediate"
        if chosen not in ("immediate", "batch"):
            # Run as immediate unseen, a plugin's typo would cost twice the batch price.
            raise ConfigError(
                f"a choose_strategy hook answered {chosen!r}: it must answer 'immediate', "
                "'batch' or None — fix its plugin, or run with --mode immediate or batch"
            )
        return str(chosen)


@dataclass
class Registry:
    """Providers and strategies by name, with where they came from."""

    providers: dict[str, ProviderEntry] = field(default_factory=dict)
    strategies: dict[str, StrategyEntry] = field(default_factory=dict)

    def provider(self, name: str) -> ProviderEntry:
        """The provider registered as ``name``.

        Raises:
            UnknownPluginError: none is.
        """
        try:
            return self.providers[name]
        except KeyError:
            raise UnknownPluginError("provider", name, list(self.providers)) from None

    def strategy(self, name: str) -> StrategyEntry:
        """The strategy registered as ``name``.

        Raises:
            UnknownPluginError: none is.
        """
        try:
            return self.strategies[name]
        except KeyError:
            raise UnknownPluginError("strategy", name, list(self.strategies)) from None

    def fill(
        self, providers: Sequence[ProviderEntry], strategies: Sequence[StrategyEntry]
    ) -> list[str]:
        """Record what the plugins registered; why any of it was left out, one line each.

        A name registered once is recorded. A name registered more than once
        (by two plugins, or twice by one) is recorded for none of them: which
        one would run would be an accident of load order. Unless a built-in
        has it: the built-in is recorded, and the others are left out.

        Raises:
            ConfigError: two built-ins register one name (a defect).
        """
        return [
            *_fill(self.providers, providers, "provider"),
            *_fill(self.strategies, strategies, "strategy"),
        ]


_Entry = TypeVar("_Entry", ProviderEntry, StrategyEntry)


def _fill(into: dict[str, _Entry], entries: Sequence[_Entry], kind: str) -> list[str]:
    claims: dict[str, list[_Entry]] = {}
    for entry in entries:
        claims.setdefault(entry.name, []).append(entry)
    left_out: list[str] = []
    for name, claimed in claims.items():
        if len(claimed) == 1:
            into[name] = claimed[0]
            continue
        builtins = [e for e in claimed if e.origin == BUILTIN_ORIGIN]
        if len(builtins) > 1:
            raise ConfigError(f"built-in {kind} {name!r} is registered twice")
        if builtins:
            into[name] = builtins[0]
            left_out += [
                f"{kind} {name!r} of {e.origin} takes the name of a built-in one, "
                "which is used instead"
                for e in claimed
                if e is not builtins[0]
            ]
            continue
        left_out.append(_twice(kind, name, [e.origin for e in claimed]))
    return left_out


def _twice(kind: str, name: str, origins: Sequence[str]) -> str:
    """Why ``name``, registered more than once, is left out (a second registration never wins)."""
    if len(set(origins)) == 1:
        # Two entry points of one distribution, or one hook registering the name twice.
        return f"{kind} {name!r} is registered twice by {origins[0]}"
    return f"{kind} {name!r} is registered twice ({' and '.join(dict.fromkeys(origins))})"
