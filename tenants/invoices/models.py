"""Invoices, and the per-tenant counter their numbers come from."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Computed, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import email_words, search_index
from atrium.tenants.base import TenantBase, TenantTable

STATUSES = ("draft", "open", "paid", "void", "uncollectible")


class Invoice(TenantBase):
    __tablename__ = "invoices"
    __table_args__ = (
        # ``q``: a customer quotes the number; notes and lines hold what a reader looks for (a PO,
        # a product).
        search_index(
            "ix_invoices_search",
            "number",
            "customer_name",
            "customer_email",
            "customer_email_words",
            "notes",
            "item_descriptions",
        ),
        Index("ix_invoices_status", "status", "created_at"),
        Index("ix_invoices_issue_date", "issue_date"),
        # The database's own word that a payment never exceeds what is owed.
        CheckConstraint("amount_paid >= 0 AND amount_paid <= total", name="amount_paid_within_total"),
    )
    # The generated amount_due comes back with every write: read later it would need a
    # lazy load, which asyncio forbids.
    __mapper_args__ = {"eager_defaults": True}

    # Who made it. RESTRICT: a deleted user's rows are handed on first (UserService.delete).
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    # Unique: the constraint that holds even if the counter were ever bypassed.
    number: Mapped[str | None] = mapped_column(String(20), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="draft", server_default="draft")
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[datetime.date | None] = mapped_column(Date)
    due_date: Mapped[datetime.date | None] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(Text)
    # The lines as sent (quantity and tax rate as decimal strings), in order.
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    amount_due: Mapped[int] = mapped_column(BigInteger, Computed("total - amount_paid", persisted=True))
    # The lines' descriptions as one text, kept by the server, for ``q`` to search. Added by
    # migration 0018 after the audit columns, so placed after them here too (sort_order).
    item_descriptions: Mapped[str] = mapped_column(
        Text,
        Computed("jsonb_path_query_array(items, '$[*].description')::text", persisted=True),
        sort_order=4000,
    )
    # The customer's email as words, for ``q`` (listing.email_words; migration 0019).
    customer_email_words: Mapped[str | None] = mapped_column(
        Text, Computed(email_words("customer_email"), persisted=True), deferred=True, sort_order=4001
    )


class InvoiceCounter(TenantTable):
    """The last number given, per sequence (one row, ``invoices``).

    Finalizing increments it in its own transaction, so the row stays locked until that
    transaction ends: concurrent finalizes wait their turn, and a finalize that rolls back
    gives its number back. A PostgreSQL sequence would skip numbers on rollback.
    """

    __tablename__ = "invoice_counters"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)
