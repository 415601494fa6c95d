"""Pooled connections keep their prepared statements: enough of them, and through the
platform's own read-only lookups (which must not roll back: psycopg then drops them all)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
from litestar import get, post
from litestar.di import NamedDependency
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import greenlet_spawn

from atrium.platform.app import create_app_from_env
from atrium.platform.db.engines import create_app_engine
from atrium.platform.settings import Settings, SettingsError, load_settings
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.errors import problem
from tests.conftest import MadeTenant, serve, server_prepared, statements_run

PROBE = "SELECT 1 AS kept_prepared"


async def _prepare_probe(engine: Any) -> None:
    """Prepare ``PROBE`` on a pooled connection (the only one, in these tests)."""
    fairy = await engine.raw_connection()
    try:
        await fairy.driver_connection.execute(PROBE, prepare=True)
        await fairy.driver_connection.commit()
        assert PROBE in await server_prepared(fairy.driver_connection)
    finally:
        await greenlet_spawn(fairy.close)


async def _probe_still_prepared(engine: Any) -> bool:
    fairy = await engine.raw_connection()
    try:
        return PROBE in await server_prepared(fairy.driver_connection)
    finally:
        await greenlet_spawn(fairy.close)


async def test_pooled_connections_keep_the_configured_number_of_statements(settings: Settings) -> None:
    engine = create_app_engine(settings.with_overrides(db_prepared_max=7))
    try:
        fairy = await engine.raw_connection()
        try:
            assert fairy.driver_connection.prepared_max == 7
        finally:
            await greenlet_spawn(fairy.close)
    finally:
        await engine.dispose()


def test_the_prepared_statement_budget_is_read_from_the_environment() -> None:
    env = {"DATABASE_URL": "postgresql://root@127.0.0.1:5432/x", "ATRIUM_SECRET_KEY": "k" * 40}
    assert load_settings(env).db_prepared_max == 512
    assert load_settings({**env, "ATRIUM_DB_PREPARED_MAX": "1000"}).db_prepared_max == 1000
    with pytest.raises(SettingsError, match="ATRIUM_DB_PREPARED_MAX"):
        load_settings({**env, "ATRIUM_DB_PREPARED_MAX": "0"})


async def test_host_lookups_and_health_checks_keep_the_prepared_statements(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    # One pooled connection: the lookup and the health check must use the very one that
    # holds the prepared statement.
    one_connection = settings.with_overrides(db_pool_size=1, db_max_overflow=0)
    async with serve(one_connection) as (app, client):
        await _prepare_probe(app.state.engine)
        resolved = await app.state.resolver.resolve(made.host)  # not cached: one lookup
        assert resolved is not None and resolved.id == made.tenant.id
        assert (await client.get("/health")).status_code == 200
        assert await _probe_still_prepared(app.state.engine)


def test_the_server_entry_point_freezes_what_it_built(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ATRIUM_SECRET_KEY", settings.secret_key)
    monkeypatch.delenv("REDIS_URL", raising=False)
    gc.unfreeze()
    try:
        create_app_from_env()
        # The app's long-lived objects are out of the collector's walks.
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


async def test_host_lookups_are_one_statement_whatever_their_size(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = [make_tenant() for _ in range(4)]
    async with serve(settings) as (app, _):
        resolver = app.state.resolver
        with statements_run(app.state.engine, "platform.tenants") as statements:
            first = await resolver.resolve(made[0].host)
            rest = await asyncio.gather(*(resolver.resolve(m.host) for m in made[1:]))
        assert [t.id if t else None for t in [first, *rest]] == [m.tenant.id for m in made]
        # One host, then three in one batch: the same text, so one prepared statement.
        assert len(statements) == 2 and statements[0] == statements[1], statements


@get("/probe/read-then-fail", exclude_from_auth=True)
async def read_then_fail(db_session: NamedDependency[AsyncSession]) -> None:
    await db_session.execute(text("SELECT count(*) FROM users"))
    raise problem(404, "Nothing here.")


@post("/probe/write-then-fail", exclude_from_auth=True)
async def write_then_fail(
    db_session: NamedDependency[AsyncSession], tenant: NamedDependency[ResolvedTenant]
) -> None:
    # A raw write: no flush, nothing the session itself would know about.
    await db_session.execute(
        text("INSERT INTO customize (tenant_id, data) VALUES (:tid, '{\"left\": true}')"), {"tid": tenant.id}
    )
    raise problem(409, "Changed my mind.")


async def test_an_error_answer_commits_a_session_that_wrote_nothing(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    one_connection = settings.with_overrides(db_pool_size=1, db_max_overflow=0)
    async with serve(one_connection, [read_then_fail], host=made.host) as (app, client):
        await client.get("/probe/read-then-fail")  # the host is resolved and cached
        await _prepare_probe(app.state.engine)
        response = await client.get("/probe/read-then-fail")
        assert response.status_code == 404
        assert await _probe_still_prepared(app.state.engine)


async def test_an_error_answer_still_rolls_back_what_the_session_wrote(
    settings: Settings, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    made = make_tenant()
    async with serve(settings, [write_then_fail], host=made.host) as (_, client):
        response = await client.post("/probe/write-then-fail")
        assert response.status_code == 409
    with operator_engine.connect() as conn:
        schema = quote_ident(made.tenant.schema)
        left = conn.execute(text(f"SELECT count(*) FROM {schema}.customize WHERE data ? 'left'")).scalar_one()
    assert left == 0
