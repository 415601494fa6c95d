"""Permission guards for route handlers."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from atrium.platform.security.callers import AuthUser
from atrium.platform.web.errors import problem


def requires(permission: str) -> Any:
    """A guard: the caller must hold ``permission`` (or ``*``); otherwise 403."""

    # async: a sync guard would be run in a worker thread on every request.
    async def guard(connection: ASGIConnection[Any, AuthUser, Any, Any], _: BaseRouteHandler) -> None:
        user = connection.user
        if not isinstance(user, AuthUser) or not user.can(permission):
            raise problem(403, f"This requires the permission {permission!r}.")

    guard.__name__ = f"requires_{permission.replace(':', '_').replace('-', '_')}"
    return guard
