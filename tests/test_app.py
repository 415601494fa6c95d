"""The app factory's wiring."""

from __future__ import annotations

from litestar.middleware.base import DefineMiddleware
from litestar.security.jwt.middleware import JWTAuthenticationMiddleware

from atrium.platform.app import create_app
from atrium.platform.settings import Settings
from atrium.platform.tenancy.middleware import TenantMiddleware


def test_tenant_middleware_runs_first_then_authentication(settings: Settings) -> None:
    app = create_app(settings)
    kinds = [m.middleware if isinstance(m, DefineMiddleware) else type(m) for m in app.middleware]
    assert kinds[0] is TenantMiddleware
    assert kinds.count(TenantMiddleware) == 1
    auth = [
        i
        for i, kind in enumerate(kinds)
        if isinstance(kind, type) and issubclass(kind, JWTAuthenticationMiddleware)
    ]
    assert auth == [1], kinds
