"""help desk: tickets and their replies

Revision ID: 0011_helpdesk
Revises: 0010_projects_and_forums
Create Date: 2026-12-06 23:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from atrium.platform.security.role_grants import grant_builtin_role_permissions, set_builtin_role_permissions

# revision identifiers, used by Alembic.
revision: str = "0011_helpdesk"
down_revision: str | Sequence[str] | None = "0010_projects_and_forums"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIORITY_RANK = (
    "CASE priority WHEN 'low' THEN 0 WHEN 'normal' THEN 1 WHEN 'high' THEN 2 WHEN 'urgent' THEN 3 END"
)


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("requester_id", sa.Uuid(), sa.Computed("owner_id", persisted=True), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.String(length=20), server_default="new", nullable=False),
        sa.Column("priority", sa.String(length=10), server_default="normal", nullable=False),
        sa.Column(
            "priority_rank", sa.SmallInteger(), sa.Computed(PRIORITY_RANK, persisted=True), nullable=False
        ),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("tags", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("follow_up_of", sa.Uuid(), nullable=True),
        sa.Column("solved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        *_times(),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_tickets_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["users.id"], name=op.f("fk_tickets_assignee_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["follow_up_of"],
            ["tickets.id"],
            name=op.f("fk_tickets_follow_up_of_tickets"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
    )
    op.create_index(op.f("ix_tickets_owner_id"), "tickets", ["owner_id"], unique=False)
    op.create_index(op.f("ix_tickets_follow_up_of"), "tickets", ["follow_up_of"], unique=False)
    op.create_index(
        "ix_tickets_assignee_status", "tickets", ["assignee_id", "status", "created_at"], unique=False
    )
    op.create_index("ix_tickets_tags", "tickets", ["tags"], unique=False, postgresql_using="gin")
    op.create_index(
        "ix_tickets_search",
        "tickets",
        [sa.text("to_tsvector('english'::regconfig, (coalesce(subject, '') || ' ') || coalesce(body, ''))")],
        postgresql_using="gin",
    )
    op.create_table(
        "ticket_replies",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(length=10), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_replies_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_ticket_replies_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_replies")),
    )
    op.create_index(op.f("ix_ticket_replies_owner_id"), "ticket_replies", ["owner_id"], unique=False)
    op.create_index("ix_ticket_replies_ticket", "ticket_replies", ["ticket_id", "created_at"], unique=False)
    op.create_index(
        "ix_ticket_replies_search",
        "ticket_replies",
        [sa.text("to_tsvector('english'::regconfig, coalesce(body, ''))")],
        postgresql_using="gin",
    )
    grant_builtin_role_permissions(op, "help-desk", member="write")


def downgrade() -> None:
    op.drop_table("ticket_replies")
    op.drop_table("tickets")
    # Nothing grants help-desk below this revision.
    for role in ("Admin", "Member"):
        set_builtin_role_permissions(op, role, "help-desk", [])
