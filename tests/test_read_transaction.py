"""Hot reads run on the request's ``ReadTransaction``: it never outlives its request."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine

from atrium.platform.settings import Settings
from tests.api import add_user, assert_problem, new_tenant, serve_api
from tests.conftest import login

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


async def test_reads_past_the_last_page_still_count(settings: Settings, operator_engine: Engine) -> None:
    made = new_tenant(operator_engine, "rp")
    async with serve_api(settings) as (_, client):
        owner = await login(client, made.host, made.owner_email, made.owner_password)
        page = await client.get("/user-roles", params={"offset": 50}, headers=owner)
        assert page.status_code == 200
        assert page.json() == {"items": [], "total": 3, "limit": 50, "offset": 50}
        first = (await client.get("/user-roles", params={"limit": 2}, headers=owner)).json()
        assert first["total"] == 3 and len(first["items"]) == 2
