"""Every tenant-facing router; a new area registers its routers here."""

from __future__ import annotations

from litestar import Router

from atrium.tenants.customize.routes import customize_router
from atrium.tenants.identity.auth_routes import auth_router
from atrium.tenants.identity.routes import identity_routers


def tenant_routers() -> list[Router]:
    return [auth_router, *identity_routers(), customize_router()]
