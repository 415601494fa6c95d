"""The application factory."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, route
from litestar.di import Provide
from litestar.enums import HttpMethod
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.types import ControllerRouterHandler

from atrium.platform.database import create_app_engine
from atrium.platform.errors import handle_unexpected, problem, problem_details_config
from atrium.platform.health import health
from atrium.platform.middleware import TenancyPlugin, current_tenant
from atrium.platform.persistence import sqlalchemy_plugin
from atrium.platform.resolution import TenantResolver
from atrium.platform.settings import Settings, load_settings

API_VERSION = "0.1.0"


@route(
    ["/", "/{path:path}"],
    http_method=list(HttpMethod),
    include_in_schema=False,
    name="not-found",
)
async def not_found() -> None:
    """Unmatched paths pass through the tenant middleware like any route.

    Without this, Litestar answers an unknown path before any middleware runs, and a
    suspended or unknown tenant's host would get a plain 404 instead of its problem.
    """
    raise problem(404, "Nothing is served at this path.")


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
        route_handlers=[health, *tenant_route_handlers(), *(route_handlers or ()), not_found],
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
    app.state.engine = engine
    return app


def create_app_from_env() -> Any:
    """Entry point for ASGI servers (``uvicorn --factory atrium.platform.app:create_app_from_env``)."""
    return create_app()
