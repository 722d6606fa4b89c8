"""Money as users read it: exact sums and figures printed with sensible precision.

Costs are stored as floats (the ledger's ``REAL`` column) and summed here as
:class:`~decimal.Decimal` values made from each float's shortest repr, so a
total never shows float noise (``0.30000000000000004``). A figure is printed
with cents when it is a cent or more, and with three significant digits when
it is less — a real spend never reads ``$0.0000``, and only nothing reads
``$0.00``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["format_usd", "to_decimal", "usd_json", "usd_sum"]

_CENT = Decimal("0.01")
_SIGNIFICANT = 3
# Below this a sum is shown as "under" it rather than as a long row of zeros.
_SMALLEST = Decimal("0.000001")
# Machine-readable figures keep this many decimals: far below any price's
# precision, far above a float sum's noise.
_JSON_PLACES = Decimal("1e-10")
# What a float amount keeps (see to_decimal), below 10 ** _PLAIN_FROM.
_FLOAT_PLACES = Decimal("1e-12")
_PLAIN_FROM = 15


def to_decimal(value: float | Decimal | int | None) -> Decimal:
    """``value`` as an exact :class:`Decimal` of what it prints as (``None``: zero).

    A float is rounded (half up) to twelve decimals, as each call's cost is
    (``providers.pricing.COST_PLACES``): a sum the store added up in
    floating point (``5.084999999999999e-05``) reads as the costs it added.
    """
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    amount = Decimal(repr(float(value)))
    if not amount.is_finite() or amount.adjusted() >= _PLAIN_FROM:
        return amount  # too large for twelve decimals in 28 digits (a budget of 1e17)
    return amount.quantize(_FLOAT_PLACES, rounding=ROUND_HALF_UP)


def usd_sum(values: Iterable[float | Decimal | int | None]) -> Decimal:
    """The exact sum of ``values`` (``None`` counts as zero: an unpriced call is counted apart)."""
    return sum((to_decimal(v) for v in values), Decimal(0))


def format_usd(value: float | Decimal | int | None) -> str:
    """``$1,234.57``, ``$0.05``, ``$0.00423``, ``<$0.000001``, ``$0.00`` for nothing at all.

    Cents (rounded half up) from a cent on; below a cent, up to three
    significant digits, so a small but real spend is never printed as zero.
    """
    amount = to_decimal(value)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount < _SMALLEST:
        return f"{sign}<${_SMALLEST:f}"
    if amount < _CENT:
        exponent = amount.adjusted() - _SIGNIFICANT + 1
        amount = amount.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
        if amount < _CENT:
            return f"{sign}${amount.normalize():f}"
    return f"{sign}${amount.quantize(_CENT, rounding=ROUND_HALF_UP):,}"


def usd_json(value: float | Decimal | int | None) -> str:
    """``"0.00001215"``: an amount for machines, as a decimal string without float noise.

    Rounded (half up) to ten decimals, far finer than any price, so a sum
    the ledger added up in floating point (``0.000012149999999999999``)
    reads as what was billed; trailing zeros are dropped.
    """
    amount = to_decimal(value).quantize(_JSON_PLACES, rounding=ROUND_HALF_UP).normalize()
    return f"{amount:f}" if amount else "0"
