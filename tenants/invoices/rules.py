"""What an invoice's body must hold beyond its fields' types: a known currency, a due date
on or after the issue date, and a total the columns can hold (a line's quantity above 0
and rate up to 100 percent are its types': schemas.py).

A body rule (bodies.Schema): it judges what it is given and leaves alone what is missing,
so that it serves the service (on a valid body, with the stored dates beside a change)
and the fields of a body that failed its types alike. The totals are worked out as the
lines are checked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from atrium.tenants.invoices import money

Errors = list[dict[str, str]]


def item_dict(item: Any) -> dict[str, Any]:
    """A line as stored: a plain object, whether it came as one or as a decoded struct."""
    if isinstance(item, dict):
        return item
    return {
        "description": item.description,
        "quantity": item.quantity,
        "unit_price": item.unit_price,
        "tax_rate": item.tax_rate,
    }


def _lines(items: list[dict[str, Any]]) -> list[money.Line]:
    """The lines as exact numbers."""
    return [
        money.Line(Decimal(item["quantity"]), item["unit_price"], Decimal(item["tax_rate"])) for item in items
    ]


def currency_error(code: str) -> str | None:
    """What is wrong with a currency code of the right shape (the body's rule and the
    ``currency`` filter's)."""
    return None if code in money.currencies() else "not an ISO 4217 currency code"


def invoice_rules(values: dict[str, Any]) -> Errors:
    """The errors of ``values``; with ``items``, the lines become plain objects and
    ``subtotal``, ``tax`` and ``total`` are set."""
    errors: Errors = []
    currency = values.get("currency")
    if currency is not None and (message := currency_error(currency)) is not None:
        errors.append({"field": "currency", "message": message})
    issue, due = values.get("issue_date"), values.get("due_date")
    if issue is not None and due is not None and due < issue:
        errors.append({"field": "due_date", "message": "must be on or after issue_date"})
    if values.get("items") is not None:
        items = values["items"] = [dict(item_dict(item)) for item in values["items"]]
        totals = money.totals(_lines(items))
        if totals.total > money.MAX_AMOUNT:
            errors.append({"field": "items", "message": "the total is too large"})
        values.update(subtotal=totals.subtotal, tax=totals.tax, total=totals.total)
    return errors
