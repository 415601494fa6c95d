"""Chat rooms, their messages and each member's read marker (API.md §9)."""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    ARRAY,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from atrium.tenants.base import HOLDS_OWNER, TenantBase, TenantTable

KINDS = ("group", "direct")


class Chat(TenantBase):
    __tablename__ = "chats"
    __table_args__ = (
        # Visibility (``member_ids @> ARRAY[caller]``).
        Index("ix_chats_member_ids", "member_ids", postgresql_using="gin"),
        # One direct room per pair: the pair's two ids, smaller first.
        Index("uq_chats_direct_pair", "direct_pair", unique=True, postgresql_where=text("kind = 'direct'")),
        CheckConstraint("kind IN ('group', 'direct')", name="kind"),
        CheckConstraint("(kind = 'direct') = (direct_pair IS NOT NULL)", name="direct_pair_on_direct"),
    )

    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10), default="group", server_default="group")
    # Who sees the room and receives its events; the owner (its creator) always among them.
    # An array, as projects' members: visibility is one indexed condition on the row.
    # Not cleaned of deleted users (a room keeps who was in it); a group room handed to an
    # heir gains them as a member, as its owner always is.
    member_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), default=list, server_default="{}", info={HOLDS_OWNER: ("kind", "group")}
    )
    direct_pair: Mapped[str | None] = mapped_column(String(80))
    # The per-room message counter: a post increments it in its own transaction, taking the
    # row's lock, so concurrent posts queue and each gets the next seq.
    last_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_message_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    # RESTRICT: a deleted user's rooms are handed to another user first.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)

    # Per caller, computed on reads (routes.UNREAD_COUNT); the service sets it on the rows
    # it writes. A plain attribute, not a column.
    unread_count = 0
    # Set when a direct room's create found the pair's room already there (200, not 201).
    existing = False


class ChatMessage(TenantBase):
    __tablename__ = "chat_messages"
    __table_args__ = (
        UniqueConstraint("chat_id", "seq", name="uq_chat_messages_chat_id_seq"),
        Index("ix_chat_messages_parent_id", "parent_id"),
    )

    # CASCADE: a deleted room takes its messages with it.
    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    # A top-level message of the same room: threads are one level deep.
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("chat_messages.id", ondelete="CASCADE"))
    # RESTRICT: a deleted user's messages are handed to another user first.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    edited_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class ChatMarker(TenantTable):
    """A member's read marker in a room: the highest seq they have read."""

    __tablename__ = "chat_reads"

    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    # CASCADE: a deleted user's markers go with them (nothing else points at them).
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
