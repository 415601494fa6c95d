"""projects and forums: projects with members and their discussions, forums and theirs

API.md §8. Existing tenants' built-in roles gain the four resources as new tenants'
hold them: Admin manages each; Member reads projects and forums and writes both kinds of
discussion.

Revision ID: 0010_projects_and_forums
Revises: 0009
Create Date: 2026-12-06 23:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from atrium.platform.security.role_grants import (
    grant_builtin_role_permissions,
    revoke_builtin_role_permissions,
)

# revision identifiers, used by Alembic.
revision: str = "0010_projects_and_forums"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What Member may do with each resource of this revision (written out: a migration must
# not change when the application's declarations do).
MEMBER_ACCESS = {
    "projects": "read",
    "project-discussions": "write",
    "forums": "read",
    "forum-discussions": "write",
}


def _search(table: str, first: str, second: str) -> None:
    expression = (
        f"to_tsvector('english'::regconfig, (coalesce({first}, '') || ' ') || coalesce({second}, ''))"
    )
    op.create_index(f"ix_{table}_search", table, [sa.text(expression)], postgresql_using="gin")


def _audit_columns() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def _discussions(table: str, container: str, containers: str, extra: list[sa.Column]) -> None:
    """A discussion table (tenants/discussions.py) in ``container``'s rows."""
    op.create_table(
        table,
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column(container, sa.Uuid(), nullable=False),
        *extra,
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("reply_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_reply_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        *_audit_columns(),
        sa.CheckConstraint(
            "(parent_id IS NULL) = (title IS NOT NULL)", name=op.f(f"ck_{table}_title_on_top_level")
        ),
        sa.ForeignKeyConstraint(
            [container],
            [f"{containers}.id"],
            name=op.f(f"fk_{table}_{container}_{containers}"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], [f"{table}.id"], name=op.f(f"fk_{table}_parent_id_{table}"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f(f"fk_{table}_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    )
    op.create_index(f"ix_{table}_owner_id", table, ["owner_id"])
    op.create_index(f"ix_{table}_parent", table, ["parent_id", "created_at"])
    _search(table, "title", "body")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("member_ids", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        *_audit_columns(),
        sa.CheckConstraint("status IN ('active', 'archived')", name=op.f("ck_projects_status")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_projects_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
    )
    op.create_index("ix_projects_owner_id", "projects", ["owner_id"])
    op.create_index("uq_projects_name_lower", "projects", [sa.text("lower(name)")], unique=True)
    op.create_index("ix_projects_member_ids", "projects", ["member_ids"], postgresql_using="gin")
    _search("projects", "name", "description")
    _discussions("project_discussions", "project_id", "projects", [])
    op.create_index("ix_project_discussions_project", "project_discussions", ["project_id", "created_at"])

    op.create_table(
        "forums",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_forums_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forums")),
    )
    op.create_index("ix_forums_owner_id", "forums", ["owner_id"])
    op.create_index("uq_forums_name_lower", "forums", [sa.text("lower(name)")], unique=True)
    _discussions(
        "forum_discussions",
        "forum_id",
        "forums",
        [
            sa.Column("pinned", sa.Boolean(), server_default="false", nullable=False),
            sa.Column("locked", sa.Boolean(), server_default="false", nullable=False),
        ],
    )
    op.create_index(
        "ix_forum_discussions_topics",
        "forum_discussions",
        [
            "forum_id",
            sa.text("pinned DESC"),
            sa.text("coalesce(last_reply_at, created_at) DESC"),
            sa.text("id DESC"),
        ],
        postgresql_where=sa.text("parent_id IS NULL"),
    )
    for resource, member in MEMBER_ACCESS.items():
        grant_builtin_role_permissions(op, resource, member=member)  # type: ignore[arg-type]


def downgrade() -> None:
    for resource in MEMBER_ACCESS:
        revoke_builtin_role_permissions(op, resource)
    for table in ("forum_discussions", "forums", "project_discussions", "projects"):
        # Dropping a table drops its indexes and constraints.
        op.drop_table(table)
