"""invoices: ``q`` also searches the number and the notes

The index's expression is the one platform/web/listing.py's ``search_vector`` writes for
the resource's search fields, in their order, so that the planner uses it.

Revision ID: 0018_invoices_search
Revises: 0017_tokens_valid_after
Create Date: 2026-12-07 16:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0018_invoices_search"
down_revision: str | Sequence[str] | None = "0017_tokens_valid_after"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "to_tsvector('english'::regconfig, (coalesce(customer_name, '') || ' ') || coalesce(customer_email, ''))"
)
AFTER = (
    "to_tsvector('english'::regconfig, (((((coalesce(number, '') || ' ') || coalesce(customer_name, ''))"
    " || ' ') || coalesce(customer_email, '')) || ' ') || coalesce(notes, ''))"
)


def upgrade() -> None:
    op.drop_index("ix_invoices_search", table_name="invoices")
    op.create_index("ix_invoices_search", "invoices", [sa.text(AFTER)], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_invoices_search", table_name="invoices")
    op.create_index("ix_invoices_search", "invoices", [sa.text(BEFORE)], postgresql_using="gin")
