"""Bodies of /invoices (API.md §10). Money is integers in the currency's minor unit;
quantities and tax rates are decimal strings, never floats."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec

from atrium.platform.web.bodies import Schema
from atrium.platform.web.validation import describe_pattern
from atrium.tenants.identity.schemas import EMAIL_PATTERN
from atrium.tenants.invoices.rules import invoice_rules

Status = Literal["draft", "open", "paid", "void", "uncollectible"]
MAX_PRICE = 10**12
Quantity = Annotated[
    str,
    msgspec.Meta(
        pattern=describe_pattern(
            # A digit other than 0 somewhere: above 0. In the type, not a body rule, so that
            # each line's is named beside the other lines' errors.
            r"^(?=[0-9.]*[1-9])[0-9]{1,7}(\.[0-9]{1,4})?$",
            'must be a decimal string above 0 and below 10,000,000 with at most 4 decimals, e.g. "1.5"',
        ),
        description="A decimal string > 0 and below 10,000,000, with at most 4 decimals, e.g. `1.5`.",
    ),
]
TaxRate = Annotated[
    str,
    msgspec.Meta(
        pattern=describe_pattern(
            r"^(0?[0-9]{1,2}(\.[0-9]{1,4})?|100(\.0{1,4})?)$",
            'must be a percent from 0 to 100 as a decimal string, e.g. "20"',
        ),
        description="Percent, a decimal string 0-100, e.g. `20`.",
    ),
]
Currency = Annotated[
    str,
    msgspec.Meta(
        pattern=describe_pattern(r"^[A-Z]{3}$", "must be an ISO 4217 code in capitals, e.g. USD"),
        description="ISO 4217 code, e.g. `USD`.",
    ),
]
Email = Annotated[
    str,
    # The users' own rule: an address one would mail a user at is one to bill a customer at.
    msgspec.Meta(max_length=320, pattern=EMAIL_PATTERN),
]


class Item(Schema):
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    quantity: Quantity
    unit_price: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRICE, description="Minor units (cents for USD).")]
    tax_rate: TaxRate = "0"


Items = Annotated[list[Item], msgspec.Meta(min_length=1, max_length=200)]


class InvoiceRead(msgspec.Struct):
    id: uuid.UUID
    owner_id: uuid.UUID
    number: Annotated[
        str | None, msgspec.Meta(description="`INV-000001`...: set at finalize, gapless per tenant.")
    ]
    status: Status
    customer_name: str
    customer_email: str | None
    currency: str
    issue_date: datetime.date | None
    due_date: datetime.date | None
    notes: str | None
    items: list[dict[str, Any]]
    subtotal: Annotated[int, msgspec.Meta(description="Sum of the lines' rounded amounts, minor units.")]
    tax: Annotated[int, msgspec.Meta(description="Sum of the lines' rounded taxes, minor units.")]
    total: Annotated[int, msgspec.Meta(description="subtotal + tax, minor units.")]
    amount_paid: int
    amount_due: int
    created_at: datetime.datetime
    updated_at: datetime.datetime


class InvoiceCreate(Schema):
    """Totals are the server's: a body with `subtotal`, `tax` or `total` is refused (422)."""

    customer_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    currency: Currency
    items: Items
    customer_email: Email | None = None
    issue_date: datetime.date | None = None
    due_date: Annotated[datetime.date | None, msgspec.Meta(description="On or after issue_date.")] = None
    notes: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None
    owner_id: uuid.UUID | None = None

    body_rules = (invoice_rules,)


class InvoiceUpdate(Schema):
    """Only a draft changes (409 otherwise)."""

    customer_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    currency: Currency | msgspec.UnsetType = msgspec.UNSET
    items: Items | msgspec.UnsetType = msgspec.UNSET
    customer_email: Email | msgspec.UnsetType | None = msgspec.UNSET
    issue_date: datetime.date | msgspec.UnsetType | None = msgspec.UNSET
    due_date: datetime.date | msgspec.UnsetType | None = msgspec.UNSET
    notes: Annotated[str, msgspec.Meta(max_length=10000)] | msgspec.UnsetType | None = msgspec.UNSET
    owner_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET

    body_rules = (invoice_rules,)


class Payment(Schema):
    amount: Annotated[
        int | None, msgspec.Meta(description="Minor units; without it, the whole amount due.")
    ] = None
