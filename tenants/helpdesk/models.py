"""Help-desk tickets and their replies."""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ARRAY, Computed, ForeignKey, Index, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import search_index
from atrium.tenants.base import TenantBase

STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
# ``?sort=priority`` orders by urgency, not by the words' alphabet.
_PRIORITY_RANK = (
    "CASE priority " + " ".join(f"WHEN '{p}' THEN {i}" for i, p in enumerate(PRIORITIES)) + " END"
)


class Ticket(TenantBase):
    __tablename__ = "tickets"
    __table_args__ = (
        search_index("ix_tickets_search", "subject", "body"),
        Index("ix_tickets_tags", "tags", postgresql_using="gin"),
        # An agent's queue by status, newest first: the list the help desk reads most.
        Index("ix_tickets_assignee_status", "assignee_id", "status", "created_at"),
    )
    # Generated columns (requester_id, priority_rank) come back with every INSERT and
    # UPDATE: read later, they would need a lazy load, which asyncio forbids.
    __mapper_args__ = {"eager_defaults": True}

    # The requester. RESTRICT: a deleted user's rows are handed on first (UserService.delete).
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    # API.md §10 names the requester ``requester_id``; it is the owner, always.
    requester_id: Mapped[uuid.UUID] = mapped_column(Computed("owner_id", persisted=True))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[str] = mapped_column(String(20), default="new", server_default="new")
    priority: Mapped[str] = mapped_column(String(10), default="normal", server_default="normal")
    priority_rank: Mapped[int] = mapped_column(SmallInteger, Computed(_PRIORITY_RANK, persisted=True))
    # RESTRICT: a deleted agent's tickets go to the user their rows go to (UserService.delete).
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    # RESTRICT: a closed ticket with follow-ups stays (delete answers 409, naming them).
    follow_up_of: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="RESTRICT"), index=True
    )
    solved_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    closed_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True))


class TicketReply(TenantBase):
    __tablename__ = "ticket_replies"
    __table_args__ = (
        Index("ix_ticket_replies_ticket", "ticket_id", "created_at"),
        search_index("ix_ticket_replies_search", "body"),
    )

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    # The author.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    body: Mapped[str] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(10))
