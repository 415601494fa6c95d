"""The application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Request, route
from litestar.di import Provide
from litestar.enums import HttpMethod
from litestar.exceptions import ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.types import ControllerRouterHandler

from atrium.platform.db.engines import create_app_engine
from atrium.platform.db.read_transaction import release_on_response
from atrium.platform.db.sessions import sqlalchemy_config
from atrium.platform.live import channels_plugin
from atrium.platform.security.caller_cache import CallerCache, CallerInvalidation
from atrium.platform.security.callers import CALLER_TABLES
from atrium.platform.security.login_throttle import LoginThrottle
from atrium.platform.security.tokens import TokenAuth
from atrium.platform.settings import Settings, load_settings
from atrium.platform.stores import app_stores
from atrium.platform.tenancy.middleware import TenancyPlugin, current_tenant, let_the_middleware_judge_hosts
from atrium.platform.tenancy.resolution import TenantResolver
from atrium.platform.web.bodies import JSON_BODY_LIMIT, check_body
from atrium.platform.web.docs import docs_assets_router
from atrium.platform.web.errors import (
    handle_unexpected,
    problem,
    problem_details_config,
    too_large_problem,
    validation_problem,
)
from atrium.platform.web.health import health, health_head
from atrium.platform.web.idempotency import check_idempotency_key
from atrium.platform.web.openapi import finish_openapi, openapi_config
from atrium.platform.web.query import refuse_unread_query
from atrium.platform.web.resources import read_transaction_provider
from atrium.tenants.areas import tenant_routers


@route(
    ["/", "/{path:path}"],
    http_method=list(HttpMethod),
    include_in_schema=False,
    name="not-found",
    exclude_from_auth=True,
)
async def not_found() -> None:
    """Unmatched paths pass through the tenant middleware like any route.

    Without this, Litestar answers an unknown path before any middleware runs, and a
    suspended or unknown tenant's host would get a plain 404 instead of its problem.
    """
    raise problem(404, "Nothing is served at this path.")


def _value(value: Any) -> Provide:
    """A dependency that is always ``value``: made once per app, handed to handlers."""
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


async def check_request(request: Request[Any, Any, Any]) -> None:
    """What every request is held to before its handler reads a parameter: no query string
    where the route reads none, the body's type and depth, and the Idempotency-Key header.

    A ``before_request`` hook, not app-wide guards: Litestar hands every guard a fresh copy
    of the route handler on every request, which cost every request a copy per guard and
    left no stable handler to remember what it reads (a cache keyed by the copies grew with
    every request; bench/RESULTS.md).
    """
    refuse_unread_query(request)
    await check_body(request)
    check_idempotency_key(request)


def create_app(
    settings: Settings | None = None,
    route_handlers: Sequence[ControllerRouterHandler] | None = None,
    login_throttle: LoginThrottle | None = None,
) -> Litestar:
    """The app, with everything its handlers use made here and injected.

    ``login_throttle`` replaces the throttle over the app's store (the login timing
    benchmark runs without limits).
    """
    settings = settings or load_settings()
    engine = create_app_engine(settings)
    resolver = TenantResolver(engine, settings.base_domain, settings.redis_url, settings.tenant_cache_ttl)
    callers = CallerCache()
    db_config = sqlalchemy_config(
        engine,
        settings.db_statement_timeout_ms,
        CallerInvalidation(callers, resolver, CALLER_TABLES),
    )
    stores = app_stores(settings.redis_url)
    token_auth = TokenAuth(
        settings.secret_key,
        settings.token_ttl_seconds,
        engine,
        settings.db_statement_timeout_ms,
        callers,
        lambda: resolver.ttl_while_live(settings.caller_cache_ttl),
        # An expired caller serves one more TTL while reloaded, only while changes arrive.
        lambda: settings.caller_cache_ttl if resolver.subscribed else 0.0,
    )

    @asynccontextmanager
    async def tenant_invalidation(_app: Litestar) -> AsyncGenerator[None, None]:
        await resolver.start()
        try:
            yield
        finally:
            await token_auth.stop()
            await resolver.stop()
            await stores.close()
            await engine.dispose()

    routers = tenant_routers(settings)
    live = channels_plugin(settings)
    app = Litestar(
        route_handlers=[
            health,
            health_head,
            docs_assets_router(),
            *routers,
            *(route_handlers or ()),
            not_found,
        ],
        on_app_init=[token_auth.jwt.on_app_init],
        plugins=[
            SQLAlchemyPlugin(config=db_config),
            ProblemDetailsPlugin(problem_details_config()),
            live,
            TenancyPlugin(resolver),  # last: its middleware must end up first
        ],
        dependencies={
            "tenant": Provide(current_tenant, sync_to_thread=False),
            "reads": Provide(read_transaction_provider(engine, settings.db_statement_timeout_ms)),
            "settings": _value(settings),
            "token_auth": _value(token_auth),
            "login_throttle": _value(login_throttle or LoginThrottle(stores.login_attempts)),
            # The same shared counters, for limits of other kinds (anonymous form posts).
            "attempt_counter": _value(stores.login_attempts),
        },
        before_request=check_request,
        exception_handlers={
            Exception: handle_unexpected,
            ValidationException: validation_problem,
            RequestEntityTooLarge: too_large_problem,
        },
        before_send=[release_on_response],
        lifespan=[tenant_invalidation],
        openapi_config=openapi_config(settings),
        request_max_body_size=JSON_BODY_LIMIT,
        debug=False,
    )
    finish_openapi(app, routers)
    let_the_middleware_judge_hosts(app)
    # Never read by the app (its parts are injected): tests, probes and benchmarks
    # inspect a running app's parts through these.
    app.state.settings = settings
    app.state.resolver = resolver
    app.state.engine = engine
    app.state.token_auth = token_auth
    app.state.channels = live
    return app


def create_app_from_env() -> Any:
    """Entry point for ASGI servers (``uvicorn --factory atrium.platform.app:create_app_from_env``)."""
    app = create_app()
    # Everything built so far (modules, routes, the OpenAPI schema: ~160,000 objects) lives
    # as long as the process. Left to the collector, each full collection walked them all
    # and stopped the worker for 65-100 ms (bench/RESULTS.md, eighth pass); frozen, they
    # are never walked again.
    gc.collect()
    gc.freeze()
    return app
