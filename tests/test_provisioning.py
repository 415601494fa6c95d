"""Provisioning: atomic, safe under concurrency, and equal to running every migration."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, select, text

from atrium.platform.db.alembic_runner import (
    current_revision,
    head_revision,
    run_downgrade,
    run_upgrade,
)
from atrium.platform.db.binding import set_transaction_search_path
from atrium.platform.tenancy import provisioning
from atrium.platform.tenancy.naming import quote_ident, schema_for_slug
from atrium.platform.tenancy.provisioning import OwnerSpec, TenantExists, provision_tenant
from atrium.platform.tenancy.registry import Tenant
from atrium.tenants.models import tenant_metadata
from tests.conftest import MadeTenant, unique_slug

OWNER = OwnerSpec("Owner", "owner@example.com", "+1 555 0100", "correct horse battery")


def schema_exists(engine: Engine, schema: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}))


def registry_has(engine: Engine, slug: str) -> bool:
    with engine.connect() as conn:
        return conn.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None


def test_provisioned_tenant_has_owner_roles_and_group(
    operator_engine: Engine, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    with operator_engine.begin() as conn:
        set_transaction_search_path(conn, made.tenant.schema)
        roles = dict(conn.execute(text("SELECT name, permissions FROM user_roles")).all())
        groups = conn.scalars(text("SELECT name FROM user_groups")).all()
        owner = conn.execute(text("SELECT id, email, password FROM users")).one()
        link = conn.execute(
            text(
                "SELECT r.name, g.name FROM user_meta m JOIN user_roles r ON r.id = m.user_roles "
                "JOIN user_groups g ON g.id = m.user_groups WHERE m.owner_id = :u"
            ),
            {"u": owner.id},
        ).one()
        version = current_revision(conn, made.tenant.schema)
    assert set(roles) == {"Owner", "Admin", "Member"}
    assert roles["Owner"] == ["*"]
    assert "users:manage" in roles["Admin"] and "users:read" in roles["Member"]
    assert "media:write" in roles["Member"] and "users:write" not in roles["Member"]
    assert groups == ["Everyone"]
    assert owner.email == made.owner_email and owner.id == made.tenant.owner_id
    assert owner.password.startswith("$2b$") and made.owner_password not in owner.password
    assert tuple(link) == ("Owner", "Everyone")
    assert version == head_revision("tenant") == made.tenant.version


def test_failure_midway_leaves_nothing(operator_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    slug = unique_slug("fail")

    def broken_seed(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected failure after the tables were created")

    monkeypatch.setattr(provisioning, "seed_tenant", broken_seed)
    with pytest.raises(RuntimeError, match="injected"):
        provision_tenant(operator_engine, slug, "Doomed", OWNER, bcrypt_rounds=4)
    assert not schema_exists(operator_engine, schema_for_slug(slug))
    assert not registry_has(operator_engine, slug)


def test_concurrent_creations_of_one_slug_yield_one_tenant(operator_engine: Engine) -> None:
    slug = unique_slug("race")
    barrier = threading.Barrier(4)
    results: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            results.append(provision_tenant(operator_engine, slug, "Racer", OWNER, bcrypt_rounds=4))
        except TenantExists as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, TenantExists)]
    assert len(created) == 1 and len(refused) == 3
    assert all(str(e) == f"tenant {slug!r} already exists" for e in refused)
    with operator_engine.connect() as conn:
        assert conn.scalar(select(text("count(*)")).select_from(Tenant).where(Tenant.slug == slug)) == 1


def _catalog(engine: Engine, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """Everything about a schema that could differ, with the schema name left out."""
    queries = {
        "columns": """
            SELECT table_name, column_name, ordinal_position, data_type, udt_name, is_nullable,
                   column_default, character_maximum_length
            FROM information_schema.columns WHERE table_schema = :s ORDER BY 1, 3""",
        "constraints": """
            SELECT cl.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)
            FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid
            JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = :s ORDER BY 1, 2""",
        "indexes": """
            SELECT cl.relname, ix.relname,
                   replace(pg_get_indexdef(i.indexrelid), ' ON ' || n.nspname || '.', ' ON ')
            FROM pg_index i JOIN pg_class ix ON ix.oid = i.indexrelid JOIN pg_class cl ON cl.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = :s ORDER BY 1, 2""",
    }
    with engine.begin() as conn:
        set_transaction_search_path(conn, schema)  # definitions then print unqualified names
        return {
            name: [tuple(row) for row in conn.execute(text(sql), {"s": schema})]
            for name, sql in queries.items()
        }


def test_fast_path_equals_running_every_migration(
    operator_engine: Engine, make_tenant: Callable[..., MadeTenant]
) -> None:
    fast = make_tenant().tenant.schema
    migrated = "tenant_migrated_" + unique_slug("m").replace("-", "_")
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {quote_ident(migrated)}")
        run_upgrade(conn, "tenant", migrated)
    for schema in (fast, migrated):
        with operator_engine.begin() as conn:
            set_transaction_search_path(conn, schema)
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            diffs = [
                d for d in compare_metadata(context, tenant_metadata) if "alembic_version" not in repr(d)
            ]
        assert diffs == [], f"{schema} differs from the models: {diffs}"
    assert _catalog(operator_engine, fast) == _catalog(operator_engine, migrated)


def test_revocations_survive_rekeying_by_jti_up_and_down(operator_engine: Engine) -> None:
    """Migration 0003 rebuilds revoked_tokens keyed by jti; the revocations stay, both ways."""
    schema = "tenant_rekey_" + unique_slug("r").replace("-", "_")
    rows = {"a" * 32: "2030-01-01 00:00:00+00", "b" * 32: "2031-01-01 00:00:00+00"}

    def revocations(conn: Connection) -> dict[str, str]:
        result = conn.exec_driver_sql("SELECT jti, expires_at::text FROM revoked_tokens")
        return {jti: expires for jti, expires in result.all()}

    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {quote_ident(schema)}")
        run_upgrade(conn, "tenant", schema, "0002")
        set_transaction_search_path(conn, schema)
        for jti, expires in rows.items():
            conn.exec_driver_sql(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (%(j)s, %(e)s)", {"j": jti, "e": expires}
            )
    with operator_engine.begin() as conn:
        run_upgrade(conn, "tenant", schema, "0003")
        set_transaction_search_path(conn, schema)
        assert revocations(conn) == rows
        key = conn.exec_driver_sql(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pk_revoked_tokens'"
            " AND connamespace = %(s)s::regnamespace",
            {"s": schema},
        ).scalar()
        assert key == "PRIMARY KEY (jti)"
    with operator_engine.begin() as conn:
        run_downgrade(conn, "tenant", schema, "0002")
        set_transaction_search_path(conn, schema)
        assert revocations(conn) == rows
        assert conn.exec_driver_sql("SELECT count(DISTINCT id) FROM revoked_tokens").scalar() == len(rows)
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {quote_ident(schema)} CASCADE")


def test_revocations_on_users_rows_move_back_to_the_table_on_downgrade(operator_engine: Engine) -> None:
    """Migration 0004 keeps revocations on users' rows; its downgrade loses none in force."""
    schema = "tenant_revmove_" + unique_slug("r").replace("-", "_")
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {quote_ident(schema)}")
        run_upgrade(conn, "tenant", schema, "0004")
        set_transaction_search_path(conn, schema)
        conn.exec_driver_sql(
            "INSERT INTO users (name, email, phone, password, revoked_token_ids) VALUES"
            " ('a', 'a@example.com', '1', 'x', '{\"in-force\": 1924992000, \"expired\": 946684800}'),"
            " ('b', 'b@example.com', '1', 'x', '{}')"
        )
        conn.exec_driver_sql(
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ('from-before', '2031-01-01 00:00:00+00')"
        )
    with operator_engine.begin() as conn:
        run_downgrade(conn, "tenant", schema, "0003")
        set_transaction_search_path(conn, schema)
        result = conn.exec_driver_sql("SELECT jti, expires_at::text FROM revoked_tokens ORDER BY jti")
        assert dict(result.all()) == {
            "from-before": "2031-01-01 00:00:00+00",
            "in-force": "2031-01-01 00:00:00+00",
        }
        columns = conn.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %(s)s AND table_name = 'users'",
            {"s": schema},
        )
        assert "revoked_token_ids" not in {c for (c,) in columns}
    with operator_engine.begin() as conn:
        run_upgrade(conn, "tenant", schema)
        set_transaction_search_path(conn, schema)
        assert conn.exec_driver_sql("SELECT DISTINCT revoked_token_ids::text FROM users").scalar_one() == "{}"
        conn.exec_driver_sql(f"DROP SCHEMA {quote_ident(schema)} CASCADE")


def _relations_locked_by(conn: Connection, pid: int, schema: str) -> set[str]:
    return set(
        conn.scalars(
            text(
                "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE l.pid = :pid AND l.granted AND n.nspname = :schema AND c.relkind = 'r'"
            ),
            {"pid": pid, "schema": schema},
        )
    )


def test_a_drop_chosen_as_deadlock_victim_runs_again(
    operator_engine: Engine, make_tenant: Callable[..., MadeTenant]
) -> None:
    """A request holding one table and then locking another the drop already holds is a
    real deadlock; PostgreSQL aborts the drop (it waited first), and the delete still ends."""
    made = make_tenant()
    schema = made.tenant.schema
    request = operator_engine.connect()
    request.begin()
    # Like an INSERT in flight: it holds the table the drop reaches last.
    request.exec_driver_sql(f"LOCK TABLE {quote_ident(schema)}.users IN ROW EXCLUSIVE MODE")
    outcome: list[object] = []
    deleting = threading.Thread(
        target=lambda: outcome.append(provisioning.delete_tenant(operator_engine, made.slug)), daemon=True
    )
    deleting.start()
    try:
        with operator_engine.connect() as watch:
            for _ in range(200):
                pid = watch.scalar(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE 'DROP SCHEMA%'"
                        " AND strpos(query, :schema) > 0 AND wait_event_type = 'Lock'"
                    ),
                    {"schema": schema},
                )
                held = _relations_locked_by(watch, pid, schema) if pid else set()
                if held:
                    break
                watch.rollback()
                time.sleep(0.02)
        assert held, "the drop never waited holding a table"
        # ...and now, like its foreign key check, it wants one the drop holds: a cycle.
        request.exec_driver_sql(
            f"LOCK TABLE {quote_ident(schema)}.{quote_ident(sorted(held)[0])} IN ROW SHARE MODE"
        )
        request.commit()
    finally:
        request.close()
        deleting.join(timeout=30)
    assert outcome == [made.tenant.id]
    with operator_engine.connect() as conn:
        assert conn.scalar(select(Tenant.id).where(Tenant.slug == made.slug)) is None
        assert conn.scalar(text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}) == 0
