"""Money figures: exact sums, cents from a cent on, significant digits below."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.errors import BudgetExceededError
from providers.money import format_usd, usd_sum


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "$0.00"),
        (None, "$0.00"),
        (0.1 + 0.2, "$0.30"),
        (1234.5678, "$1,234.57"),
        (0.01, "$0.01"),
        (0.0099999, "$0.01"),
        (0.004234, "$0.00423"),
        (0.0000123456, "$0.0000123"),
        (0.002, "$0.002"),
        (1e-9, "<$0.000001"),
        (-0.002, "-$0.002"),
    ],
)
def test_figures_are_printed_with_sensible_precision(value: float | None, shown: str) -> None:
    assert format_usd(value) == shown


def test_sums_have_no_float_noise() -> None:
    assert usd_sum([0.1, 0.2, None]) == Decimal("0.3")
    assert usd_sum([0.000001] * 3) == Decimal("0.000003")


def test_a_float_sum_of_costs_reads_as_the_costs_it_added() -> None:
    # What SQLite's SUM gives for 0.00001695 * 3: one significant digit differs.
    added = 0.00001695 + 0.00001695 + 0.00001695
    assert repr(added) != "5.085e-05"
    assert format_usd(added) == format_usd(Decimal("0.00005085")) == "$0.0000509"
    assert usd_sum([added]) == Decimal("0.00005085")


@pytest.mark.parametrize("value", [1e17, 1e300, float("inf")])
def test_a_huge_amount_is_taken_as_it_is(value: float) -> None:
    # A budget of 1e17 says "no limit": too large to keep twelve decimals of.
    assert usd_sum([value]) == Decimal(repr(value))


def test_a_budget_error_never_reads_zero_against_zero() -> None:
    error = BudgetExceededError(0.0000375, 0.00002)
    assert "$0.0000375 exceeds the budget $0.00002" in str(error)
    assert "$0.0000" not in str(BudgetExceededError(0.0004, 0.0))
