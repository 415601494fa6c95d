"""Exact invoice arithmetic (API.md §10): integers in the currency's minor unit, decimal
quantities and tax rates, each line rounded half-to-even.

The exponents (JPY 0, USD 2, KWD 3) are CLDR's, through babel: a maintained table of every
ISO 4217 currency, not one typed here.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

# Enough digits for any line and total allowed (amounts stay below 2**63).
_CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
MAX_AMOUNT = 2**63 - 1


@cache
def currencies() -> frozenset[str]:
    """ISO 4217 codes babel knows, upper case."""
    return frozenset(code.upper() for code in list_currencies() if len(code) == 3 and code.isalpha())


def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit."""
    return get_currency_precision(currency)


@dataclass(frozen=True)
class Line:
    quantity: Decimal
    unit_price: int
    tax_rate: Decimal


@dataclass(frozen=True)
class Totals:
    subtotal: int
    tax: int

    @property
    def total(self) -> int:
        return self.subtotal + self.tax


def line_amounts(line: Line) -> tuple[int, int]:
    """The line's amount and tax: ``quantity * unit_price`` rounded half-to-even to the minor
    unit, then that rounded amount ``* tax_rate / 100``, rounded half-to-even again."""
    amount = _CONTEXT.multiply(line.quantity, Decimal(line.unit_price)).quantize(_ONE, context=_CONTEXT)
    tax = _CONTEXT.divide(_CONTEXT.multiply(amount, line.tax_rate), _HUNDRED).quantize(_ONE, context=_CONTEXT)
    return int(amount), int(tax)


def totals(lines: Iterable[Line]) -> Totals:
    subtotal = tax = 0
    for line in lines:
        amount, line_tax = line_amounts(line)
        subtotal += amount
        tax += line_tax
    return Totals(subtotal, tax)


def major(amount: int, currency: str) -> Decimal:
    """``amount`` minor units as the currency's major unit (1234 USD cents → 12.34)."""
    return Decimal(amount).scaleb(-exponent(currency))


def formatted(amount: int, currency: str, locale: str = "en_US", code: bool = False) -> str:
    """The amount written for a reader, with the currency's symbol (``code``: its ISO code)
    and its number of decimals."""
    pattern = "\u00a4\u00a4\u00a0#,##0.00" if code else None
    return format_currency(
        major(amount, currency), currency, format=pattern, locale=locale, currency_digits=True
    )
