"""The wire log (tests/wire_log.py) and the Citus rules it holds every test to.

conftest.py checks the rules after every test that talks to the database; these tests
prove that the check can fail, and that the statements with a Citus-specific reason to
exist are sent as intended.
"""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine

from atrium.platform.db.alembic_runner import upgrade_platform
from atrium.platform.db.binding import create_shared_schema
from atrium.platform.tenancy.provisioning import tenant_tables_ddl
from tests import servers
from tests.conftest import MadeTenant
from tests.wire_log import Message, names_table, rule_breaks, statement_count

TABLES = ("users", "user_meta", "media")


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1; SELECT 2", 2),
        ("SELECT ';' AS semi", 1),
        ("SELECT 'it''s; here'", 1),
        ('SELECT 1 AS "a;b"', 1),
        ("SELECT $$ a; b $$", 1),
        ("SELECT $fn$ a; b $fn$; SELECT 2", 2),
        ("SELECT 1 -- a; comment\n", 1),
        ("SELECT 1 /* a; b */", 1),
        ("CREATE TABLE a (x int);\nCREATE INDEX ix ON a (x)", 2),
    ],
)
def test_statements_are_counted_outside_literals_and_comments(sql: str, count: int) -> None:
    assert statement_count(sql) == count


def test_tenant_tables_are_found_bare_or_quoted_but_not_in_literals() -> None:
    assert names_table('SELECT * FROM "tenant_a".users', TABLES) == {"users"}
    assert names_table('SELECT * FROM "tenant_a"."user_meta"', TABLES) == {"user_meta"}
    assert names_table("SELECT 'users' FROM pg_user", TABLES) == set()
    assert names_table("SELECT * FROM media_types", TABLES) == set()


def test_the_rules_name_each_break() -> None:
    combined = Message("P", "SELECT set_config('search_path', $1, true), id FROM users WHERE id = $2")
    batch = Message("Q", "CREATE TABLE a (x int);\nCREATE INDEX ix ON a (x)")
    alone = Message("P", "SELECT set_config('search_path', $1, true)")
    breaks = rule_breaks([combined, batch, alone], TABLES)
    assert len(breaks) == 2
    assert "set_config with tenant tables ['users']" in breaks[0]
    assert "several statements in one message" in breaks[1]


def test_the_log_sees_what_reaches_the_server(database_url: str, wire: servers.WireLog) -> None:
    wire.messages()  # what came before is the autouse check's business
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT 1; SELECT 2")  # no parameters: one simple-protocol message
        conn.execute("SELECT set_config('search_path', %s, true), count(*) FROM pg_class users", ["x"])
    breaks = wire.rule_breaks()  # consumed here, so the autouse check sees none of them
    assert [b.split(":")[0] for b in breaks] == [
        "several statements in one message",
        "set_config with tenant tables ['users']",
    ]


def test_provisioning_sends_every_ddl_statement_alone(make_tenant: object, wire: servers.WireLog) -> None:
    wire.messages()
    made: MadeTenant = make_tenant()  # type: ignore[operator]
    sent = [m.sql for m in wire.messages()]
    ddl = tenant_tables_ddl()
    assert all(statement_count(s) == 1 for s in ddl)
    assert [s for s in sent if s in ddl] == list(ddl)
    assert f'CREATE SCHEMA "{made.tenant.schema}"' in sent


def test_the_platform_schema_is_made_with_schema_sharding_off(
    operator_engine: Engine, wire: servers.WireLog
) -> None:
    wire.messages()
    with operator_engine.begin() as conn:
        upgrade_platform(conn)
    sent = [m.sql for m in wire.messages()]
    create = next(i for i, s in enumerate(sent) if s.startswith("CREATE SCHEMA IF NOT EXISTS"))
    assert "citus.enable_schema_based_sharding" in sent[create - 1]


def test_schema_sharding_is_switched_off_only_where_the_setting_exists(operator_engine: Engine) -> None:
    setting = "citus.enable_schema_based_sharding"
    # A custom placeholder stands in for the Citus setting: PostgreSQL accepts any dotted
    # name in SET, and ``current_setting(name, true)`` then finds it, as it would Citus'.
    with operator_engine.connect() as conn:
        conn.exec_driver_sql(f"SET {setting} = on")
        conn.commit()  # a session-wide SET outlives the transaction it ran in
        with conn.begin():
            create_shared_schema(conn, "wire_rules_shared")
            assert conn.exec_driver_sql(f"SELECT current_setting('{setting}')").scalar() == "off"
            conn.exec_driver_sql('DROP SCHEMA "wire_rules_shared"')
        assert conn.exec_driver_sql(f"SELECT current_setting('{setting}')").scalar() == "on"
        conn.invalidate()  # the placeholder must not reach other tests through the pool
    with operator_engine.connect() as conn, conn.begin():
        create_shared_schema(conn, "wire_rules_shared")
        assert conn.exec_driver_sql(f"SELECT current_setting('{setting}', true)").scalar() is None
        conn.exec_driver_sql('DROP SCHEMA "wire_rules_shared"')
