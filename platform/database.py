"""Engines and the per-transaction tenant binding.

Every transaction of a session that belongs to a tenant starts with one statement,
``set_config('search_path', <quoted schema>, true)``, issued from SQLAlchemy's
``after_begin`` event. ``true`` makes it transaction-local: when the transaction ends
the pooled connection is back at the server default, so a connection never carries
one tenant's path into the next request, and the binding works behind PgBouncer in
transaction mode. ``SET LOCAL search_path = %s`` would not do: PostgreSQL refuses
bound parameters in ``SET``.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction

from atrium.platform.connection_affinity import TenantAffinePool
from atrium.platform.naming import quote_ident
from atrium.platform.settings import Settings

SCHEMA_INFO_KEY = "atrium_tenant_schema"
TENANT_ID_INFO_KEY = "atrium_tenant_id"
STATEMENT_TIMEOUT_KEY = "statement_timeout_ms"
# A session with no tenant sees no tenant table at all: an empty search_path leaves
# only pg_catalog, and shared tables are always schema-qualified.
NO_TENANT_PATH = ""

# One round trip binds the schema and bounds the transaction: no statement runs longer
# than the timeout, and a transaction left idle (a stalled client) is ended by the server.
BIND_COLUMNS = (
    "set_config('search_path', %(path)s, true), set_config('statement_timeout', %(timeout)s, true),"
    " set_config('idle_in_transaction_session_timeout', %(timeout)s, true)"
)
BIND_SQL = f"SELECT {BIND_COLUMNS}"


def search_path_for(schema: str | None) -> str:
    return quote_ident(schema) if schema else NO_TENANT_PATH


def bind_parameters(schema: str | None, timeout_ms: int) -> dict[str, str]:
    """The parameters of ``BIND_SQL`` for ``schema``, shared by the session and driver paths."""
    return {"path": search_path_for(schema), "timeout": f"{int(timeout_ms)}ms"}


# Listeners already attached, per target. Not ``event.contains``: SQLAlchemy's event
# registry keys listeners by ``id(target)`` and keeps the key after the target is collected,
# so a new maker that happened to reuse a dead one's address looked bound when it was not,
# and its sessions ran unbound (every app in one process builds a maker: the test suite hit
# it, 1 run in ~10).
_ATTACHED: weakref.WeakKeyDictionary[Any, set[tuple[str, Any]]] = weakref.WeakKeyDictionary()


def listen_once(target: Any, identifier: str, fn: Any) -> None:
    """``event.listen(target, identifier, fn)`` unless this very listener is already there."""
    attached = _ATTACHED.setdefault(target, set())
    if (identifier, fn) not in attached:
        event.listen(target, identifier, fn)
        attached.add((identifier, fn))


def attach_tenant_binding(target: Any) -> None:
    """Bind every transaction of sessions made by ``target`` (a session class or maker)."""
    listen_once(target, "after_begin", bind_search_path)


def bind_search_path(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    schema = session.info.get(SCHEMA_INFO_KEY)
    timeout = session.info.get(STATEMENT_TIMEOUT_KEY, 30_000)
    connection.exec_driver_sql(BIND_SQL, bind_parameters(schema, timeout))


def set_transaction_search_path(connection: Connection, schema: str | None) -> None:
    """The same binding for code that works on a Core connection (operator paths)."""
    connection.exec_driver_sql(
        "SELECT set_config('search_path', %(path)s, true)", {"path": search_path_for(schema)}
    )


def _connect_args(settings: Settings) -> dict[str, Any]:
    args: dict[str, Any] = {"application_name": "atrium"}
    if not settings.db_prepared_statements:
        args["prepare_threshold"] = None
    return args


def create_app_engine(settings: Settings) -> AsyncEngine:
    """The request-serving engine, its pool keeping each tenant on its own connections.

    No ``pool_pre_ping``: it would cost a round trip on every checkout. A connection
    that died is detected by the failing statement, SQLAlchemy then invalidates the
    whole pool, and the request gets a 503 (see ``errors.py``).
    """
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        poolclass=TenantAffinePool,
        connect_args=_connect_args(settings),
    )
    prepared_max = settings.db_prepared_max

    # Not a connect argument of psycopg: set on each new connection. Its default (100)
    # is below the tenants a pooled connection serves in a large deployment, and a
    # statement evicted from psycopg's cache is planned again on every run.
    def keep_prepared(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.prepared_max = prepared_max

    event.listen(engine.sync_engine, "connect", keep_prepared)
    return engine


@asynccontextmanager
async def read_only_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A Core connection for reads, ended by a commit rather than the rollback of closing.

    A rollback makes psycopg drop every statement prepared on the connection (DEALLOCATE
    ALL): the host lookups rolled back, and over 1,000 tenants they wiped each pooled
    connection about twice a second, so every GET was planned anew (bench/RESULTS.md,
    eighth pass). Read-only, a commit and a rollback are the same.
    """
    async with engine.connect() as conn:
        yield conn
        await conn.commit()


def create_operator_engine(settings: Settings, pool_size: int = 5) -> Engine:
    """A synchronous engine for provisioning and migrations (Alembic is synchronous)."""
    return create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args=_connect_args(settings),
    )
