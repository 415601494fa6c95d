"""users: the full-text search index behind ``GET /users?q=``

The expression is the one platform/web/listing.py's ``search_vector`` writes in queries,
so that the planner uses the index for them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 21:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH = "to_tsvector('english'::regconfig, (coalesce(name, '') || ' ') || coalesce(email, ''))"


def upgrade() -> None:
    op.create_index("ix_users_search", "users", [sa.text(SEARCH)], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_users_search", table_name="users")
