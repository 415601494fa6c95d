"""drop revoked_tokens

Since revision 0004 every logout is recorded on its user's row. The table was kept only
for tokens issued before 0004, and those have all expired: token lifetimes are hours
(``ATRIUM_TOKEN_TTL_SECONDS``), and 0004 shipped on 2026-12-02.

The downgrade recreates the table empty, as 0003 left it: the revocations in force stay
on the users' rows, which 0004's downgrade moves back into it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 16:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("revoked_tokens")


def downgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )
