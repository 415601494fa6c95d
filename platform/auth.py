"""Bearer tokens (``litestar.security.jwt``), revocation, and permission guards.

A token carries the user id (``sub``), the id of the tenant that issued it (``tid``), a
unique id (``jti``), an expiry, and where its logout is recorded (``rev``, see
``REVOCATION_CLAIM``). It is refused (401) on any other tenant, after
logout (its ``jti`` is kept on its user's row until it would expire anyway), once its
user is deleted, and when expired or malformed.

The user, their effective permissions (the union of the roles linked through their
``user_meta`` rows) and the revocation check are one query per request, inside the
request's own tenant-bound transaction: no Redis round trip, and a logout holds in
every process at once, Redis or not. Reads may take a caller seen before from
``callers.py`` instead; they still check in the database that the user exists and that
the token was not revoked.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.security.jwt import JWTAuth, Token
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from atrium.platform.callers import CallerCache
from atrium.platform.connection_affinity import affinity
from atrium.platform.database import BIND_COLUMNS, BIND_SQL, bind_parameters
from atrium.platform.errors import problem
from atrium.platform.middleware import scope_tenant
from atrium.platform.permissions import grants
from atrium.platform.read_transaction import (
    READS_ON_DRIVER,
    ROW_BY_ID,
    ReadTransaction,
    RowById,
    keep_row,
    remember,
)
from atrium.platform.resolution import ResolvedTenant
from atrium.platform.tenant_statements import TenantStatement

logger = logging.getLogger("atrium.auth")

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


# Tokens issued since tenant migration 0004 carry ``"rev": "user"``: their revocation is
# on their user's row (``users.revoked_token_ids``) alone. Older tokens are also looked up
# in the ``revoked_tokens`` table, until they have all expired (one token lifetime).
REVOCATION_CLAIM = "rev"
REVOKED_ON_USER = "user"
# Whether this token was revoked (``u``: the caller's ``users`` row, ``{s}``: see below).
_REVOKED = "u.revoked_token_ids ? %(jti)s"
_REVOKED_OR_IN_OLD_TABLE = f"{_REVOKED} OR EXISTS (SELECT 1 FROM {{s}}revoked_tokens t WHERE t.jti = %(jti)s)"


def issued_before_revocations_moved(token: Token) -> bool:
    """Whether a logout of ``token`` may be in the old ``revoked_tokens`` table."""
    return token.extras.get(REVOCATION_CLAIM) != REVOKED_ON_USER


def _revocation_checked(template: str, old_table: bool) -> str:
    return template.replace("{revoked}", _REVOKED_OR_IN_OLD_TABLE if old_table else _REVOKED)


# The caller, their roles, their effective permissions and whether this token was
# revoked, in one statement, in the driver's paramstyle. ``{s}`` is empty on the session
# path (the transaction is already bound) and the quoted tenant schema where the
# statement itself opens the transaction (``BIND_AND_LOAD_USER``).
_USER_WITH_PERMISSIONS = """
    SELECT u.id, u.name, u.email, u.phone, u.created_at, u.updated_at,
           coalesce(array_agg(DISTINCT r.name) FILTER (WHERE r.name IS NOT NULL), '{}') AS roles,
           coalesce(array_agg(DISTINCT p.perm) FILTER (WHERE p.perm IS NOT NULL), '{}') AS permissions,
           ({revoked}) AS revoked
    FROM {s}users u
    LEFT JOIN {s}user_meta m ON m.owner_id = u.id
    LEFT JOIN {s}user_roles r ON r.id = m.user_roles
    LEFT JOIN LATERAL unnest(r.permissions) AS p(perm) ON true
    WHERE u.id = %(user_id)s
    GROUP BY u.id
"""
_LOAD_USER = {
    old_table: _revocation_checked(_USER_WITH_PERMISSIONS, old_table).replace("{s}", "")
    for old_table in (False, True)
}
# The tables that query reads: a committed change to any of them drops the tenant's
# remembered callers (callers.py).
CALLER_TABLES = ("users", "user_meta", "user_roles")


# Whether a remembered caller still holds: the user exists and this token was not revoked.
# One relation (``users``) for tokens issued since migration 0004.
_CALLER_STILL_VALID = "EXISTS (SELECT 1 FROM {s}users u WHERE u.id = %(user_id)s AND NOT ({revoked}))"


def _per_token_kind(template: str, recurring: bool = True) -> dict[bool, TenantStatement]:
    """``template`` with its revocation check, for tokens issued before migration 0004
    (``True``: also looked up in ``revoked_tokens``) and since (``False``)."""
    return {old: TenantStatement(_revocation_checked(template, old), recurring) for old in (False, True)}


def _bound(query: str) -> str:
    """The binding statement and ``query`` as one round trip; always one row.

    Names inside the statement are resolved before its ``set_config`` runs, so every
    table of ``query`` must be qualified (``{s}``).
    """
    return f"SELECT caller.* FROM ({BIND_SQL}) AS bound LEFT JOIN LATERAL ({query}) AS caller ON true"


# Bind, and load the caller (columns NULL when there is no such user). Run about once per
# caller and TTL: the callers are remembered (callers.py).
BIND_AND_LOAD_USER = _per_token_kind(_bound(_USER_WITH_PERMISSIONS), recurring=False)

# Bind, and check that a remembered caller still holds (see callers.py); ``valid`` first.
# One flat select rather than ``_bound``'s lateral join: this statement is planned on
# most requests, and the flat form costs PostgreSQL 15-20 % less per read transaction
# over many tenants (bench/RESULTS.md, fourth pass). The set_config calls still run
# before any later statement of the transaction; the tables are qualified.
BIND_AND_CHECK_CALLER = _per_token_kind(f"SELECT {_CALLER_STILL_VALID} AS valid, {BIND_COLUMNS}")

# The caller, every table qualified, with no binding: for ``fetch_alone``. Checks no
# token (``jti`` NULL): for reloading a caller whose every request is checked anyway.
LOAD_USER = TenantStatement(_revocation_checked(_USER_WITH_PERMISSIONS, old_table=False), recurring=False)


@functools.cache
def check_and_fetch(row: RowById, old_table: bool = False) -> TenantStatement:
    """The remembered-caller check and the handler's row, with no binding: ``valid``,
    ``found``, the row. One statement per route that declares ``ROW_BY_ID``.

    Run alone in autocommit (``ReadTransaction.fetch_alone``): every table is qualified,
    so it needs no ``search_path``. Leaving the binding's ``set_config`` calls out is
    most of the gain: over 1,000 tenants PostgreSQL spent ~230 against ~300 µs per
    request with them (one round trip either way) and ~370 µs in a transaction of its
    own (bench/RESULTS.md, sixth pass). Their statement timeout would not have bounded
    this statement anyway: PostgreSQL arms the timeout when a statement starts.
    """
    return TenantStatement(row.joined_to(f"{_revocation_checked(_CALLER_STILL_VALID, old_table)} AS valid"))


# A logout records the token id with its expiry (Unix seconds) on its user's row, and
# drops the ids of the user's tokens that have expired since (each logout sweeps).
_REVOKE = """
    UPDATE users SET revoked_token_ids = coalesce(
        (SELECT jsonb_object_agg(r.key, r.value) FROM jsonb_each(revoked_token_ids) AS r
         WHERE r.value::bigint > extract(epoch FROM now())),
        '{}'
    ) || jsonb_build_object(%(jti)s::text, %(expires_at)s::bigint)
    WHERE id = %(user_id)s
"""


def _auth_user(row: Any) -> AuthUser | None:
    if row is None or row[0] is None or row[8]:
        return None
    return AuthUser(*row[:6], sorted(row[6]), frozenset(row[7]))  # type: ignore[arg-type]


async def load_auth_user(
    session: AsyncSession, user_id: uuid.UUID, jti: str | None = None, old_table: bool = False
) -> AuthUser | None:
    """The user with their permissions, in the session's tenant-bound transaction.

    With ``jti``, ``None`` also when that token was revoked (``old_table``: see
    ``_per_token_kind``).
    """
    connection = await session.connection()
    result = await connection.exec_driver_sql(_LOAD_USER[old_table], {"user_id": user_id, "jti": jti})
    return _auth_user(result.one_or_none())


# Verified tokens remembered per process; when full, the one remembered longest goes
# (a dict keeps insertion order: no LRU bookkeeping on hits). Clearing it whole, as
# before, kept on average half as many of a larger set of active tokens. ~1.2 KB each
# (tracemalloc): 1,024 cost ~1.2 MB.
VERIFIED_TOKENS_MAX = 1024


@dataclass
class VerifiedToken(Token):
    """Litestar's ``Token``, remembering the token strings it has verified.

    Verifying a token (base64, JSON, HMAC, claims) was ~15 % of a worker's CPU on a
    one-row GET (py-spy; see bench/RESULTS.md), and a client sends the same token with
    every request. A string that verified with the same key and options verifies again;
    its expiry is checked on every use. Revocation is not cached: it is checked by the
    query that loads the caller. Tokens with a not-before claim are never remembered.
    """

    @classmethod
    def decode(  # type: ignore[override]
        cls,
        encoded_token: str,
        secret: str,
        algorithm: str,
        audience: str | Sequence[str] | None = None,
        issuer: str | Sequence[str] | None = None,
        require_claims: Sequence[str] | None = None,
        verify_exp: bool = True,
        verify_nbf: bool = True,
        strict_audience: bool = False,
    ) -> VerifiedToken:
        key = (
            encoded_token,
            secret,
            algorithm,
            _frozen(audience),
            _frozen(issuer),
            _frozen(require_claims),
            verify_exp,
            verify_nbf,
            strict_audience,
        )
        token = _verified.get(key)
        if token is not None and (not verify_exp or token.exp > datetime.datetime.now(datetime.UTC)):
            return token
        token = super().decode(
            encoded_token,
            secret,
            algorithm,
            audience,
            issuer,
            require_claims,
            verify_exp,
            verify_nbf,
            strict_audience,
        )
        if "nbf" not in token.extras:
            while len(_verified) >= VERIFIED_TOKENS_MAX:
                del _verified[next(iter(_verified))]
            _verified[key] = token
        return token


_verified: dict[tuple[Any, ...], VerifiedToken] = {}


def _frozen(value: str | Sequence[str] | None) -> Any:
    return value if value is None or isinstance(value, str) else tuple(value)


def connection_tenant(connection: ASGIConnection[Any, Any, Any, Any]) -> ResolvedTenant | None:
    return scope_tenant(connection.scope)


class TokenAuth:
    """Builds the ``JWTAuth`` config; loads the caller and records logouts."""

    def __init__(
        self,
        secret: str,
        ttl_seconds: int,
        engine: AsyncEngine,
        session_provider: Any,
        statement_timeout_ms: int,
        callers: CallerCache | None = None,
        caller_ttl: Callable[[], float] = lambda: 0.0,  # 0: nothing is remembered
        caller_stale_for: Callable[[], float] = lambda: 0.0,  # 0: never used once expired
    ) -> None:
        self.engine = engine
        self.session_provider = session_provider
        self.statement_timeout_ms = statement_timeout_ms
        self.callers = callers if callers is not None else CallerCache()
        self.caller_ttl = caller_ttl
        self.caller_stale_for = caller_stale_for
        # Stale callers waiting to be reloaded beside the requests (``_reload_stale``).
        self._stale: dict[tuple[uuid.UUID, uuid.UUID], ResolvedTenant] = {}
        self._reloader: asyncio.Task[None] | None = None
        self.ttl = datetime.timedelta(seconds=ttl_seconds)
        self.jwt = JWTAuth[AuthUser, Token](
            token_secret=secret,
            token_cls=VerifiedToken,
            retrieve_user_handler=self.retrieve_user,
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
            token_extras={"tid": str(tenant_id), REVOCATION_CLAIM: REVOKED_ON_USER},
        )

    async def retrieve_user(
        self, token: Token, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthUser | None:
        """The caller, or ``None`` (401): foreign tenant, revoked token, deleted user."""
        tenant = connection_tenant(connection)
        if tenant is None or token.extras.get("tid") != str(tenant.id) or not isinstance(token.jti, str):
            return None
        try:
            user_id = uuid.UUID(token.sub)
        except ValueError:
            return None
        opt = connection.route_handler.opt
        old_table = issued_before_revocations_moved(token)
        if opt.get(READS_ON_DRIVER):
            return await self._reader(tenant, user_id, token.jti, old_table, connection)
        session = self.session_provider(connection.app.state, connection.scope)
        user = await load_auth_user(session, user_id, token.jti, old_table)
        if opt.get(RELEASE_BEFORE_BODY):
            # The body (an upload) is read after authentication and may arrive slowly:
            # give the connection back meanwhile; the handler's transaction binds anew.
            await session.commit()
        return user

    async def _reader(
        self,
        tenant: ResolvedTenant,
        user_id: uuid.UUID,
        jti: str,
        old_table: bool,
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> AuthUser | None:
        """The caller of a read, in the transaction the handler then reads in (read_transaction.py)."""
        remembered, stale = self.callers.lookup(tenant.id, user_id)
        if stale:
            # Still checked below (the user exists, the token is not revoked); what may be
            # one TTL late is only a change whose message went missing.
            self._reload_beside(tenant, user_id)
        generation = self.callers.generation
        wanted: RowById | None = connection.route_handler.opt.get(ROW_BY_ID)
        if remembered is not None and wanted is not None:
            row = await ReadTransaction.fetch_alone(
                self.engine,
                check_and_fetch(wanted, old_table).for_tenant(
                    tenant.schema,
                    {"user_id": user_id, "jti": jti, "row_id": connection.path_params[wanted.param]},
                ),
            )
            if row is None or not row[0]:
                return None
            found, values = row[-len(wanted.columns) - 1], row[-len(wanted.columns) :]
            keep_row(connection.scope, values if found else None)
            return remembered
        params = {**bind_parameters(tenant.schema, self.statement_timeout_ms), "user_id": user_id, "jti": jti}
        statements = BIND_AND_CHECK_CALLER if remembered is not None else BIND_AND_LOAD_USER
        query = statements[old_table].for_tenant(tenant.schema, params)
        transaction, row = await ReadTransaction.begin(self.engine, query)
        remember(connection.scope, transaction)
        if remembered is not None:
            return remembered if row is not None and row[0] else None
        user = _auth_user(row)
        if user is not None:
            self._remember(tenant.id, user_id, user, generation)
        return user

    def _remember(self, tenant_id: uuid.UUID, user_id: uuid.UUID, user: AuthUser, generation: int) -> None:
        self.callers.put(tenant_id, user_id, user, self.caller_ttl(), generation, self.caller_stale_for())

    def _reload_beside(self, tenant: ResolvedTenant, user_id: uuid.UUID) -> None:
        self._stale.setdefault((tenant.id, user_id), tenant)
        if self._reloader is None:
            self._reloader = asyncio.get_running_loop().create_task(self._reload_stale())

    async def _reload_stale(self) -> None:
        """Reload the stale callers one at a time, each in one autocommit statement.

        One at a time: a wave of expiring callers then costs the database one reload
        at a time beside the requests, rather than one inside each request at once.
        """
        try:
            while self._stale:
                (tenant_id, user_id), tenant = next(iter(self._stale.items()))
                generation = self.callers.generation
                affinity.set(tenant.schema)  # this task's own context: the tenant's connections
                try:
                    row = await ReadTransaction.fetch_alone(
                        self.engine, LOAD_USER.for_tenant(tenant.schema, {"user_id": user_id, "jti": None})
                    )
                except Exception as exc:
                    # The database is down, or the tenant just went: the requests that need
                    # the database report it; the stale entry simply runs out.
                    logger.debug("reloading a caller of tenant %s failed: %s", tenant_id, exc)
                    row = None
                finally:
                    del self._stale[(tenant_id, user_id)]
                user = _auth_user(row)
                if user is not None:
                    self._remember(tenant_id, user_id, user, generation)
        finally:
            self._reloader = None

    async def stop(self) -> None:
        """Cancel the reloading of stale callers (at shutdown)."""
        if self._reloader is not None:
            self._reloader.cancel()
            await asyncio.gather(self._reloader, return_exceptions=True)

    async def revoke(self, session: AsyncSession, token: Token) -> None:
        """Refuse ``token`` from now on, in every process (it is checked in the database)."""
        connection = await session.connection()
        await connection.exec_driver_sql(
            _REVOKE,
            {
                "jti": token.jti,
                "expires_at": math.ceil(token.exp.timestamp()),
                "user_id": uuid.UUID(token.sub),
            },
        )
        await session.commit()


def requires(permission: str) -> Any:
    """A guard: the caller must hold ``permission`` (or ``*``); otherwise 403."""

    # async: a sync guard would be run in a worker thread on every request.
    async def guard(connection: ASGIConnection[Any, AuthUser, Any, Any], _: BaseRouteHandler) -> None:
        user = connection.user
        if not isinstance(user, AuthUser) or not user.can(permission):
            raise problem(403, f"This requires the permission {permission!r}.")

    guard.__name__ = f"requires_{permission.replace(':', '_').replace('-', '_')}"
    return guard
