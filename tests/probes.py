"""Test-only routes that look into the tenant's schema through the request session."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar import Request, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db import read_transaction
from atrium.platform.db.affinity import affinity
from atrium.platform.db.read_transaction import READS_ON_DRIVER, ROW_BY_ID, RowById
from atrium.platform.tenancy.resolution import ResolvedTenant


async def _emails(session: AsyncSession) -> list[str]:
    return list((await session.execute(text("SELECT email FROM users ORDER BY email"))).scalars())


@get("/probe/users", exclude_from_auth=True)
async def probe_users(
    db_session: NamedDependency[AsyncSession], tenant: NamedDependency[ResolvedTenant]
) -> dict[str, Any]:
    return {"tenant": tenant.slug, "emails": await _emails(db_session)}


@post("/probe/interleave", status_code=200, exclude_from_auth=True)
async def probe_interleave(
    db_session: NamedDependency[AsyncSession], tenant: NamedDependency[ResolvedTenant]
) -> dict[str, Any]:
    """Read, yield, write and commit, then read again in a second transaction."""
    path_before = (await db_session.execute(text("SELECT current_setting('search_path')"))).scalar_one()
    emails_before = await _emails(db_session)
    await asyncio.sleep(0)
    await db_session.execute(
        text("INSERT INTO customize (tenant_id, data) VALUES (:tid, '{}')"), {"tid": tenant.id}
    )
    await db_session.commit()  # returns the connection to the pool mid-request
    await asyncio.sleep(0)
    path_after = (await db_session.execute(text("SELECT current_setting('search_path')"))).scalar_one()
    foreign = (
        await db_session.execute(
            text("SELECT count(*) FROM customize WHERE tenant_id <> :tid"), {"tid": tenant.id}
        )
    ).scalar_one()
    return {
        "tenant": tenant.slug,
        "paths": [path_before, path_after],
        "emails": [emails_before, await _emails(db_session)],
        "foreign_rows": foreign,
    }


@get("/probe/sleep", exclude_from_auth=True)
async def probe_sleep(
    db_session: NamedDependency[AsyncSession], seconds: FromQuery[float] = 1.0
) -> dict[str, float]:
    """Hold a pooled connection for ``seconds``."""
    await db_session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    return {"slept": seconds}


@get("/probe/backend", exclude_from_auth=True)
async def probe_backend(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    """The server backend this request's transaction ran on, and the request's affinity key."""
    pid = (await db_session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    await db_session.commit()
    return {"pid": pid, "affinity": affinity.get()}


@websocket("/probe/ws", exclude_from_auth=True)
async def probe_ws(socket: WebSocket, tenant: NamedDependency[ResolvedTenant]) -> None:
    await socket.accept()
    await socket.send_json({"tenant": tenant.slug})
    await socket.close()


@get(
    "/probe/row/{item_id:uuid}",
    opt={READS_ON_DRIVER: True, ROW_BY_ID: RowById("users", ("id", "email"), "item_id")},
)
async def probe_row(request: Request, item_id: FromPath[uuid.UUID]) -> dict[str, Any]:
    """What a ``GET`` by id handler meets: the row authentication fetched, if it did, and
    whether a read transaction (and so a pooled connection) is still held."""
    kept = read_transaction.kept_row(request.scope)
    return {
        "fetched": kept is not None,
        "row": None if kept is None or kept[0] is None else [str(value) for value in kept[0]],
        "open": read_transaction.current(request.scope) is not None,
        "checked_out": request.app.state.engine.pool.checkedout(),
    }


PROBES = [probe_users, probe_interleave, probe_sleep, probe_backend, probe_ws, probe_row]
