"""Pricing the calls recorded in the ledger."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from plugins.ledger import Pricer, call_record
from providers.pricing import PriceTable
from providers.types import Completion, Message, Request, Usage


def _context(provider: str = "openai") -> Any:
    return SimpleNamespace(prices=PriceTable.load(), provider_name=provider)


def _request(model: str) -> Request:
    return Request(model=model, messages=(Message("user", "hi"),), task="t")


@pytest.mark.parametrize("mode", ["batch", "immediate"])
def test_the_pricer_gives_the_price_tables_figures(mode: Any) -> None:
    table = PriceTable.load()
    pricer = Pricer(_context())
    for usage in (Usage(1000, 200), Usage(5000, 10, cached_tokens=4000), Usage(0, 0)):
        cost, immediate = pricer.costs("gpt-4o-mini", usage, mode)
        assert cost == pytest.approx(table.cost("gpt-4o-mini", usage, mode, provider="openai"))
        assert immediate == pytest.approx(
            table.cost("gpt-4o-mini", usage, "immediate", provider="openai")
        )
    batch, immediate = pricer.costs("gpt-4o-mini", Usage(1000, 200), "batch")
    assert batch is not None and immediate is not None
    assert batch == pytest.approx(immediate / 2, rel=0.01)


def test_an_unpriced_model_costs_none_never_zero() -> None:
    pricer = Pricer(_context())
    assert pricer.costs("no-such-model-xyz", Usage(10, 10), "batch") == (None, None)
    record = call_record(
        _context(),
        _request("no-such-model-xyz"),
        Completion("{}", Usage(10, 10), ""),
        mode="batch",
        pricer=pricer,
        ts=123.0,
    )
    assert record.cost_usd is None and record.immediate_cost_usd is None
    assert record.model == "no-such-model-xyz" and record.ts == 123.0


def test_a_call_record_is_priced_for_the_model_that_answered() -> None:
    completion = Completion("{}", Usage(1000, 100), "gpt-4o-2024-08-06")
    record = call_record(_context(), _request("gpt-4o-mini"), completion, mode="immediate")
    table = PriceTable.load()
    assert record.model == "gpt-4o-2024-08-06"
    assert record.cost_usd == pytest.approx(
        table.cost("gpt-4o-2024-08-06", completion.usage, "immediate", provider="openai")
    )
    assert record.immediate_cost_usd == record.cost_usd
    assert record.key == _request("gpt-4o-mini").key and record.task == "t"
