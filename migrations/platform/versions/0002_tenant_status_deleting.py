"""tenants: status 'deleting', set and announced before a tenant's schema is dropped

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 21:30:00.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_tenants_status_valid"), "tenants", schema="platform", type_="check")
    op.create_check_constraint(
        op.f("ck_tenants_status_valid"),
        "tenants",
        "status in ('active', 'suspended', 'deleting')",
        schema="platform",
    )


def downgrade() -> None:
    # A tenant caught half-deleted is put back as suspended: its schema may still exist.
    op.execute("UPDATE platform.tenants SET status = 'suspended' WHERE status = 'deleting'")
    op.drop_constraint(op.f("ck_tenants_status_valid"), "tenants", schema="platform", type_="check")
    op.create_check_constraint(
        op.f("ck_tenants_status_valid"), "tenants", "status in ('active', 'suspended')", schema="platform"
    )
