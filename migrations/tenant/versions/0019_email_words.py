"""users and invoices: ``q`` finds an email by its parts

PostgreSQL's parser reads ``bob@acme.com`` as one word, so ``q=acme`` found no one. A
generated column keeps each email's parts as words (platform/web/listing.py's
``email_words``), and the search indexes cover it beside the email itself. The indexes'
expressions are the ones listing.py's ``search_index`` writes for the models' search fields.

Revision ID: 0019_email_words
Revises: 0018_invoices_search
Create Date: 2026-12-08 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019_email_words"
down_revision: str | Sequence[str] | None = "0018_invoices_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _words(column: str) -> str:
    # Written out, not imported: a migration keeps the expression it shipped with.
    return f"(replace({column}, '@', ' ') || ' ') || translate({column}, '@._+', '    ')"


def _vector(*columns: str) -> str:
    text_sql = f"coalesce({columns[0]}, '')"
    for n, column in enumerate(columns[1:]):
        left = f"({text_sql})" if n else text_sql
        text_sql = f"({left} || ' ') || coalesce({column}, '')"
    return f"to_tsvector('english'::regconfig, {text_sql})"


USERS_BEFORE = ("name", "email")
USERS_AFTER = ("name", "email", "email_words")
INVOICES_BEFORE = ("number", "customer_name", "customer_email", "notes", "item_descriptions")
INVOICES_AFTER = (
    "number",
    "customer_name",
    "customer_email",
    "customer_email_words",
    "notes",
    "item_descriptions",
)


def _reindex(table: str, name: str, columns: Sequence[str]) -> None:
    op.drop_index(name, table_name=table)
    op.create_index(name, table, [sa.text(_vector(*columns))], postgresql_using="gin")


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("email_words", sa.Text(), sa.Computed(_words("email"), persisted=True), nullable=False),
    )
    _reindex("users", "ix_users_search", USERS_AFTER)
    op.add_column(
        "invoices",
        sa.Column("customer_email_words", sa.Text(), sa.Computed(_words("customer_email"), persisted=True)),
    )
    _reindex("invoices", "ix_invoices_search", INVOICES_AFTER)


def downgrade() -> None:
    _reindex("invoices", "ix_invoices_search", INVOICES_BEFORE)
    op.drop_column("invoices", "customer_email_words")
    _reindex("users", "ix_users_search", USERS_BEFORE)
    op.drop_column("users", "email_words")
