"""advanced-alchemy's Litestar plugin, with each request's session bound to its tenant."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    async_autocommit_handler_maker,
)
from litestar.constants import HTTP_RESPONSE_START
from litestar.datastructures import State
from litestar.types import BeforeMessageSendHookHandler, Message, Scope
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from atrium.platform.db.binding import (
    SCHEMA_INFO_KEY,
    STATEMENT_TIMEOUT_KEY,
    TENANT_ID_INFO_KEY,
    attach_tenant_binding,
)
from atrium.platform.db.library_seams import listener_sessionmaker, request_session
from atrium.platform.db.listeners import listen_once
from atrium.platform.db.queued_inserts import attach_queued_inserts, has_queued
from atrium.platform.security.caller_cache import CallerInvalidation
from atrium.platform.tenancy.middleware import scope_tenant

logger = logging.getLogger("atrium.persistence")

# Set in ``session.info`` while the session's transaction holds a connection.
_HOLDS_CONNECTION_KEY = "atrium_holds_connection"
# PostgreSQL assigns a transaction id at its first write: none, nothing was written.
_WROTE_SQL = "SELECT txid_current_if_assigned() IS NOT NULL"


@dataclass
class TenantSQLAlchemyConfig(SQLAlchemyAsyncConfig):
    """Binds each new request session to the tenant the middleware resolved.

    The binding itself (``set_config('search_path', …, true)`` at the start of every
    transaction) happens in ``atrium.platform.db.binding``; here the session only learns
    which schema, from the registry entry in the connection scope, never from input.
    """

    statement_timeout_ms: int = 30_000
    caller_invalidation: CallerInvalidation | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        # Set here: the base class has just made the scope key unique in this process.
        self.before_send_handler = _before_send(self.session_scope_key)

    def create_session_maker(self) -> Callable[[], AsyncSession]:
        maker = super().create_session_maker()
        # Session events fire only from a sync sessionmaker: the one advanced-alchemy
        # hangs its own listeners on.
        sync_maker = listener_sessionmaker(maker)
        attach_tenant_binding(sync_maker)
        attach_queued_inserts(sync_maker)
        listen_once(sync_maker, "after_begin", _holds_connection)
        listen_once(sync_maker, "after_transaction_end", _released_connection)
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


def _holds_connection(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[_HOLDS_CONNECTION_KEY] = True


def _released_connection(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_HOLDS_CONNECTION_KEY, None)


async def _commit_if_read_only(session: AsyncSession) -> None:
    """Commit ``session``'s transaction if it wrote nothing, so that it is not rolled back.

    For the reason of ``database.read_only_connection``: a rollback drops the connection's
    prepared statements. A transaction that wrote, has unflushed changes, or failed is
    left to the rollback.
    """
    # Without a connection (none came in time: a 503), there is nothing to keep, and
    # asking for one would wait for the pool again.
    if (
        not session.info.get(_HOLDS_CONNECTION_KEY)
        or session.new
        or session.dirty
        or session.deleted
        or has_queued(session)
    ):
        return
    try:
        connection = await session.connection()
        wrote = (await connection.exec_driver_sql(_WROTE_SQL)).scalar()
        if not wrote:
            await session.commit()
    except Exception as exc:  # a failed transaction: the rollback that follows ends it
        logger.debug("a read-only session could not be committed: %s", exc)


def _before_send(session_scope_key: str) -> BeforeMessageSendHookHandler:
    """advanced-alchemy's ``autocommit`` handler (commit on 2xx, else roll back, then
    close), except that a session answered with an error and that wrote nothing commits."""
    autocommit = async_autocommit_handler_maker(session_scope_key=session_scope_key)

    async def handler(message: Message, scope: Scope) -> None:
        if message["type"] == HTTP_RESPONSE_START and not 200 <= message["status"] < 300:
            session = request_session(scope, session_scope_key)
            if session is not None:
                await _commit_if_read_only(session)
        await autocommit(message, scope)

    return handler


def sqlalchemy_config(
    engine: AsyncEngine, statement_timeout_ms: int, caller_invalidation: CallerInvalidation | None = None
) -> TenantSQLAlchemyConfig:
    return TenantSQLAlchemyConfig(
        engine_instance=engine,
        # advanced-alchemy's file-object and dogpile-cache listeners serve features this app
        # does not use; left on, they ran on every flush and commit and, with the check of
        # whether each is enabled, cost a write about a tenth of its CPU (bench/RESULTS.md).
        session_config=AsyncSessionConfig(expire_on_commit=False, info={"enable_cache_listener": False}),
        enable_file_object_listener=False,
        # Its handler answers plain JSON; web/errors.py maps repository errors to problems.
        set_default_exception_handler=False,
        statement_timeout_ms=statement_timeout_ms,
        caller_invalidation=caller_invalidation,
    )
