"""users.tokens_valid_after: a password change signs the user out everywhere

Tokens issued before it are refused (atrium.platform.security.callers). Nullable with no
default: adding it rewrites no row.

Revision ID: 0017_tokens_valid_after
Revises: 0016_chats
Create Date: 2026-12-07 03:15:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0017_tokens_valid_after"
down_revision: str | Sequence[str] | None = "0016_chats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("tokens_valid_after", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "tokens_valid_after")
