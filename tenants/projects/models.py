"""Projects, with their members, and their message boards' discussions."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import search_index
from atrium.tenants.base import TenantBase, user_ids_column
from atrium.tenants.discussions import DiscussionColumns, shape_constraint

STATUSES = ("active", "archived")


class Project(TenantBase):
    __tablename__ = "projects"
    __table_args__ = (
        Index("uq_projects_name_lower", text("lower(name)"), unique=True),
        # Visibility (``member_ids @> ARRAY[caller]``) and ``?member_id=`` (``&&``).
        Index("ix_projects_member_ids", "member_ids", postgresql_using="gin"),
        CheckConstraint("status IN ('active', 'archived')", name="status"),
        search_index("ix_projects_search", "name", "description"),
    )

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    # Who sees the project (and its discussions): the owner always among them. An array,
    # not a link table: visibility is one indexed condition on the row itself.
    member_ids: Mapped[list[uuid.UUID]] = user_ids_column(holds_owner=True)
    # RESTRICT: a deleted user's projects are handed to another user first.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)


class ProjectDiscussion(DiscussionColumns, TenantBase):
    __tablename__ = "project_discussions"
    __table_args__ = (
        shape_constraint("project_discussions"),
        # A project's discussions newest first, a thread's replies oldest first.
        Index("ix_project_discussions_project", "project_id", "created_at"),
        Index("ix_project_discussions_parent", "parent_id", "created_at"),
        search_index("ix_project_discussions_search", "title", "body"),
    )

    # CASCADE: a deleted project takes its discussions with it.
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
