"""invoices and their number counter

Revision ID: 0012_invoices
Revises: 0011_helpdesk
Create Date: 2026-12-06 23:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from atrium.platform.security.role_grants import grant_builtin_role_permissions, set_builtin_role_permissions

# revision identifiers, used by Alembic.
revision: str = "0012_invoices"
down_revision: str | Sequence[str] | None = "0011_helpdesk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH = (
    "to_tsvector('english'::regconfig, (coalesce(customer_name, '') || ' ') || coalesce(customer_email, ''))"
)


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="draft", nullable=False),
        sa.Column("customer_name", sa.String(length=200), nullable=False),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "amount_due", sa.BigInteger(), sa.Computed("total - amount_paid", persisted=True), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "amount_paid >= 0 AND amount_paid <= total", name=op.f("ck_invoices_amount_paid_within_total")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_invoices_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
    )
    op.create_index(op.f("ix_invoices_owner_id"), "invoices", ["owner_id"], unique=False)
    op.create_index("ix_invoices_status", "invoices", ["status", "created_at"], unique=False)
    op.create_index("ix_invoices_issue_date", "invoices", ["issue_date"], unique=False)
    op.create_index("ix_invoices_search", "invoices", [sa.text(SEARCH)], postgresql_using="gin")
    op.create_table(
        "invoice_counters",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_invoice_counters")),
    )
    grant_builtin_role_permissions(op, "invoices", member=None)


def downgrade() -> None:
    op.drop_table("invoice_counters")
    op.drop_table("invoices")
    for role in ("Admin", "Member"):
        set_builtin_role_permissions(op, role, "invoices", [])
