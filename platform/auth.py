"""Bearer tokens (``litestar.security.jwt``), revocation, and permission guards.

A token carries the user id (``sub``), the id of the tenant that issued it (``tid``), a
unique id (``jti``) and an expiry. It is refused (401) on any other tenant, after
logout (its ``jti`` is kept in the revocation store until it would expire anyway),
once its user is deleted, and when expired or malformed.

The user and their effective permissions (the union of the roles linked through their
``user_meta`` rows) are loaded once per request, in one query, inside the request's
own tenant-bound transaction.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.security.jwt import JWTAuth, Token
from litestar.stores.base import Store
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.errors import problem
from atrium.platform.middleware import TENANT_STATE_KEY
from atrium.platform.permissions import grants
from atrium.platform.resolution import ResolvedTenant

PUBLIC_PATHS = ["/health", "/schema", "/auth/login"]
# Route option of handlers whose request body may stream in slowly (uploads).
RELEASE_BEFORE_BODY = "release_db_before_body"


@dataclass(frozen=True, slots=True)
class AuthUser:
    id: uuid.UUID
    name: str
    email: str
    phone: str
    created_at: datetime.datetime
    updated_at: datetime.datetime
    roles: list[str] = field(default_factory=list)
    permissions: frozenset[str] = frozenset()

    def can(self, permission: str) -> bool:
        return grants(self.permissions, permission)


_USER_WITH_PERMISSIONS = text(
    """
    SELECT u.id, u.name, u.email, u.phone, u.created_at, u.updated_at,
           coalesce(array_agg(DISTINCT r.name) FILTER (WHERE r.name IS NOT NULL), '{}') AS roles,
           coalesce(array_agg(DISTINCT p.perm) FILTER (WHERE p.perm IS NOT NULL), '{}') AS permissions
    FROM users u
    LEFT JOIN user_meta m ON m.owner_id = u.id
    LEFT JOIN user_roles r ON r.id = m.user_roles
    LEFT JOIN LATERAL unnest(r.permissions) AS p(perm) ON true
    WHERE u.id = :user_id
    GROUP BY u.id
    """
)


async def load_auth_user(session: AsyncSession, user_id: uuid.UUID) -> AuthUser | None:
    row = (await session.execute(_USER_WITH_PERMISSIONS, {"user_id": user_id})).one_or_none()
    if row is None:
        return None
    return AuthUser(
        row.id,
        row.name,
        row.email,
        row.phone,
        row.created_at,
        row.updated_at,
        sorted(row.roles),
        frozenset(row.permissions),
    )


def connection_tenant(connection: ASGIConnection[Any, Any, Any, Any]) -> ResolvedTenant | None:
    return connection.scope.get("state", {}).get(TENANT_STATE_KEY)


def revocation_key(tenant_id: uuid.UUID | str, jti: str) -> str:
    return f"{tenant_id}:{jti}"


class TokenAuth:
    """Builds the ``JWTAuth`` config and owns the revocation store."""

    def __init__(
        self,
        secret: str,
        ttl_seconds: int,
        revocations: Store,
        session_provider: Any,
    ) -> None:
        self.revocations = revocations
        self.session_provider = session_provider
        self.ttl = datetime.timedelta(seconds=ttl_seconds)
        self.jwt = JWTAuth[AuthUser, Token](
            token_secret=secret,
            retrieve_user_handler=self.retrieve_user,
            revoked_token_handler=self.is_revoked,
            default_token_expiration=self.ttl,
            exclude=PUBLIC_PATHS,
            require_claims=["exp", "sub", "jti"],
            description="Bearer token from POST /auth/login; valid only on the tenant that issued it.",
        )

    def issue(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> str:
        return self.jwt.create_token(
            identifier=str(user_id),
            token_expiration=self.ttl,
            token_unique_jwt_id=uuid.uuid4().hex,
            token_extras={"tid": str(tenant_id)},
        )

    async def retrieve_user(
        self, token: Token, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthUser | None:
        tenant = connection_tenant(connection)
        if tenant is None or token.extras.get("tid") != str(tenant.id):
            return None
        try:
            user_id = uuid.UUID(token.sub)
        except ValueError:
            return None
        session = self.session_provider(connection.app.state, connection.scope)
        user = await load_auth_user(session, user_id)
        if connection.route_handler.opt.get(RELEASE_BEFORE_BODY):
            # The body (an upload) is read after authentication and may arrive slowly:
            # give the connection back meanwhile; the handler's transaction binds anew.
            await session.commit()
        return user

    async def is_revoked(self, token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        tid, jti = token.extras.get("tid"), token.jti
        if not isinstance(tid, str) or not isinstance(jti, str):
            return True
        return await self.revocations.exists(revocation_key(tid, jti))

    async def revoke(self, token: Token) -> None:
        remaining = int((token.exp - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1
        if remaining > 0 and isinstance(token.jti, str):
            await self.revocations.set(
                revocation_key(token.extras["tid"], token.jti), b"1", expires_in=remaining
            )


def requires(permission: str) -> Any:
    """A guard: the caller must hold ``permission`` (or ``*``); otherwise 403."""

    # async: a sync guard would be run in a worker thread on every request.
    async def guard(connection: ASGIConnection[Any, AuthUser, Any, Any], _: BaseRouteHandler) -> None:
        user = connection.user
        if not isinstance(user, AuthUser) or not user.can(permission):
            raise problem(403, f"This requires the permission {permission!r}.")

    guard.__name__ = f"requires_{permission.replace(':', '_').replace('-', '_')}"
    return guard
