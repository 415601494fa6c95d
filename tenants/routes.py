"""Every tenant-facing router; a new area registers its routers here."""

from __future__ import annotations

from litestar import Router

from atrium.platform.settings import Settings
from atrium.tenants.customize.routes import customize_router
from atrium.tenants.identity.auth_routes import auth_router
from atrium.tenants.identity.routes import identity_routers
from atrium.tenants.media.routes import media_router


def tenant_routers(settings: Settings) -> list[Router]:
    return [auth_router, *identity_routers(), customize_router(), media_router(settings.max_upload_bytes)]
