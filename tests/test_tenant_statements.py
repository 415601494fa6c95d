"""Statements naming a tenant's schema are converted to ``$n`` once, and run as written."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.platform.db.binding import RawQuery, TenantStatement
from atrium.platform.db.engines import create_app_engine
from atrium.platform.db.read_transaction import ReadTransaction, RowById
from atrium.platform.security.callers import LOAD_USER, check_and_fetch
from atrium.platform.settings import Settings
from atrium.platform.tenancy.naming import quote_ident
from tests.api import new_tenant


def test_placeholders_are_numbered_by_first_use_and_the_schema_is_quoted() -> None:
    statement = TenantStatement(
        "SELECT %(b)s, %(a)s, %(b)s, '{}', 100 %% 7 FROM {s}users WHERE x = %(a)s AND {s}users.id = %(c)s"
    )
    query = statement.for_tenant('tenant_a"b', {"a": 1, "b": "two", "c": None, "unused": 4})
    assert query == RawQuery(
        'SELECT $1, $2, $1, \'{}\', 100 % 7 FROM "tenant_a""b".users'
        ' WHERE x = $2 AND "tenant_a""b".users.id = $3',
        ["two", 1, None],
    )


def test_a_lone_percent_sign_or_a_missing_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="lone %"):
        TenantStatement("SELECT name FROM {s}users WHERE name LIKE 'a%'")
    with pytest.raises(KeyError):
        TenantStatement("SELECT %(a)s").for_tenant("tenant_x", {})


def test_braces_in_a_row_by_id_name_stay_literal() -> None:
    row = RowById("odd{table}", ("id", "x}"), "item_id")
    sql = TenantStatement(row.joined_to("true AS valid")).for_tenant("tenant_x", {"row_id": 1}).sql
    assert 'LEFT JOIN "tenant_x"."odd{table}" AS r' in sql and 'r."x}"' in sql


async def test_the_caller_statements_run_on_their_own_tenant_only(
    settings: Settings, operator_engine: Engine
) -> None:
    first, second = new_tenant(operator_engine, "ts-one"), new_tenant(operator_engine, "ts-two")
    engine: AsyncEngine = create_app_engine(settings)
    try:
        wanted = RowById("users", ("id", "email"), "item_id")
        for made, other in ((first.tenant, second.tenant), (second.tenant, first.tenant)):
            email = first.owner_email if made is first.tenant else second.owner_email
            params = {"user_id": made.owner_id, "jti": "never-revoked", "iat": 0, "row_id": made.owner_id}
            row = await ReadTransaction.fetch_alone(
                engine, check_and_fetch(wanted).for_tenant(made.schema, params)
            )
            assert row == (True, True, made.owner_id, email)
            # The same ids on the other tenant's schema: no such caller, no such row.
            elsewhere = check_and_fetch(wanted).for_tenant(other.schema, params)
            row = await ReadTransaction.fetch_alone(engine, elsewhere)
            assert row == (False, False, None, None)
            load = LOAD_USER.for_tenant(made.schema, {"user_id": made.owner_id, "jti": None, "iat": None})
            transaction, loaded = await ReadTransaction.begin(engine, made.schema, 1000, load)
            path = await transaction.fetch_one("SELECT current_setting('search_path')")
            await transaction.close()
            assert loaded is not None and loaded[0] == made.owner_id and "Owner" in loaded[6]
            assert path == (quote_ident(made.schema),)
    finally:
        await engine.dispose()


async def test_a_statement_run_about_once_per_caller_is_never_counted_nor_prepared(
    settings: Settings, operator_engine: Engine
) -> None:
    made = new_tenant(operator_engine, "ts-once").tenant
    engine: AsyncEngine = create_app_engine(settings.with_overrides(db_pool_size=1, db_max_overflow=0))
    params = {"user_id": made.owner_id, "jti": None, "iat": None, "row_id": made.owner_id}
    wanted = RowById("users", ("id",), "item_id")
    try:
        for _ in range(7):  # psycopg prepares a statement on its fifth run (or sixth)
            loaded = await ReadTransaction.fetch_alone(engine, LOAD_USER.for_tenant(made.schema, params))
            assert loaded is not None and loaded[0] == made.owner_id
            recurring = check_and_fetch(wanted).for_tenant(made.schema, {**params, "jti": "never-revoked"})
            assert await ReadTransaction.fetch_alone(engine, recurring) == (True, True, made.owner_id)
        transaction, _ = await ReadTransaction.begin(engine, made.schema, 1000)
        prepared = await transaction.fetch_all("SELECT statement FROM pg_prepared_statements")
        threshold = transaction._conn.prepare_threshold
        await transaction.close()
        texts = [text for (text,) in prepared]
        assert any(text == recurring.sql for text in texts)
        assert not any("array_agg" in text for text in texts)  # LOAD_USER's own
        assert threshold == 5  # psycopg's default, put back after each one-off statement
    finally:
        await engine.dispose()
