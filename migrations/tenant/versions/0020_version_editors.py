"""document_versions.editor_id: null once the editor is deleted, not handed to an heir

Deleting a user hands the rows they own to an heir (API.md §6); a version is not owned but
written, and handing it over credited the heir with edits they never made. The column is
now nullable and the database clears it when the user goes.

Revision ID: 0020_version_editors
Revises: 0019_email_words
Create Date: 2026-12-08 01:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0020_version_editors"
down_revision: str | Sequence[str] | None = "0019_email_words"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEY = "fk_document_versions_editor_id_users"


def _editor(ondelete: str) -> None:
    op.drop_constraint(FOREIGN_KEY, "document_versions", type_="foreignkey")
    op.create_foreign_key(FOREIGN_KEY, "document_versions", "users", ["editor_id"], ["id"], ondelete=ondelete)


def upgrade() -> None:
    op.alter_column("document_versions", "editor_id", existing_type=sa.Uuid(), nullable=True)
    _editor("SET NULL")


def downgrade() -> None:
    # A version whose editor is gone needs someone again: the document's owner.
    op.execute(
        "UPDATE document_versions v SET editor_id = d.owner_id FROM documents d"
        " WHERE v.document_id = d.id AND v.editor_id IS NULL"
    )
    _editor("RESTRICT")
    op.alter_column("document_versions", "editor_id", existing_type=sa.Uuid(), nullable=False)
