"""Existing tenants' built-in roles equal a new tenant's after migrating (API.md §4), and
migration 0008 keeps custom roles' powers, both ways."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import Connection, Engine

from atrium.platform.db.alembic_runner import run_downgrade, run_upgrade
from atrium.platform.db.binding import set_transaction_search_path
from atrium.platform.security.permissions import builtin_roles
from atrium.platform.tenancy.naming import quote_ident
from tests.conftest import MadeTenant, unique_slug

SIX = ("users", "user-groups", "user-roles", "user-meta", "customize", "media")
# The built-in roles as provisioning made them at revision 0001.
ROLES_AT_0001 = {
    "Owner": ["*"],
    "Admin": [f"{r}:{a}" for r in SIX for a in ("read", "write")],
    "Member": [f"{r}:read" for r in SIX],
}
# ... and custom roles a tenant may have made then, with what 0008 must make of them.
CUSTOM_ROLES = {
    "Editor": (
        ["media:write", "users:read", "customize:write"],
        ["media:write", "media:manage", "users:read", "customize:write", "customize:manage"],
    ),
    "Reader": (["media:read"], ["media:read"]),
    "Writer without read": (["user-groups:write"], ["user-groups:write", "user-groups:manage"]),
    "Nothing": ([], []),
}


def _roles(conn: Connection, schema: str) -> dict[str, set[str]]:
    """Every role's permissions, by name (as sets: their order means nothing)."""
    set_transaction_search_path(conn, schema)
    rows = conn.exec_driver_sql("SELECT name, permissions FROM user_roles").all()
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), f"two roles of one name in {schema}: {names}"
    return {name: set(permissions) for name, permissions in rows}


def _groups(conn: Connection, schema: str) -> set[str]:
    set_transaction_search_path(conn, schema)
    return {name for (name,) in conn.exec_driver_sql("SELECT name FROM user_groups")}


def _seed_at_0001(conn: Connection, schema: str) -> None:
    """A tenant as provisioning made it at revision 0001, with a few custom roles."""
    conn.exec_driver_sql(f"CREATE SCHEMA {quote_ident(schema)}")
    run_upgrade(conn, "tenant", schema, "0001")
    set_transaction_search_path(conn, schema)
    owner = uuid.uuid4()
    conn.exec_driver_sql(
        "INSERT INTO users (id, name, email, phone, password)"
        " VALUES (%(id)s, 'O', 'o@example.com', '1', 'x')",
        {"id": owner},
    )
    roles = {**ROLES_AT_0001, **{name: before for name, (before, _) in CUSTOM_ROLES.items()}}
    ids = {name: uuid.uuid4() for name in roles}
    for name, permissions in roles.items():
        conn.exec_driver_sql(
            "INSERT INTO user_roles (id, name, owner_id, permissions) VALUES (%(id)s, %(n)s, %(o)s, %(p)s)",
            {"id": ids[name], "n": name, "o": owner, "p": permissions},
        )
    group = uuid.uuid4()
    conn.exec_driver_sql(
        "INSERT INTO user_groups (id, name, owner_id) VALUES (%(g)s, 'Everyone', %(o)s)",
        {"g": group, "o": owner},
    )
    conn.exec_driver_sql(
        "INSERT INTO user_meta (owner_id, user_groups, user_roles) VALUES (%(o)s, %(g)s, %(r)s)",
        {"o": owner, "g": group, "r": ids["Owner"]},
    )


def test_a_migrated_tenant_has_the_built_in_roles_of_a_provisioned_one(
    operator_engine: Engine, make_tenant: Callable[..., MadeTenant]
) -> None:
    provisioned = make_tenant().tenant.schema
    migrated = "tenant_roles_" + unique_slug("m").replace("-", "_")
    with operator_engine.begin() as conn:
        _seed_at_0001(conn, migrated)
    with operator_engine.begin() as conn:
        run_upgrade(conn, "tenant", migrated)
    with operator_engine.begin() as conn:
        new, old = _roles(conn, provisioned), _roles(conn, migrated)
        new_groups, old_groups = _groups(conn, provisioned), _groups(conn, migrated)
    builtin = set(builtin_roles())
    assert set(new) == builtin
    assert {name: old[name] for name in builtin} == new
    assert {name: set(p) for name, p in builtin_roles().items()} == new
    assert old_groups == new_groups == {"Everyone"}
    # Custom roles keep their powers: whoever could change any row still can.
    assert {name: old[name] for name in CUSTOM_ROLES} == {
        name: set(after) for name, (_, after) in CUSTOM_ROLES.items()
    }
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {quote_ident(migrated)} CASCADE")


def test_0008_downgrade_gives_back_the_permissions_of_0006(operator_engine: Engine) -> None:
    schema = "tenant_roles_down_" + unique_slug("d").replace("-", "_")
    with operator_engine.begin() as conn:
        _seed_at_0001(conn, schema)
        run_upgrade(conn, "tenant", schema, "0006")
    with operator_engine.begin() as conn:
        before = _roles(conn, schema)
    with operator_engine.begin() as conn:
        run_upgrade(conn, "tenant", schema, "0008")
        set_transaction_search_path(conn, schema)
        # A role made after the upgrade with manage alone: it could change any row.
        owner = conn.exec_driver_sql("SELECT id FROM users").scalar_one()
        conn.exec_driver_sql(
            "INSERT INTO user_roles (name, owner_id, permissions)"
            " VALUES ('Moderator', %(o)s, '{media:manage}')",
            {"o": owner},
        )
        assert _roles(conn, schema) != before
    with operator_engine.begin() as conn:
        run_downgrade(conn, "tenant", schema, "0006")
    with operator_engine.begin() as conn:
        after = _roles(conn, schema)
        conn.exec_driver_sql(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
    assert after == {**before, "Moderator": {"media:write"}}
