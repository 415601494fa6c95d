"""``GET /health`` (and ``HEAD``): served on every host, answers whether the database answers."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import get, head
from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.platform.db.engines import read_only_connection
from atrium.platform.web.errors import database_unavailable, problem_responses
from atrium.platform.web.query import IGNORES_QUERY

HEALTH_TIMEOUT = 2.0


# What GET and HEAD share: public, on every host, whatever the query string.
_PROBE: dict[str, Any] = {
    "tags": ["platform"],
    "exclude_from_auth": True,
    "security": [{}],  # public; an empty list would be dropped and the global bearer scheme apply
    "opt": {IGNORES_QUERY: True},
    "responses": problem_responses(400, 503, tenant_route=False),
}


@get("/health", operation_id="health", summary="Liveness and database check", **_PROBE)
async def health(db_engine: NamedDependency[AsyncEngine]) -> dict[str, str]:
    await _check_database(db_engine)
    return {"status": "ok"}


@head(
    "/health",
    operation_id="health_head",
    summary="Liveness and database check, without a body",
    description="What `GET /health` answers, status only: some load balancers probe with `HEAD`.",
    **_PROBE,
)
async def health_head(db_engine: NamedDependency[AsyncEngine]) -> None:
    await _check_database(db_engine)


async def _check_database(db_engine: AsyncEngine) -> None:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT), read_only_connection(db_engine) as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # any failure to answer means "not healthy", never a 500
        raise database_unavailable() from None
