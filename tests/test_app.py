"""The app factory's wiring."""

from __future__ import annotations

from atrium.platform.app import create_app
from atrium.platform.middleware import TenantMiddleware
from atrium.platform.settings import Settings


def test_tenant_middleware_runs_first(settings: Settings) -> None:
    app = create_app(settings)
    assert isinstance(app.middleware[0], TenantMiddleware)
    assert not any(isinstance(m, TenantMiddleware) for m in app.middleware[1:])
