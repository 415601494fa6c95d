"""Bearer tokens (``litestar.security.jwt``): issuing, verifying, logging out.

A token carries the user id (``sub``), the id of the tenant that issued it (``tid``), a
unique id (``jti``) and an expiry. It is refused (401) on any other tenant, after
logout (its ``jti`` is kept on its user's row until it would expire anyway), once its
user is deleted, and when expired or malformed. The caller is loaded by
``callers.py``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.authentication import AuthenticationResult
from litestar.security.jwt import JWTAuth, Token
from litestar.security.jwt.middleware import JWTAuthenticationMiddleware
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from atrium.platform.db.affinity import affinity
from atrium.platform.db.read_transaction import (
    READS_ON_DRIVER,
    ROW_BY_ID,
    ReadTransaction,
    RowById,
    keep_row,
    remember,
)
from atrium.platform.security.caller_cache import CallerCache, callers_changed
from atrium.platform.security.callers import (
    CHECK_CALLER,
    LOAD_USER,
    AuthUser,
    auth_user,
    check_and_fetch,
)
from atrium.platform.tenancy.middleware import scope_tenant
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.errors import Refusal

logger = logging.getLogger("atrium.auth")

PUBLIC_PATHS = ["/health", "/schema", "/auth/login"]


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


# A token's issue time in milliseconds since the epoch (``issue``).
ISSUED_MS_CLAIM = "iat_ms"


def issued_ms(token: Token) -> int:
    """When ``token`` was issued, in milliseconds; a token without the claim counts from
    the start of its ``iat`` second, so a password change in that second refuses it."""
    claimed = token.extras.get(ISSUED_MS_CLAIM)
    if isinstance(claimed, int) and not isinstance(claimed, bool):
        return claimed
    return int(token.iat.timestamp()) * 1000


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
        try:
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
        except NotAuthorizedException as exc:
            # PyJWT checks the signature before the expiry: only a token this deployment
            # signed is ever called expired.
            expired = isinstance(exc.__cause__, jwt.ExpiredSignatureError)
            raise NotAuthorizedException(Refusal.EXPIRED if expired else Refusal.MALFORMED) from None
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


class BearerAuthenticationMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, refusing any scheme but Bearer before the token is read.

    Litestar's takes whatever follows the first space, so ``Basic <jwt>`` passed as a bearer
    token, and ``Basic <user:password>`` was called a malformed token (RFC 6750 §2.1: the
    scheme is Bearer, in any case); and it reads the first of several Authorization lines.
    A socket hands its token over otherwise (chats/live.py).
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get(self.auth_header)
        if header and connection.scope["type"] == "http":
            if header.partition(" ")[0].lower() != "bearer":
                raise NotAuthorizedException(Refusal.NOT_BEARER)
            # Two tokens (a proxy's and the client's, or two tenants'): served as neither,
            # rather than as whichever comes first.
            if sum(name == b"authorization" for name, _ in connection.scope["headers"]) > 1:
                raise NotAuthorizedException(Refusal.REPEATED)
        return await super().authenticate_request(connection)


class TokenAuth:
    """Builds the ``JWTAuth`` config; loads the caller and records logouts."""

    def __init__(
        self,
        secret: str,
        ttl_seconds: int,
        engine: AsyncEngine,
        statement_timeout_ms: int,
        callers: CallerCache | None = None,
        caller_ttl: Callable[[], float] = lambda: 0.0,  # 0: nothing is remembered
        caller_stale_for: Callable[[], float] = lambda: 0.0,  # 0: never used once expired
    ) -> None:
        self.engine = engine
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
            authentication_middleware_class=BearerAuthenticationMiddleware,
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
            # The issue time to the millisecond: a password change refuses the tokens issued
            # before it (callers.py), and ``iat`` has whole seconds only.
            token_extras={"tid": str(tenant_id), ISSUED_MS_CLAIM: time.time_ns() // 1_000_000},
        )

    async def retrieve_user(
        self, token: Token, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthUser | None:
        """The caller; a 401 saying why otherwise: foreign tenant, revoked token, deleted user."""
        user = await self._retrieve_user(token, connection)
        if user is None:
            raise NotAuthorizedException(Refusal.REVOKED)
        return user

    async def _retrieve_user(
        self, token: Token, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthUser | None:
        tenant = connection_tenant(connection)
        issuer = token.extras.get("tid")
        if tenant is None or not isinstance(issuer, str) or not isinstance(token.jti, str):
            raise NotAuthorizedException(Refusal.MALFORMED)
        if issuer != str(tenant.id):
            raise NotAuthorizedException(Refusal.OTHER_TENANT)
        try:
            user_id = uuid.UUID(token.sub)
        except ValueError:
            raise NotAuthorizedException(Refusal.MALFORMED) from None
        token_of = {"jti": token.jti, "iat": issued_ms(token)}
        if connection.route_handler.opt.get(READS_ON_DRIVER):
            return await self._reader(tenant, user_id, token_of, connection)
        return await self._checked_alone(tenant, user_id, token_of)

    def _remembered(self, tenant: ResolvedTenant, user_id: uuid.UUID) -> AuthUser | None:
        remembered, stale = self.callers.lookup(tenant.id, user_id)
        if stale:
            # Still checked (the user exists, the token is not revoked); what may be one
            # TTL late is only a change whose message went missing.
            self._reload_beside(tenant, user_id)
        return remembered  # type: ignore[no-any-return]

    def _outcome(
        self,
        tenant: ResolvedTenant,
        user_id: uuid.UUID,
        remembered: AuthUser | None,
        row: Any,
        generation: int,
    ) -> AuthUser | None:
        """The caller from a ``CHECK_CALLER`` row (``remembered`` given) or a ``LOAD_USER`` row."""
        if remembered is not None:
            return remembered if row is not None and row[0] else None
        user = auth_user(row)
        if user is not None:
            self._remember(tenant.id, user_id, user, generation)
        return user

    async def _checked_alone(
        self, tenant: ResolvedTenant, user_id: uuid.UUID, token_of: dict[str, Any]
    ) -> AuthUser | None:
        """The caller of a write (or any route that does not read on the driver).

        As for reads, a remembered caller is checked (the user exists, the token is not
        revoked) and an unknown one loaded, each by one schema-qualified statement alone in
        autocommit: no transaction is open while the body arrives, and the handler's
        session opens its own. Loading the caller in a session transaction of its own cost
        a write four round trips and a fifth of its CPU (bench/RESULTS.md, the write path).
        Permissions are as fresh as for reads: a change drops the tenant's callers at once
        in its own process, and in every other through the tenant-change channel.
        """
        remembered = self._remembered(tenant, user_id)
        generation = self.callers.generation
        statement = CHECK_CALLER if remembered is not None else LOAD_USER
        row = await ReadTransaction.fetch_alone(
            self.engine, statement.for_tenant(tenant.schema, {"user_id": user_id, **token_of})
        )
        return self._outcome(tenant, user_id, remembered, row, generation)

    async def _reader(
        self,
        tenant: ResolvedTenant,
        user_id: uuid.UUID,
        token_of: dict[str, Any],
        connection: ASGIConnection[Any, Any, Any, Any],
    ) -> AuthUser | None:
        """The caller of a read, in the transaction the handler then reads in (read_transaction.py)."""
        remembered = self._remembered(tenant, user_id)
        generation = self.callers.generation
        wanted: RowById | None = connection.route_handler.opt.get(ROW_BY_ID)
        if remembered is not None and wanted is not None:
            row = await ReadTransaction.fetch_alone(
                self.engine,
                check_and_fetch(wanted).for_tenant(
                    tenant.schema,
                    {"user_id": user_id, **token_of, "row_id": connection.path_params[wanted.param]},
                ),
            )
            if row is None or not row[0]:
                return None
            found, values = row[-len(wanted.columns) - 1], row[-len(wanted.columns) :]
            keep_row(connection.scope, values if found else None)
            return remembered
        statement = CHECK_CALLER if remembered is not None else LOAD_USER
        query = statement.for_tenant(tenant.schema, {"user_id": user_id, **token_of})
        transaction, row = await ReadTransaction.begin(
            self.engine, tenant.schema, self.statement_timeout_ms, query
        )
        remember(connection.scope, transaction)
        return self._outcome(tenant, user_id, remembered, row, generation)

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
                    no_token = {"user_id": user_id, "jti": None, "iat": None}
                    statement = LOAD_USER.for_tenant(tenant.schema, no_token)
                    row = await ReadTransaction.fetch_alone(self.engine, statement)
                except Exception as exc:
                    # The database is down, or the tenant just went: the requests that need
                    # the database report it; the stale entry simply runs out.
                    logger.debug("reloading a caller of tenant %s failed: %s", tenant_id, exc)
                    row = None
                finally:
                    del self._stale[(tenant_id, user_id)]
                user = auth_user(row)
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
        # Requests check revocations in the database; live sockets hear of it this way.
        callers_changed(session)
        await session.commit()
