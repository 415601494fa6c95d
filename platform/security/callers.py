"""Loading the caller of a request: the user, their roles and effective permissions.

The user, their effective permissions (the union of the roles linked through their
``user_meta`` rows) and the revocation check of the token are one query, inside the
request's own transaction: no Redis round trip, and a logout holds in every process at
once. Reads may take a caller seen before from ``caller_cache.py`` instead; they still
check in the database that the user exists and that the token was not revoked.
"""

from __future__ import annotations

import datetime
import functools
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db.binding import TenantStatement
from atrium.platform.db.read_transaction import RowById
from atrium.platform.security.permissions import grants


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


# Whether this token was revoked (``u``: the caller's ``users`` row): logged out, or
# issued (``iat``, milliseconds since the epoch) before the user's last password change.
_REVOKED = (
    "(u.revoked_token_ids ? %(jti)s"
    " OR coalesce(u.tokens_valid_after > to_timestamp(%(iat)s::bigint / 1000.0), false))"
)

# The caller, their roles, their effective permissions and whether this token was
# revoked, in one statement. ``{s}`` is the quoted tenant schema and a dot
# (``TenantStatement``), or nothing on a transaction already bound to the tenant.
_USER_WITH_PERMISSIONS = f"""
    SELECT u.id, u.name, u.email, u.phone, u.created_at, u.updated_at,
           coalesce(array_agg(DISTINCT r.name) FILTER (WHERE r.name IS NOT NULL), '{{}}') AS roles,
           coalesce(array_agg(DISTINCT p.perm) FILTER (WHERE p.perm IS NOT NULL), '{{}}') AS permissions,
           ({_REVOKED}) AS revoked
    FROM {{s}}users u
    LEFT JOIN {{s}}user_meta m ON m.owner_id = u.id
    LEFT JOIN {{s}}user_roles r ON r.id = m.user_roles
    LEFT JOIN LATERAL unnest(r.permissions) AS p(perm) ON true
    WHERE u.id = %(user_id)s
    GROUP BY u.id
"""
_LOAD_BOUND_USER = _USER_WITH_PERMISSIONS.replace("{s}", "")
# The tables that query reads: a committed change to any of them drops the tenant's
# remembered callers (caller_cache.py).
CALLER_TABLES = ("users", "user_meta", "user_roles")

# Whether a remembered caller still holds: the user exists and this token was not revoked.
_CALLER_STILL_VALID = f"EXISTS (SELECT 1 FROM {{s}}users u WHERE u.id = %(user_id)s AND NOT ({_REVOKED}))"

# The caller, every table qualified. Run about once per caller and TTL: the callers are
# remembered (caller_cache.py).
LOAD_USER = TenantStatement(_USER_WITH_PERMISSIONS, recurring=False)

# Whether a remembered caller still holds, every table qualified.
CHECK_CALLER = TenantStatement(f"SELECT {_CALLER_STILL_VALID} AS valid")


@functools.cache
def check_and_fetch(row: RowById) -> TenantStatement:
    """The remembered-caller check and the handler's row: ``valid``, ``found``, the row.
    One statement per route that declares ``ROW_BY_ID``; every table is qualified, so it
    runs alone in autocommit (``ReadTransaction.fetch_alone``)."""
    return TenantStatement(row.joined_to(f"{_CALLER_STILL_VALID} AS valid"))


def auth_user(row: Any) -> AuthUser | None:
    """The caller of a ``LOAD_USER`` row; ``None`` for no user or a revoked token."""
    if row is None or row[0] is None or row[8]:
        return None
    return AuthUser(*row[:6], sorted(row[6]), frozenset(row[7]))  # type: ignore[arg-type]


async def load_auth_user(
    session: AsyncSession, user_id: uuid.UUID, jti: str | None = None, iat: int | None = None
) -> AuthUser | None:
    """The user with their permissions, in the session's tenant-bound transaction;
    with ``jti`` (and ``iat``), ``None`` also when that token was revoked."""
    connection = await session.connection()
    result = await connection.exec_driver_sql(_LOAD_BOUND_USER, {"user_id": user_id, "jti": jti, "iat": iat})
    return auth_user(result.one_or_none())
