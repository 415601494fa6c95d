"""Uploaded files, bytes included."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from atrium.tenants.base import TenantBase


class Media(TenantBase):
    __tablename__ = "media"

    # RESTRICT: a deleted user's media are handed to another user first (UserService.delete).
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    # Deferred: listing or reading metadata never loads the bytes.
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
