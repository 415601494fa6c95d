"""forms and form_responses, granted to the built-in roles

Revision ID: 0013_forms
Revises: 0012_invoices
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
revision: str = "0013_forms"
down_revision: str | Sequence[str] | None = "0012_invoices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH = "to_tsvector('english'::regconfig, (coalesce(title, '') || ' ') || coalesce(description, ''))"


def upgrade() -> None:
    op.create_table(
        "forms",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=10), server_default="draft", nullable=False),
        sa.Column("public", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("fields", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("response_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('draft', 'open', 'closed')", name=op.f("ck_forms_status")),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_forms_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forms")),
    )
    op.create_index(op.f("ix_forms_owner_id"), "forms", ["owner_id"], unique=False)
    op.create_index("ix_forms_search", "forms", [sa.text(SEARCH)], postgresql_using="gin")
    op.create_table(
        "form_responses",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("form_id", sa.Uuid(), nullable=False),
        sa.Column("answers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("form_version", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["form_id"], ["forms.id"], name=op.f("fk_form_responses_form_id_forms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_form_responses_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_responses")),
    )
    op.create_index(
        "ix_form_responses_form_created", "form_responses", ["form_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_form_responses_owner_id"), "form_responses", ["owner_id"], unique=False)
    grant_builtin_role_permissions(op, "forms", member="read")
    grant_builtin_role_permissions(op, "form-responses", member="write")


def downgrade() -> None:
    revoke_builtin_role_permissions(op, "form-responses")
    revoke_builtin_role_permissions(op, "forms")
    op.drop_table("form_responses")
    op.drop_table("forms")
