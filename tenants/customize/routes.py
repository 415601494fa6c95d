"""/customize: per-tenant customization documents."""

from __future__ import annotations

from typing import Any

from atrium.platform.web.resources import ResourceSpec
from atrium.platform.web.services import CrudService
from atrium.tenants.customize.models import Customize
from atrium.tenants.customize.schemas import CustomizeCreate, CustomizeRead, CustomizeUpdate


class CustomizeService(CrudService[Customize]):
    model = Customize

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "tenant_id": self.tenant.id}


CUSTOMIZE = ResourceSpec(
    "customize",
    CustomizeService,
    CustomizeRead,
    CustomizeCreate,
    CustomizeUpdate,
    sort=["updated_at"],
    description="The tenant's customization documents (free JSON).",
)
