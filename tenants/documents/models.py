"""Documents, every version of each, and their comments."""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ARRAY, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid, func, text
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import search_index
from atrium.tenants.base import TenantBase, TenantTable, utcnow

TITLE_MAX = 300
# The markdown body's limit, in UTF-8 bytes (API.md §7).
BODY_MAX_BYTES = 1024 * 1024


class Document(TenantBase):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_project_id", "project_id"),
        search_index("ix_documents_search", "title", "body"),
    )

    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    # CASCADE: a deleted project takes its documents with it, as it does its discussions.
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # Attachments. An array, not a link table: a document's media are read with the row.
    media_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), default=list, server_default="{}")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # RESTRICT: a deleted user's documents are handed to another user first.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)


class DocumentVersion(TenantTable):
    """The content of one version of a document, kept for ever (restore reads it back).

    Internal (no route of its own: /documents/{id}/versions serves it), and never
    changed once written, so without ``updated_at``.
    """

    __tablename__ = "document_versions"
    __table_args__ = (UniqueConstraint("document_id", "version", name="uq_document_versions_version"),)

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    body: Mapped[str] = mapped_column(Text)
    # Who wrote this version; null once that user is deleted (migration 0020). Not handed
    # over like owned rows: history must not credit the heir with edits they never made.
    editor_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=utcnow, server_default=func.now()
    )


class DocumentComment(TenantBase):
    __tablename__ = "document_comments"
    __table_args__ = (Index("ix_document_comments_document", "document_id", "created_at"),)

    # CASCADE: deleting a document deletes its comments (API.md §7).
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    document_version: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
