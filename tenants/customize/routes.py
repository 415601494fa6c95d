"""/customize: per-tenant customization documents."""

from __future__ import annotations

from typing import Any

from litestar import Router

from atrium.platform.web.resources import ResourceSpec, crud_router
from atrium.platform.web.services import CrudService
from atrium.tenants.customize.models import Customize
from atrium.tenants.customize.schemas import CustomizeCreate, CustomizeRead, CustomizeUpdate


class CustomizeService(CrudService[Customize]):
    model = Customize

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "tenant_id": self.tenant.id}


def customize_router() -> Router:
    return crud_router(
        ResourceSpec(
            "customize",
            CustomizeService,
            CustomizeRead,
            CustomizeCreate,
            CustomizeUpdate,
            description="The tenant's customization documents (free JSON).",
        )
    )
