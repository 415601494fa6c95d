"""The application factory."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.types import ControllerRouterHandler

from atrium.platform.database import create_app_engine
from atrium.platform.errors import handle_unexpected, problem_details_config
from atrium.platform.health import health
from atrium.platform.middleware import TenancyPlugin, current_tenant
from atrium.platform.persistence import sqlalchemy_plugin
from atrium.platform.resolution import TenantResolver
from atrium.platform.settings import Settings, load_settings

API_VERSION = "0.1.0"


def tenant_route_handlers() -> list[ControllerRouterHandler]:
    """Every tenant-facing route package; each new area registers here."""
    return []


def create_app(
    settings: Settings | None = None,
    route_handlers: Sequence[ControllerRouterHandler] | None = None,
) -> Litestar:
    settings = settings or load_settings()
    engine = create_app_engine(settings)
    resolver = TenantResolver(engine, settings.base_domain, settings.redis_url, settings.tenant_cache_ttl)

    @asynccontextmanager
    async def tenant_invalidation(_app: Litestar) -> AsyncGenerator[None, None]:
        await resolver.start()
        try:
            yield
        finally:
            await resolver.stop()
            await engine.dispose()

    app = Litestar(
        route_handlers=[health, *tenant_route_handlers(), *(route_handlers or ())],
        plugins=[
            sqlalchemy_plugin(engine, settings.db_statement_timeout_ms),
            ProblemDetailsPlugin(problem_details_config()),
            TenancyPlugin(resolver),  # last: its middleware must end up first
        ],
        dependencies={"tenant": Provide(current_tenant, sync_to_thread=False)},
        exception_handlers={Exception: handle_unexpected},
        lifespan=[tenant_invalidation],
        openapi_config=OpenAPIConfig(
            title="Atrium",
            version=API_VERSION,
            description="Schema-per-tenant SaaS API. Every tenant is served at its own host.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
        ),
        request_max_body_size=settings.max_upload_bytes + 64 * 1024,
        debug=False,
    )
    app.state.settings = settings
    app.state.resolver = resolver
    return app


def create_app_from_env() -> Any:
    """Entry point for ASGI servers (``uvicorn --factory atrium.platform.app:create_app_from_env``)."""
    return create_app()
