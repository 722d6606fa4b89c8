"""The one price table: what every estimate and every ledger row is priced from."""

from __future__ import annotations

import pytest

from plugins.estimate import estimate_requests, price_table
from providers.types import Message, Request


def _requests(model: str, n: int) -> list[Request]:
    return [
        Request(model=model, messages=(Message(role="user", content=f"define word {i}"),))
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("provider", "model"),
    [("mistral", "mistral-small-latest"), ("openai", "gpt-4o-mini")],
)
def test_an_estimate_prices_batch_at_half_for_a_provider_with_a_batch_api(
    provider: str, model: str
) -> None:
    # gpt-4o-mini has batch prices in the map; Mistral's models have none, and
    # the provider's declared share (half, as Mistral publishes) prices them.
    estimate = estimate_requests(_requests(model, 20), provider=provider)
    assert estimate.requests == 20 and estimate.immediate_usd > 0
    assert estimate.batch_usd == pytest.approx(estimate.immediate_usd / 2, rel=0.01)
    assert not estimate.discount_unknown


def test_the_price_table_takes_the_registered_providers_declared_shares() -> None:
    price = price_table().price("mistral-small-latest", "mistral")
    assert price is not None and price.batch_discount_known
    assert price.batch_input == pytest.approx(price.input / 2)
    # Without the registered declarations the map alone has no batch price.
    bare = price_table({}).price("mistral-small-latest", "mistral")
    assert bare is not None and not bare.batch_discount_known
