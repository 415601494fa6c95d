"""Per-tenant customization documents."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from atrium.tenants.base import TenantBase


class Customize(TenantBase):
    __tablename__ = "customize"

    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}", default=dict)
    # Always the current tenant's registry id, set by the server. No foreign key into
    # the shared schema: tenant schemas stay movable as a whole (Citus schema sharding).
    tenant_id: Mapped[uuid.UUID] = mapped_column()
