"""The per-transaction search_path binding never leaks between tenants."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import sessionmaker

from atrium.platform.db.binding import SCHEMA_INFO_KEY, attach_tenant_binding
from atrium.platform.settings import Settings
from tests import servers
from tests.conftest import MadeTenant, login_owner, serve
from tests.probes import PROBES

REQUESTS = 300


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
async def test_interleaved_requests_see_only_their_tenant(
    route: str, settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    tenants = [make_tenant(), make_tenant()]
    # One pooled connection: every request of both tenants goes through it.
    single = settings.with_overrides(db_pool_size=1, db_max_overflow=0, db_pool_timeout=120)
    with servers.pgbouncer(settings.database_url) if route == "pgbouncer" else _direct(settings) as url:
        if route == "pgbouncer":
            single = single.with_overrides(database_url=url, db_prepared_statements=False)
        async with serve(single, PROBES) as (app, client):
            # Real routes too: authentication and GET run on the driver connection
            # (read_transaction.py), the probes on advanced-alchemy's session.
            tokens = [await login_owner(client, t) for t in tenants]

            async def one(i: int) -> None:
                tenant = tenants[i % 2]
                schema = f'"{tenant.tenant.schema}"'
                if i % 3 == 1:
                    response = await client.get("/users", headers=tokens[i % 2])
                    assert response.status_code == 200, response.text
                    assert [u["email"] for u in response.json()["items"]] == [tenant.owner_email]
                    response = await client.get("/auth/me", headers=tokens[i % 2])
                    assert response.json()["user"]["email"] == tenant.owner_email
                elif i % 3 == 0:
                    response = await client.post("/probe/interleave", headers={"Host": tenant.host})
                    assert response.status_code == 200, response.text
                    body = response.json()
                    assert body["paths"] == [schema, schema]
                    assert body["emails"] == [[tenant.owner_email], [tenant.owner_email]]
                    assert body["foreign_rows"] == 0
                else:
                    response = await client.get("/probe/users", headers={"Host": tenant.host})
                    assert response.status_code == 200, response.text
                    assert response.json() == {"tenant": tenant.slug, "emails": [tenant.owner_email]}

            await asyncio.gather(*(one(i) for i in range(REQUESTS)))

            async with app.state.engine.connect() as conn:
                path = (await conn.execute(text("SHOW search_path"))).scalar_one()
                timeout = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
            # Transaction-local: nothing of the last request stays on the pooled connection.
            assert path == '"$user", public'
            assert timeout == "0"
            assert app.state.engine.pool.size() == 1


class _direct:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


def test_every_new_session_maker_is_bound(
    operator_engine: Engine, make_tenant: Callable[..., MadeTenant]
) -> None:
    """Each app builds its own maker; every one of them must bind its sessions.

    Makers freed and allocated again tend to reuse addresses; SQLAlchemy's event registry
    keys by address, and a guard built on ``event.contains`` once skipped the binding for
    such a maker (1 CI run in ~10: ``relation "users" does not exist`` on login).
    """
    schema = make_tenant().tenant.schema
    # What the suite has built so far is set aside from the collector, so that each
    # collection below frees the loop's makers without walking the whole test process
    # (a second each, 30 s in all, before).
    gc.freeze()
    try:
        for _ in range(30):
            maker = sessionmaker(bind=operator_engine)
            attach_tenant_binding(maker)
            attach_tenant_binding(maker)  # idempotent: one binding statement, not two
            with maker(info={SCHEMA_INFO_KEY: schema}) as session:
                assert session.execute(text("SHOW search_path")).scalar_one() == f'"{schema}"'
                assert session.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
            del maker, session
            gc.collect()
    finally:
        gc.unfreeze()
