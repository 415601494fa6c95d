"""Sample invoices for a demo tenant (platform/tenancy/demo.py): a draft, an open one
partly paid and a paid one, numbered from the tenant's counter like any other."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.invoices import money
from atrium.tenants.invoices.models import Invoice, InvoiceCounter
from atrium.tenants.invoices.routes import COUNTER, NUMBER_FORMAT


def _invoice(
    owner: Any,
    number: int | None,
    status: str,
    customer: str,
    currency: str,
    items: list[dict[str, Any]],
    paid: int = 0,
) -> dict[str, Any]:
    lines = [money.Line(Decimal(i["quantity"]), i["unit_price"], Decimal(i["tax_rate"])) for i in items]
    totals = money.totals(lines)
    today = datetime.datetime.now(datetime.UTC).date()
    return {
        "owner_id": owner,
        "number": None if number is None else NUMBER_FORMAT.format(number),
        "status": status,
        "customer_name": customer,
        "customer_email": f"billing@{customer.split()[0].lower()}.example",
        "currency": currency,
        "issue_date": None if number is None else today,
        "due_date": today + datetime.timedelta(days=30),
        "notes": "Thank you for your business.",
        "items": items,
        "subtotal": totals.subtotal,
        "tax": totals.tax,
        "total": totals.total,
        "amount_paid": totals.total if status == "paid" else paid,
    }


def seed(conn: Connection, demo: DemoTenant) -> None:
    consulting = [
        {"description": "Consulting, hours", "quantity": "12.5", "unit_price": 9500, "tax_rate": "20"},
        {"description": "Travel", "quantity": "1", "unit_price": 18000, "tax_rate": "0"},
    ]
    licences = [{"description": "Annual licence", "quantity": "3", "unit_price": 120000, "tax_rate": "8.5"}]
    rows = [
        _invoice(demo.owner_id, None, "draft", "Globex Corporation", "USD", consulting),
        _invoice(demo.owner_id, 1, "open", "Initech GmbH", "EUR", licences, paid=100000),
        _invoice(
            demo.owner_id,
            2,
            "paid",
            "Umbrella KK",
            "JPY",
            [{"description": "Support plan", "quantity": "1", "unit_price": 55000, "tax_rate": "10"}],
        ),
    ]
    conn.execute(insert(Invoice), rows)
    conn.execute(insert(InvoiceCounter).values(name=COUNTER, last=2))
