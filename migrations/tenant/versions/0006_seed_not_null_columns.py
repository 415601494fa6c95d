"""the seed's NOT NULL columns

``user_groups.owner_id``, ``user_roles.owner_id``, ``media.owner_id``,
``user_meta.user_groups`` and ``user_meta.user_roles`` become NOT NULL, as the seed
outlines them (API.md §6). Rows without an owner go to the tenant's owner, links
without a group to the built-in ``Everyone`` group, links without a role to the
built-in ``Member`` role. The owner foreign keys change from SET NULL to RESTRICT:
deleting a user now hands their rows to another user first, in the same transaction.

The tenant's owner is the registry's ``owner_id`` for this schema when the registry
is there and names a user of it; otherwise the user linked longest to the ``Owner``
role; otherwise the oldest user. A built-in group or role that was deleted is made
again, owned by the tenant's owner, when a row needs it.

The downgrade restores the nullable columns and SET NULL; the filled values stay.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED_TABLES = ("user_groups", "user_roles", "media")
# The built-in names and the Member role's permissions at this revision: a migration
# must not change when the application's lists do.
OWNER_ROLE, MEMBER_ROLE, EVERYONE_GROUP = "Owner", "Member", "Everyone"
MEMBER_PERMISSIONS = [
    f"{r}:read" for r in ("users", "user-meta", "user-groups", "user-roles", "customize", "media")
]


def _fk(table: str) -> str:
    return f"fk_{table}_owner_id_users"


def _tenant_owner(bind: sa.Connection) -> object:
    if bind.scalar(sa.text("SELECT to_regclass('platform.tenants')")) is not None:
        # current_schema() is the tenant's: the runner bound the search_path to it alone.
        # Two statements, not a join: the registry and the tenant's tables may live on
        # different servers (Citus schema-based sharding).
        registered = bind.scalar(
            sa.text("SELECT owner_id FROM platform.tenants WHERE schema_name = current_schema()")
        )
        if registered is not None and bind.scalar(
            sa.text("SELECT EXISTS (SELECT FROM users WHERE id = :u)"), {"u": registered}
        ):
            return registered
    return bind.scalar(
        sa.text(
            "SELECT coalesce("
            " (SELECT m.owner_id FROM user_meta m JOIN user_roles r ON r.id = m.user_roles"
            "  WHERE r.name = :owner_role ORDER BY m.created_at, m.id LIMIT 1),"
            " (SELECT id FROM users ORDER BY created_at, id LIMIT 1))"
        ),
        {"owner_role": OWNER_ROLE},
    )


def _builtin(bind: sa.Connection, table: str, name: str, owner: object, **extra: object) -> object:
    found = bind.scalar(
        sa.text(f"SELECT id FROM {table} WHERE name = :name ORDER BY created_at, id LIMIT 1"), {"name": name}
    )
    if found is not None:
        return found
    columns = ", ".join(["name", "owner_id", *extra])
    values = ", ".join([":name", ":owner", *(f":{k}" for k in extra)])
    return bind.scalar(
        sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id"),
        {"name": name, "owner": owner, **extra},
    )


def _has_nulls(bind: sa.Connection, table: str, column: str) -> bool:
    return bool(bind.scalar(sa.text(f"SELECT EXISTS (SELECT FROM {table} WHERE {column} IS NULL)")))


def upgrade() -> None:
    bind = op.get_bind()
    ownerless = [t for t in OWNED_TABLES if _has_nulls(bind, t, "owner_id")]
    no_group = _has_nulls(bind, "user_meta", "user_groups")
    no_role = _has_nulls(bind, "user_meta", "user_roles")
    if ownerless or no_group or no_role:
        owner = _tenant_owner(bind)
        if owner is None:
            raise RuntimeError("rows have no owner and the tenant has no user to own them")
        for table in ownerless:
            op.execute(
                sa.text(f"UPDATE {table} SET owner_id = :o WHERE owner_id IS NULL").bindparams(o=owner)
            )
        if no_group:
            group = _builtin(bind, "user_groups", EVERYONE_GROUP, owner)
            op.execute(
                sa.text("UPDATE user_meta SET user_groups = :g WHERE user_groups IS NULL").bindparams(g=group)
            )
        if no_role:
            role = _builtin(bind, "user_roles", MEMBER_ROLE, owner, permissions=MEMBER_PERMISSIONS)
            op.execute(
                sa.text("UPDATE user_meta SET user_roles = :r WHERE user_roles IS NULL").bindparams(r=role)
            )
    for table in OWNED_TABLES:
        op.alter_column(table, "owner_id", existing_type=sa.Uuid(), nullable=False)
        op.drop_constraint(_fk(table), table, type_="foreignkey")
        op.create_foreign_key(_fk(table), table, "users", ["owner_id"], ["id"], ondelete="RESTRICT")
    op.alter_column("user_meta", "user_groups", existing_type=sa.Uuid(), nullable=False)
    op.alter_column("user_meta", "user_roles", existing_type=sa.Uuid(), nullable=False)


def downgrade() -> None:
    op.alter_column("user_meta", "user_roles", existing_type=sa.Uuid(), nullable=True)
    op.alter_column("user_meta", "user_groups", existing_type=sa.Uuid(), nullable=True)
    for table in reversed(OWNED_TABLES):
        op.drop_constraint(_fk(table), table, type_="foreignkey")
        op.create_foreign_key(_fk(table), table, "users", ["owner_id"], ["id"], ondelete="SET NULL")
        op.alter_column(table, "owner_id", existing_type=sa.Uuid(), nullable=True)
