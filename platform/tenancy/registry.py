"""The platform registry: tenants and their custom domains, in the shared schema.

Shared tables are always schema-qualified (``platform.tenants``): a tenant
transaction's ``search_path`` holds only the tenant's schema, so tenant code cannot
reach them by accident.
"""

from __future__ import annotations

import datetime
import enum
import uuid

from advanced_alchemy.base import CommonTableAttributes, create_registry
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import CheckConstraint, ForeignKey, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from atrium.platform.tenancy.naming import PLATFORM_SCHEMA

platform_registry = create_registry()
platform_registry.metadata.schema = PLATFORM_SCHEMA


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    # Marked and announced before the schema is dropped: from then on the tenant's hosts
    # answer 404, so no request starts on a schema about to vanish.
    DELETING = "deleting"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class PlatformBase(CommonTableAttributes, DeclarativeBase):
    __abstract__ = True
    registry = platform_registry

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()"), sort_order=-100
    )
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=_utcnow, server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True),
        default=_utcnow,
        onupdate=_utcnow,
        server_default=func.now(),
        nullable=False,
    )


class Tenant(PlatformBase):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint("status in ('active', 'suspended', 'deleting')", name="status_valid"),)

    slug: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    schema_name: Mapped[str] = mapped_column(String(63), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.ACTIVE, server_default="active")
    # The owner user inside the tenant's schema (no foreign key can cross schemas here).
    owner_id: Mapped[uuid.UUID | None] = mapped_column()
    # The tenant schema's Alembic revision, written in the same transaction that
    # migrates the schema, so "who is behind head" is one query on this table.
    version: Mapped[str | None] = mapped_column(String(64), index=True)

    domains: Mapped[list[TenantDomain]] = relationship(
        back_populates="tenant",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TenantDomain.domain",
    )


class TenantDomain(PlatformBase):
    __tablename__ = "tenant_domains"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)

    tenant: Mapped[Tenant] = relationship(back_populates="domains")


platform_metadata = platform_registry.metadata
