"""Hot reads run on the request's ``ReadTransaction``: it never outlives its request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from atrium.platform.db.engines import create_app_engine
from atrium.platform.db.read_transaction import ReadTransaction
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ALL_TENANTS
from tests.api import add_user, assert_problem, new_tenant, serve_api
from tests.conftest import MadeTenant, login, login_owner, serve
from tests.probes import PROBES

pytest_plugins = ["tests.api"]


async def test_read_connections_go_back_to_the_pool_whatever_the_answer(
    settings: Settings, operator_engine: Engine
) -> None:
    # One pooled connection in all: a single leaked read transaction would make every
    # later request wait for the pool timeout and fail.
    tight = settings.with_overrides(db_pool_size=1, db_max_overflow=0, db_pool_timeout=2)
    made = new_tenant(operator_engine, "rt")
    async with serve_api(tight) as (app, client):
        owner = await login(client, made.host, made.owner_email, made.owner_password)
        nobody = (await add_user(client, owner)).headers  # no role: no permission at all
        pool = app.state.engine.pool
        for _ in range(3):
            # Refused after authentication opened the transaction: a bad parameter, a
            # guard, a missing row.
            assert_problem(await client.get("/users", params={"limit": 0}, headers=owner), 422)
            assert_problem(await client.get("/users", headers=nobody), 403)
            assert_problem(await client.get(f"/users/{uuid.uuid4()}", headers=owner), 404)
            assert (await client.get("/auth/me", headers=owner)).status_code == 200
            assert pool.checkedout() == 0
        users = await client.get("/users", headers=owner)
        assert users.status_code == 200 and users.json()["total"] == 2
        assert pool.checkedout() == 0


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The app's engine with a pool of a single connection."""
    engine = create_app_engine(settings.with_overrides(db_pool_size=1, db_max_overflow=0, db_pool_timeout=5))
    yield engine
    await engine.dispose()


async def pooled_state(engine: AsyncEngine) -> tuple[int, bool, TransactionStatus]:
    """The pooled connection's backend, whether it is in autocommit, and whether a
    statement on it opens a transaction (what the pool's sessions rely on)."""
    fairy = await engine.raw_connection()
    try:
        conn: psycopg.AsyncConnection = fairy.driver_connection  # type: ignore[assignment]
        autocommit = conn.autocommit
        pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]  # type: ignore[index]
        status = conn.info.transaction_status
        await conn.rollback()
        return pid, autocommit, status
    finally:
        await greenlet_spawn(fairy.close)


async def test_a_statement_run_alone_gives_its_connection_back_out_of_autocommit(
    one_connection: AsyncEngine,
) -> None:
    engine = one_connection
    before, _, _ = await pooled_state(engine)
    row = await ReadTransaction.fetch_alone(engine, "SELECT %(n)s::int + 1, pg_backend_pid()", {"n": 41})
    assert row == (42, before)
    # A failing statement: the error reaches the caller, the connection is pooled again.
    with pytest.raises(psycopg.errors.DivisionByZero):
        await ReadTransaction.fetch_alone(engine, "SELECT 1 / 0", {})
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert await pooled_state(engine) == (before, False, TransactionStatus.INTRANS)


async def test_a_statement_run_alone_and_cancelled_never_returns_its_connection(
    one_connection: AsyncEngine,
) -> None:
    engine = one_connection
    before, _, _ = await pooled_state(engine)
    task = asyncio.create_task(ReadTransaction.fetch_alone(engine, "SELECT pg_sleep(30)", {}))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    # Its state was unknown: it was closed, and the pool opened a fresh one.
    after, autocommit, status = await pooled_state(engine)
    assert after != before
    assert (autocommit, status) == (False, TransactionStatus.INTRANS)


async def test_reads_past_the_last_page_still_count(settings: Settings, operator_engine: Engine) -> None:
    made = new_tenant(operator_engine, "rp")
    async with serve_api(settings) as (_, client):
        owner = await login(client, made.host, made.owner_email, made.owner_password)
        page = await client.get("/user-roles", params={"offset": 50}, headers=owner)
        assert page.status_code == 200
        assert page.json() == {"items": [], "total": 3, "limit": 50, "offset": 50}
        first = (await client.get("/user-roles", params={"limit": 2}, headers=owner)).json()
        assert first["total"] == 3 and len(first["items"]) == 2


async def test_a_remembered_callers_get_by_id_holds_no_connection_in_its_handler(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made, other = make_tenant(), make_tenant()
    async with serve(settings, PROBES) as (_, client):
        owner = await login_owner(client, made)
        owner_id = (await client.get("/auth/me", headers=owner)).json()["user"]["id"]
        foreign_id = str(other.tenant.owner_id)
        # /auth/me loaded and remembered the caller: the check now fetches the row too,
        # and the transaction has ended before the handler runs.
        seen = (await client.get(f"/probe/row/{owner_id}", headers=owner)).json()
        assert seen == {"fetched": True, "row": [owner_id, made.owner_email], "open": False, "checked_out": 0}
        # No such row in this tenant (another tenant's id included): fetched, and empty.
        for missing in (str(uuid.uuid4()), foreign_id):
            seen = (await client.get(f"/probe/row/{missing}", headers=owner)).json()
            assert seen == {"fetched": True, "row": None, "open": False, "checked_out": 0}
        # Logged out while remembered: the same statement refuses it.
        assert (await client.post("/auth/logout", headers=owner)).status_code == 204
        assert (await client.get(f"/probe/row/{owner_id}", headers=owner)).status_code == 401


async def test_a_caller_seen_for_the_first_time_reads_in_the_open_transaction(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    async with serve(settings, PROBES) as (app, client):
        owner = await login_owner(client, made)
        app.state.token_auth.callers.forget(ALL_TENANTS)
        owner_id = str(made.tenant.owner_id)
        seen = (await client.get(f"/probe/row/{owner_id}", headers=owner)).json()
        assert seen == {"fetched": False, "row": None, "open": True, "checked_out": 1}


async def test_get_by_id_answers_alike_for_new_and_remembered_callers(
    settings: Settings, operator_engine: Engine
) -> None:
    made = new_tenant(operator_engine, "rb")
    async with serve_api(settings) as (app, client):
        owner = await login(client, made.host, made.owner_email, made.owner_password)
        member = await add_user(client, owner)
        answers = []
        for _ in range(2):
            app.state.token_auth.callers.forget(ALL_TENANTS)
            first = await client.get(f"/users/{member.id}", headers=owner)  # caller loaded
            again = await client.get(f"/users/{member.id}", headers=owner)  # caller remembered
            answers += [(first.status_code, first.json()), (again.status_code, again.json())]
        assert len({str(a) for a in answers}) == 1 and answers[0][0] == 200
        app.state.token_auth.callers.forget(ALL_TENANTS)
        assert_problem(await client.get(f"/users/{uuid.uuid4()}", headers=owner), 404)  # caller loaded
        assert_problem(await client.get(f"/users/{uuid.uuid4()}", headers=owner), 404)  # caller remembered
