"""The tenant middleware: Host header → tenant, before anything else runs.

It must run before authentication (which needs the tenant to check a token), for
HTTP and websockets alike. Litestar's auth middleware inserts itself at index 0 of
the app's middleware list, so ``TenancyPlugin`` inserts this middleware at index 0
after every other ``on_app_init`` hook has run; tests/test_app.py asserts the order.

Hosts are validated here rather than with Litestar's ``AllowedHostsConfig``, which
mishandles hosts with ports (litestar issue 4869).
"""

from __future__ import annotations

from contextvars import Token
from typing import Any, cast

import msgspec
from litestar import Litestar
from litestar._asgi.utils import is_valid_host
from litestar.config.app import AppConfig
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins import InitPlugin
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.types import ASGIApp, Receive, Scope, Send

from atrium.platform.db.affinity import affinity
from atrium.platform.tenancy.naming import is_ip_literal, normalize_host
from atrium.platform.tenancy.resolution import ResolvedTenant, TenantResolver
from atrium.platform.web.errors import problem

TENANT_STATE_KEY = "atrium_tenant"
# Served on every host, the apex included, without resolving a tenant.
HEALTH_PATH = "/health"
PLATFORM_PATHS = (HEALTH_PATH, "/schema")


def is_platform_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PLATFORM_PATHS)


def host_headers(scope: Scope) -> list[str]:
    """Every Host header line of the request (ASGI servers pass repeated lines through)."""
    return [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"host"]


# The ASGI extension that lets a server answer a websocket handshake with an HTTP response.
DENIAL = "websocket.http.response"


async def deny_handshake(send: Send, refused: ProblemDetailsException) -> None:
    """Answer a refused websocket handshake with its problem, as an HTTP request gets it.

    Litestar closes a websocket its middleware refuses, which the server turns into a bare
    403 for every cause; the denial extension (uvicorn has it) sends the real status and
    problem instead: 400 invalid-host, 404 tenant-not-found, 403 tenant-suspended."""
    # Litestar's own rendering of the problem; it never reads the request.
    answer = refused.to_response(cast(Any, None))
    body = msgspec.json.encode(answer.content)
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "websocket.http.response.start", "status": refused.status_code, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


class TenantMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, resolver: TenantResolver) -> None:
        self.resolver = resolver

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        try:
            bound = await self._bind(scope)
        except ProblemDetailsException as refused:
            if scope["type"] != ScopeType.WEBSOCKET or DENIAL not in (scope.get("extensions") or {}):
                raise
            await deny_handshake(send, refused)
            return
        try:
            await next_app(scope, receive, send)
        finally:
            if bound is not None:
                affinity.reset(bound)

    async def _bind(self, scope: Scope) -> Token[str | None] | None:
        """The tenant of the request's Host, kept in its scope and bound as the connection
        affinity (None on platform paths); a problem when the Host serves none."""
        hosts = host_headers(scope)
        if len(hosts) > 1 or (hosts and "," in hosts[0]):
            # RFC 9112 §3.2: a request with several Host lines is refused, whether or not
            # they agree, since servers and proxies may each pick a different one; a comma
            # is how a proxy joins repeated lines into one (RFC 9110 §5.3).
            raise problem(400, "The Host header is sent more than once.", type_="invalid-host")
        raw = hosts[0] if hosts else None
        parsed = normalize_host(raw)
        platform_path = is_platform_path(scope["path"])
        # Load balancers and orchestrators probe platform routes by address; /health answers
        # on any Host, and without one (an HTTP/1.0 check sends none), as API.md §1 says.
        if parsed is None and not (scope["path"] == HEALTH_PATH or (platform_path and is_ip_literal(raw))):
            raise problem(
                400, "The Host header is missing or is not a valid host name.", type_="invalid-host"
            )
        bound = None
        if not platform_path and parsed is not None:
            host = parsed[0]
            if self.resolver.is_apex(host):
                raise problem(404, "This host serves platform routes only.")
            tenant = await self.resolver.resolve(host)
            if tenant is None or tenant.deleting:
                raise problem(404, "No tenant is served at this host.", type_="tenant-not-found")
            if tenant.suspended:
                raise problem(403, "This tenant is suspended.", type_="tenant-suspended")
            scope.setdefault("state", {})[TENANT_STATE_KEY] = tenant
            # The tenant's transactions keep to its own pooled connections (connection_affinity).
            bound = affinity.set(tenant.schema)
        return bound


def scope_tenant(scope: Scope) -> ResolvedTenant | None:
    """The tenant the middleware resolved for this connection (None on platform paths)."""
    return scope.get("state", {}).get(TENANT_STATE_KEY)


def current_tenant(scope: Scope) -> ResolvedTenant:
    """The tenant the middleware resolved; HTTP and websocket handlers get it as a dependency."""
    tenant = scope_tenant(scope)
    if tenant is None:  # only reachable if a platform path declared a tenant dependency
        raise problem(404, "No tenant is served at this host.", type_="tenant-not-found")
    return tenant


def _unparsed(host: bytes) -> bytes:
    return b"," if b"," in host else b""


def let_the_middleware_judge_hosts(app: Litestar) -> None:
    """Litestar's router refuses a Host its own pattern rejects (a space, a control
    character, a quote) with a 400 "bad-request" of its own, before any middleware runs:
    ``GET /health`` would not answer on such a Host (API.md §1), and other routes would
    answer another problem than every other invalid Host. Such a Host line is handed on
    empty instead, so the router lets it through and ``TenantMiddleware`` answers it as it
    answers any invalid Host. A repeated Host stays repeated, and refused: several lines
    stay several, and one that joins them with a comma keeps a comma."""
    inner = app.asgi_handler

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers")
        if headers and not all(is_valid_host(value) for name, value in headers if name == b"host"):
            scope["headers"] = [
                (name, _unparsed(value) if name == b"host" and not is_valid_host(value) else value)
                for name, value in headers
            ]
        await inner(scope, receive, send)

    app.asgi_handler = handler


class TenancyPlugin(InitPlugin):
    """Puts the tenant middleware first, ahead of any auth middleware."""

    def __init__(self, resolver: TenantResolver) -> None:
        self.resolver = resolver

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, TenantMiddleware(self.resolver))
        return app_config
