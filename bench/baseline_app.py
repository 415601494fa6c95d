"""The floor for ``GET /users/{id}``: a minimal Litestar app over raw psycopg.

It serves the same single-row select as Atrium's ``GET /users/{id}``, in one transaction
that begins with the same tenant binding statement Atrium issues
(``SELECT set_config('search_path', …, true), set_config('statement_timeout', …, true), …``),
through a ``psycopg_pool.AsyncConnectionPool`` of the same size as Atrium's default pool
(``ATRIUM_DB_POOL_SIZE`` + ``ATRIUM_DB_MAX_OVERFLOW``). No authentication, no ORM: the
tenant is looked up from the Host header in a dict loaded from the registry at start-up.

``GET /alone/users/{id}`` is the same floor for the shape of Atrium's own ``GET`` by id
(``ReadTransaction.fetch_alone``): one select naming the schema-qualified table, alone in
autocommit, one round trip, on a second pool of the same size. bench/run.py measures the
spread of both shapes beside Atrium's.

bench/run.py runs it under uvicorn with the options ``atrium serve`` uses:

    DATABASE_URL=postgresql://root@127.0.0.1:5432/<db> python bench/baseline_app.py --port 8001 --workers 2
"""

from __future__ import annotations

import argparse
import os
import uuid
from typing import Any

from litestar import Litestar, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from psycopg_pool import AsyncConnectionPool

# Imported, not copied, so that the floor always runs exactly Atrium's binding statement.
from atrium.platform.db.binding import BIND_SQL
from atrium.platform.tenancy.naming import quote_ident

USER_COLUMNS = ("id", "name", "email", "phone", "created_at", "updated_at")
_SELECT_USER = f"SELECT {', '.join(USER_COLUMNS)} FROM {{table}} WHERE id = %(id)s"
SELECT_USER = _SELECT_USER.format(table="users")


def select_user_alone(schema: str) -> str:
    return _SELECT_USER.format(table=f"{quote_ident(schema)}.users")


def _host(raw: str) -> str:
    return raw.rsplit(":", 1)[0].rstrip(".").lower()


def create_app() -> Litestar:
    url = os.environ["DATABASE_URL"]
    base_domain = os.environ.get("ATRIUM_BASE_DOMAIN", "localhost")
    min_size = int(os.environ.get("ATRIUM_DB_POOL_SIZE", "10"))
    max_size = min_size + int(os.environ.get("ATRIUM_DB_MAX_OVERFLOW", "0"))
    timeout = os.environ.get("ATRIUM_DB_STATEMENT_TIMEOUT_MS", "30000") + "ms"
    pool = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False, kwargs={"application_name": "atrium-baseline"}
    )
    alone_pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"application_name": "atrium-baseline", "autocommit": True},
    )
    schemas: dict[str, str] = {}

    async def startup() -> None:
        await pool.open(wait=True)
        await alone_pool.open(wait=True)
        async with pool.connection() as conn:
            rows = await (await conn.execute("SELECT slug, schema_name FROM platform.tenants")).fetchall()
        schemas.update({f"{slug}.{base_domain}": schema for slug, schema in rows})

    async def shutdown() -> None:
        await pool.close()
        await alone_pool.close()

    def schema_of(request: Request[Any, Any, Any]) -> str:
        schema = schemas.get(_host(request.headers.get("host", "")))
        if schema is None:
            raise NotFoundException("no tenant")
        return schema

    def found(row: Any) -> dict[str, Any]:
        if row is None:
            raise NotFoundException("no such user")
        return dict(zip(USER_COLUMNS, row, strict=True))

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/users/{user_id:uuid}")
    async def get_user(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> dict[str, Any]:
        schema = schema_of(request)
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(BIND_SQL, {"path": quote_ident(schema), "timeout": timeout})
            row = await (await conn.execute(SELECT_USER, {"id": user_id})).fetchone()
        return found(row)

    @get("/alone/users/{user_id:uuid}")
    async def get_user_alone(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> dict[str, Any]:
        schema = schema_of(request)
        async with alone_pool.connection() as conn:
            row = await (await conn.execute(select_user_alone(schema), {"id": user_id})).fetchone()
        return found(row)

    return Litestar(
        route_handlers=[health, get_user, get_user_alone], on_startup=[startup], on_shutdown=[shutdown]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="the raw-psycopg floor for GET /users/{id}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same server options as atrium.scripts.serving.run_server.
    uvicorn.run(
        "baseline_app:create_app",
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=16 * 1024,
        log_level="info",
    )


if __name__ == "__main__":
    main()
