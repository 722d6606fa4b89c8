"""What a run would cost, before anything is sent: immediately and through batches."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from plugins.configprices import ModelPriceSettings, own_prices
from providers.money import format_usd
from providers.pricing import PriceTable
from providers.tokens import estimate_tokens
from providers.types import Request, Usage

if TYPE_CHECKING:
    from plugins.config import Settings
    from plugins.providerspec import ProviderSpec

__all__ = [
    "Estimate",
    "batch_shares",
    "estimate_requests",
    "price_provider",
    "priced_mode",
    "unknown_prices",
]

log = logging.getLogger("lexibatch.plugins")


def priced_mode(settings: Settings, provider: str, size: int) -> str:
    """The mode a run of ``size`` requests will run in, chosen as the connector chooses it.

    The mode named, or for ``auto`` the ``choose_strategy`` hook's answer
    (batch from ``batch.auto_threshold`` requests when the provider has a
    batch endpoint): an estimate or a budget prices that mode.
    """
    from plugins.manager import get_plugin_manager
    from plugins.registry import Workload

    manager = get_plugin_manager()
    workload = Workload(
        requested=settings.connector.mode,
        size=size,
        provider=provider,
        has_batch=manager.registry().provider(provider).has_batch,
        auto_threshold=settings.batch.auto_threshold,
    )
    return workload.strategy(manager.hook.choose_strategy)


def price_provider(provider: str) -> str | None:
    """The price map's provider for the provider registered as ``provider``.

    It is what the provider declared (``ProviderSpec.prices``; ``None``: the
    model string decides); a provider nothing registers is looked up by its name.
    """
    from plugins.config import registered_spec

    spec = registered_spec(provider)
    return spec.prices if spec is not None else provider


def unknown_prices(spec: ProviderSpec, table: PriceTable) -> str | None:
    """What is wrong with the price-map provider ``spec`` declares, if the table has none such.

    ``None`` when it declares none, the table knows it, or the table is empty
    (no price map installed: nothing is priced anyway).
    """
    if spec.prices is None or not len(table) or table.knows_provider(spec.prices):
        return None
    share = " and its batch price share is not applied" if spec.batch_price_share else ""
    return (
        f"prices={spec.prices!r} names no provider of the price map: its models are priced "
        f"by their names alone{share}"
    )


def price_table(
    specs: Mapping[str, ProviderSpec] | None = None,
    own: Mapping[str, ModelPriceSettings] | None = None,
) -> PriceTable:
    """The price map, with the batch prices providers declare and it leaves out.

    ``specs``: the providers' declarations (by default, those registered).
    ``own``: the configuration's ``[prices]``, which win over the map's.
    Every cost lexibatch computes (the ledger, ``--estimate``, ``--budget``)
    is priced from this table.
    """
    if specs is None:
        from plugins.config import registered_specs

        specs = registered_specs()
    table = PriceTable.load().with_batch_shares(batch_shares(specs))
    return table.with_own_prices(own_prices(own or {}))


def batch_shares(specs: Mapping[str, ProviderSpec]) -> dict[str, float]:
    """The batch price share of each price-map provider, as the providers declare them.

    Declared by two providers differently, the share of the one registered
    under the price-map provider's own name wins (``mistral``'s for
    ``mistral``), else the larger one: the higher price, so a budget is
    never underestimated. A warning names them.
    """
    declared: dict[str, dict[str, float]] = {}
    for name, spec in specs.items():
        if spec.prices is not None and spec.batch_price_share is not None:
            declared.setdefault(spec.prices, {})[name] = spec.batch_price_share
    shares: dict[str, float] = {}
    for prices, by_provider in declared.items():
        share = by_provider.get(prices, max(by_provider.values()))
        if len(set(by_provider.values())) > 1:
            said = ", ".join(f"{n} {s:.0%}" for n, s in sorted(by_provider.items()))
            log.warning(
                "providers declare different batch price shares for the models of %s (%s): "
                "%.0f%% is used",
                prices,
                said,
                share * 100,
            )
        shares[prices] = share
    return shares


@dataclass
class Estimate:
    """Expected cost of a set of requests.

    Attributes:
        requests: how many requests.
        input_tokens: expected input tokens, summed.
        output_tokens: expected output tokens, summed (a guess from schemas).
        immediate_usd: the cost sent immediately (priced requests only).
        batch_usd: the cost sent through batches (priced requests only).
        unpriced_models: models the price table does not know.
        discount_unknown: models with no batch price in the table (batch priced as immediate).
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    immediate_usd: float = 0.0
    batch_usd: float = 0.0
    unpriced_models: set[str] = field(default_factory=set)
    discount_unknown: set[str] = field(default_factory=set)

    def describe(self) -> str:
        """A short human-readable report."""
        lines = [
            f"estimate for {self.requests} requests "
            f"(~{self.input_tokens:,} input and ~{self.output_tokens:,} output tokens):",
            f"  immediate: {format_usd(self.immediate_usd)}",
            f"  batch:     {format_usd(self.batch_usd)}",
        ]
        if self.immediate_usd > 0:
            saving = self.immediate_usd - self.batch_usd
            lines.append(f"  batch saves {format_usd(saving)} ({saving / self.immediate_usd:.0%})")
        if self.unpriced_models:
            lines.append(f"  unpriced (not counted): {', '.join(sorted(self.unpriced_models))}")
        if self.discount_unknown:
            lines.append(
                "  no batch price in the table (priced as immediate): "
                + ", ".join(sorted(self.discount_unknown))
            )
        return "\n".join(lines)

    def check_budget_bounds(self) -> None:
        """Refuse a budget this estimate cannot check: requests of models with no price.

        Raises:
            UserError: some models have no price in the table.
        """
        if self.unpriced_models:
            from providers.errors import UserError

            raise UserError(
                f"the price map has no price for {', '.join(sorted(self.unpriced_models))}: "
                "a budget (--budget, batch.budget_usd) cannot bound what its requests cost — "
                'give it a price in the configuration ([prices."MODEL"] input_per_million and '
                "output_per_million), choose a priced model, or run without a budget"
            )


def estimate_requests(
    requests: Iterable[Request], *, provider: str, prices: PriceTable | None = None
) -> Estimate:
    """Estimate ``requests`` against the price table, per mode."""
    prices = prices or price_table()
    pprov = price_provider(provider)
    est = Estimate()
    for request in requests:
        est.requests += 1
        tokens_in, tokens_out = estimate_tokens(request)
        est.input_tokens += tokens_in
        est.output_tokens += tokens_out
        price = prices.price(request.model, pprov)
        if price is None:
            est.unpriced_models.add(request.model)
            continue
        usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out)
        est.immediate_usd += price.cost(usage, "immediate")
        est.batch_usd += price.cost(usage, "batch")
        if not price.batch_discount_known:
            est.discount_unknown.add(request.model)
    return est
