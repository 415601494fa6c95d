"""events: calendar events with time zones and recurrence, and per-user feed tokens

API.md §7. Existing tenants' built-in roles gain ``events`` as new tenants' hold it:
Admin manages it; Member writes it.

Revision ID: 0015_events
Revises: 0014_documents
Create Date: 2026-12-07 00:20:00

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
revision: str = "0015_events"
down_revision: str | Sequence[str] | None = "0014_documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("all_day", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("location", sa.String(length=500), nullable=True),
        sa.Column("attendee_ids", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("recurrence", sa.String(length=1000), nullable=True),
        sa.Column("series_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_events_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_owner_id", "events", ["owner_id"])
    op.create_index("ix_events_span", "events", ["starts_at", "series_ends_at"])
    op.create_index("ix_events_attendee_ids", "events", ["attendee_ids"], postgresql_using="gin")
    op.create_index(
        "ix_events_search",
        "events",
        [
            sa.text(
                "to_tsvector('english'::regconfig, (coalesce(title, '') || ' ') || coalesce(description, ''))"
            )
        ],
        postgresql_using="gin",
    )
    op.create_table(
        "event_feed_tokens",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_event_feed_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_event_feed_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_event_feed_tokens_token_hash")),
    )
    grant_builtin_role_permissions(op, "events", member="write")


def downgrade() -> None:
    revoke_builtin_role_permissions(op, "events")
    op.drop_table("event_feed_tokens")
    op.drop_table("events")
