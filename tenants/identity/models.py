"""Users, their groups and roles, and the user-meta rows that link them."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ARRAY, Computed, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from atrium.platform.web.listing import email_words, search_index
from atrium.tenants.base import TenantBase


class User(TenantBase):
    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
        # ``q`` on /users searches names and emails (platform/web/listing.py), an email both
        # whole and by its parts.
        search_index("ix_users_search", "name", "email", "email_words"),
    )

    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str] = mapped_column(String(50))
    # The bcrypt hash; the seed calls the column `password`. Never serialised.
    password: Mapped[str] = mapped_column(String(100))
    # Token id -> expiry (Unix seconds) of this user's logged-out tokens, until they would
    # have expired anyway (atrium.platform.security.callers). On the user's row because every request
    # checks it and the user's row is read anyway: one relation per tenant fewer for each
    # PostgreSQL backend to keep (migration 0004). Deferred: the ORM never loads it, and
    # it is in no response body. Last, where migration 0004 added it.
    revoked_token_ids: Mapped[dict[str, int]] = mapped_column(
        JSONB, server_default="{}", default=dict, deferred=True, sort_order=4000
    )
    # Tokens issued before it (their ``iat_ms`` claim) are refused: set by a
    # password change, which signs the user out everywhere (migration 0017). Deferred
    # and in no response body, like the ids above.
    tokens_valid_after: Mapped[datetime.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), deferred=True, sort_order=4001
    )
    # The email's parts as words (``EMAIL_WORDS``), for ``q``: PostgreSQL's parser reads an
    # email as one word, so ``q=acme`` would not find ``bob@acme.com``. Kept by the
    # database, deferred and in no response body (migration 0019).
    email_words: Mapped[str] = mapped_column(
        Text, Computed(email_words("email"), persisted=True), deferred=True, sort_order=4002
    )


# Every ``owner_id`` but user-meta's is RESTRICT: a user's rows are handed to another
# user before the user is deleted (UserService.delete), never left without an owner.


class UserGroup(TenantBase):
    __tablename__ = "user_groups"

    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)


class UserRole(TenantBase):
    __tablename__ = "user_roles"

    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    permissions: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}", default=list)


class UserMeta(TenantBase):
    __tablename__ = "user_meta"

    # CASCADE: a user's links are theirs alone and go with them.
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # A group or role still linked here cannot be deleted (RESTRICT, answered 409).
    user_groups: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_groups.id", ondelete="RESTRICT"), index=True
    )
    user_roles: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_roles.id", ondelete="RESTRICT"), index=True
    )
    uniq_customize: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
