"""chats: rooms, their messages and read markers

API.md §9. Existing tenants' built-in roles gain chats as new tenants' hold it: Admin
manages it; Member writes (creates rooms, posts, edits their own messages).

Revision ID: 0016_chats
Revises: 0015_events
Create Date: 2026-12-07 00:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from atrium.platform.security.role_grants import grant_builtin_role_permissions, set_builtin_role_permissions

# revision identifiers, used by Alembic.
revision: str = "0016_chats"
down_revision: str | Sequence[str] | None = "0015_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _times() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=10), server_default="group", nullable=False),
        sa.Column("member_ids", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("direct_pair", sa.String(length=80), nullable=True),
        sa.Column("last_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        *_times(),
        sa.CheckConstraint("kind IN ('group', 'direct')", name=op.f("ck_chats_kind")),
        sa.CheckConstraint(
            "(kind = 'direct') = (direct_pair IS NOT NULL)", name=op.f("ck_chats_direct_pair_on_direct")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_chats_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chats")),
    )
    op.create_index(op.f("ix_chats_owner_id"), "chats", ["owner_id"], unique=False)
    op.create_index("ix_chats_member_ids", "chats", ["member_ids"], unique=False, postgresql_using="gin")
    op.create_index(
        "uq_chats_direct_pair",
        "chats",
        ["direct_pair"],
        unique=True,
        postgresql_where=sa.text("kind = 'direct'"),
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("chat_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default="false", nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name=op.f("fk_chat_messages_chat_id_chats"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["chat_messages.id"],
            name=op.f("fk_chat_messages_parent_id_chat_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_chat_messages_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
        sa.UniqueConstraint("chat_id", "seq", name="uq_chat_messages_chat_id_seq"),
    )
    op.create_index(op.f("ix_chat_messages_owner_id"), "chat_messages", ["owner_id"], unique=False)
    op.create_index("ix_chat_messages_parent_id", "chat_messages", ["parent_id"], unique=False)
    op.create_table(
        "chat_reads",
        sa.Column("chat_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chats.id"], name=op.f("fk_chat_reads_chat_id_chats"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_chat_reads_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("chat_id", "user_id", name=op.f("pk_chat_reads")),
    )
    grant_builtin_role_permissions(op, "chats", member="write")


def downgrade() -> None:
    op.drop_table("chat_reads")
    op.drop_table("chat_messages")
    op.drop_table("chats")
    # Nothing grants chats below this revision.
    for role in ("Admin", "Member"):
        set_builtin_role_permissions(op, role, "chats", [])
