"""Forums and their discussions: topics and replies."""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import search_index
from atrium.tenants.base import TenantBase
from atrium.tenants.discussions import DiscussionColumns, shape_constraint

# A topic's latest activity: its latest reply, or its creation. The same expression in
# the list's order (routes.py) and in the index that serves it.
ACTIVITY_SQL = "coalesce(last_reply_at, created_at)"


class Forum(TenantBase):
    __tablename__ = "forums"
    __table_args__ = (Index("uq_forums_name_lower", text("lower(name)"), unique=True),)

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # RESTRICT: a deleted user's forums are handed to another user first.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)


class ForumDiscussion(DiscussionColumns, TenantBase):
    __tablename__ = "forum_discussions"
    __table_args__ = (
        shape_constraint("forum_discussions"),
        # A forum's topics: pinned first, then by latest activity (the list's default order).
        Index(
            "ix_forum_discussions_topics",
            "forum_id",
            text("pinned DESC"),
            text(f"{ACTIVITY_SQL} DESC"),
            text("id DESC"),
            postgresql_where=text("parent_id IS NULL"),
        ),
        Index("ix_forum_discussions_parent", "parent_id", "created_at"),
        search_index("ix_forum_discussions_search", "title", "body"),
    )

    # CASCADE: a deleted forum takes its discussions with it.
    forum_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forums.id", ondelete="CASCADE"))
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
