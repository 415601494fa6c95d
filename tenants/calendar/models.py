"""Events, and each user's secret calendar-feed address."""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import search_index
from atrium.tenants.base import TenantBase, TenantTable, user_ids_column


class Event(TenantBase):
    __tablename__ = "events"
    __table_args__ = (
        # ``from``/``to`` and the occurrences: events whose series overlaps the window.
        Index("ix_events_span", "starts_at", "series_ends_at"),
        Index("ix_events_attendee_ids", "attendee_ids", postgresql_using="gin"),
        search_index("ix_events_search", "title", "description"),
    )

    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # The first occurrence, as instants; the zone gives them (and every later
    # occurrence) their wall-clock times.
    starts_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    ends_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    all_day: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    location: Mapped[str | None] = mapped_column(String(500))
    attendee_ids: Mapped[list[uuid.UUID]] = user_ids_column()
    recurrence: Mapped[str | None] = mapped_column(String(1000))
    # Server-set, never shown: when the last occurrence ends (far future for a series
    # without end), so a window finds an event's series by an index before expanding it.
    series_ends_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    # RESTRICT: a deleted user's events are handed to another user first.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)


class EventFeedToken(TenantTable):
    """A user's one calendar-feed token, as its SHA-256 (the token itself is never stored)."""

    __tablename__ = "event_feed_tokens"

    # CASCADE: a deleted user's feed goes with them. One row per user: a new token
    # replaces the old one.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now()
    )
