"""invoices: ``q`` also searches the number, the notes and the lines' descriptions

The descriptions live in the ``items`` JSON; a generated column keeps them as one text, so
that the search index stays an expression over columns. The index's expression is the one
platform/web/listing.py's ``search_index`` writes for the resource's search fields, in
their order, so that the planner uses it for ``q``.

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

DESCRIPTIONS = "jsonb_path_query_array(items, '$[*].description')::text"
BEFORE = (
    "to_tsvector('english'::regconfig, (coalesce(customer_name, '') || ' ') || coalesce(customer_email, ''))"
)
AFTER = (
    "to_tsvector('english'::regconfig, (((((((coalesce(number, '') || ' ') || coalesce(customer_name, ''))"
    " || ' ') || coalesce(customer_email, '')) || ' ') || coalesce(notes, '')) || ' ')"
    " || coalesce(item_descriptions, ''))"
)


def upgrade() -> None:
    op.add_column(
        "invoices",
        sa.Column("item_descriptions", sa.Text(), sa.Computed(DESCRIPTIONS, persisted=True), nullable=False),
    )
    op.drop_index("ix_invoices_search", table_name="invoices")
    op.create_index("ix_invoices_search", "invoices", [sa.text(AFTER)], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_invoices_search", table_name="invoices")
    op.create_index("ix_invoices_search", "invoices", [sa.text(BEFORE)], postgresql_using="gin")
    op.drop_column("invoices", "item_descriptions")
