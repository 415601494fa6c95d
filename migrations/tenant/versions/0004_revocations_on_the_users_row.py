"""revocations kept on the user's row

A logout now records the token id on its user's row (``users.revoked_token_ids``, token
id to expiry in Unix seconds) instead of in ``revoked_tokens``: every authenticated
request checks revocation, and a second relation per tenant is a second set of catalog
entries that each PostgreSQL backend loads for every tenant it serves. Over 250 tenants
on one connection the check against the table doubled what a ``GET`` by id cost
PostgreSQL (bench/RESULTS.md, sixth and seventh passes).

``revoked_tokens`` stays for the transition: its rows carry no user id, so they cannot
be moved onto users' rows. Tokens issued before this revision carry no ``rev`` claim and
are checked against both (``atrium.platform.auth``); the table can be dropped by a later
revision once every such token has expired (one token lifetime after the upgrade).
Adding a column with a constant default rewrites nothing. The downgrade moves the
revocations still in force back into the table, so none is lost either way.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 05:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column(
            "revoked_token_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.execute(
        """
        INSERT INTO revoked_tokens (jti, expires_at)
        SELECT r.key, to_timestamp(r.value::bigint)
        FROM users u, jsonb_each_text(u.revoked_token_ids) AS r
        WHERE to_timestamp(r.value::bigint) > now()
        ON CONFLICT (jti) DO NOTHING
        """
    )
    op.drop_column("users", "revoked_token_ids")
