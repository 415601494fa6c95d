"""Forms and their responses."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import search_index
from atrium.tenants.base import TenantBase

STATUSES = ("draft", "open", "closed")


class Form(TenantBase):
    __tablename__ = "forms"
    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        search_index("ix_forms_search", "title", "description"),
    )

    # RESTRICT: a deleted user's forms are handed to another user first (UserService.delete).
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), server_default="draft", default="draft")
    public: Mapped[bool] = mapped_column(Boolean, server_default="false", default=False)
    # The field definitions as validated by fields.check_fields, in form order.
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    # Kept by the writes of form_responses, in their transaction.
    response_count: Mapped[int] = mapped_column(Integer, server_default="0", default=0)


class FormResponse(TenantBase):
    __tablename__ = "form_responses"
    __table_args__ = (
        # The CSV export reads a form's responses oldest first; lists filter by form.
        Index("ix_form_responses_form_created", "form_id", "created_at"),
    )

    # CASCADE: a form's responses are deleted with it.
    form_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forms.id", ondelete="CASCADE"))
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The form's version the answers were validated against.
    form_version: Mapped[int] = mapped_column(Integer)
    # The respondent; NULL for an anonymous (public) response. RESTRICT like every owner.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True, nullable=True
    )
