"""The engines: the request-serving async engine and the operators' synchronous one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from atrium.platform.settings import Settings

# Seconds to wait for a new connection: a server that accepts and never answers (a
# half-open firewall, a stopped VM) otherwise holds a command or a request forever.
CONNECT_TIMEOUT = 10


def _connect_args(settings: Settings) -> dict[str, Any]:
    args: dict[str, Any] = {"application_name": "atrium"}
    if "connect_timeout" not in settings.database_url:  # the URL's own, if it sets one
        args["connect_timeout"] = CONNECT_TIMEOUT
    if not settings.db_prepared_statements:
        args["prepare_threshold"] = None
    return args


def create_app_engine(settings: Settings) -> AsyncEngine:
    """The request-serving engine, its pool keeping each tenant on its own connections.

    No ``pool_pre_ping``: it would cost a round trip on every checkout. A connection
    that died is detected by the failing statement, SQLAlchemy then invalidates the
    whole pool, and the request gets a 503 (see ``web/errors.py``).
    """
    # Imported here: the pool reaches into advanced-alchemy's Litestar extension, which
    # the command line (the operator engine only) would otherwise load on every command.
    from atrium.platform.db.affinity import TenantAffinePool

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
