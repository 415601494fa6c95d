"""advanced-alchemy's Litestar plugin, with each request's session bound to its tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
)
from litestar.datastructures import State
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from atrium.platform.callers import CallerInvalidation
from atrium.platform.database import (
    SCHEMA_INFO_KEY,
    STATEMENT_TIMEOUT_KEY,
    TENANT_ID_INFO_KEY,
    attach_tenant_binding,
)
from atrium.platform.middleware import scope_tenant


@dataclass
class TenantSQLAlchemyConfig(SQLAlchemyAsyncConfig):
    """Binds each new request session to the tenant the middleware resolved.

    The binding itself (``set_config('search_path', …, true)`` at the start of every
    transaction) happens in ``atrium.platform.database``; here the session only learns
    which schema, from the registry entry in the connection scope, never from input.
    """

    statement_timeout_ms: int = 30_000
    caller_invalidation: CallerInvalidation | None = None

    def create_session_maker(self) -> Callable[[], AsyncSession]:
        maker = super().create_session_maker()
        # advanced-alchemy replaces ``sync_session_class`` with a sessionmaker of its own
        # (to hang its listeners on); the binding goes on that same sessionmaker.
        sync_maker = maker.kw["sync_session_class"]  # type: ignore[attr-defined]
        attach_tenant_binding(sync_maker)
        if self.caller_invalidation is not None:
            self.caller_invalidation.attach(sync_maker)
        return maker

    def provide_session(self, state: State, scope: Scope) -> AsyncSession:
        session = super().provide_session(state, scope)
        if SCHEMA_INFO_KEY not in session.info:
            tenant = scope_tenant(scope)
            session.info[SCHEMA_INFO_KEY] = tenant.schema if tenant is not None else None
            session.info[TENANT_ID_INFO_KEY] = tenant.id if tenant is not None else None
            session.info[STATEMENT_TIMEOUT_KEY] = self.statement_timeout_ms
        return session


def sqlalchemy_config(
    engine: AsyncEngine, statement_timeout_ms: int, caller_invalidation: CallerInvalidation | None = None
) -> TenantSQLAlchemyConfig:
    return TenantSQLAlchemyConfig(
        engine_instance=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
        # Its handler answers plain JSON; errors.py maps repository errors to problems.
        set_default_exception_handler=False,
        statement_timeout_ms=statement_timeout_ms,
        caller_invalidation=caller_invalidation,
    )
