"""documents: versioned markdown documents with attachments, and their comments

API.md §7. Existing tenants' built-in roles gain both resources as new tenants' hold
them: Admin manages each; Member writes both.

Revision ID: 0014_documents
Revises: 0013_forms
Create Date: 2026-12-07 00:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from atrium.platform.security.role_grants import (
    grant_builtin_role_permissions,
    revoke_builtin_role_permissions,
)

# revision identifiers, used by Alembic.
revision: str = "0014_documents"
down_revision: str | Sequence[str] | None = "0013_forms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What Member may do with each resource of this revision (written out: a migration must
# not change when the application's declarations do).
MEMBER_ACCESS = {"documents": "write", "document-comments": "write"}


def _audit_columns() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def _id() -> sa.Column:
    return sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _user(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], name=op.f(f"fk_{table}_{column}_users"), ondelete="RESTRICT"
    )


def _of_document(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["document_id"], ["documents.id"], name=op.f(f"fk_{table}_document_id_documents"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "documents",
        _id(),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("media_ids", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        *_audit_columns(),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_documents_project_id_projects"), ondelete="CASCADE"
        ),
        _user("documents", "owner_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
    )
    op.create_index("ix_documents_owner_id", "documents", ["owner_id"])
    op.create_index("ix_documents_project_id", "documents", ["project_id"])
    op.create_index(
        "ix_documents_search",
        "documents",
        [sa.text("to_tsvector('english'::regconfig, (coalesce(title, '') || ' ') || coalesce(body, ''))")],
        postgresql_using="gin",
    )
    op.create_table(
        "document_versions",
        _id(),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("editor_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        _of_document("document_versions"),
        _user("document_versions", "editor_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_versions")),
        sa.UniqueConstraint("document_id", "version", name="uq_document_versions_version"),
    )
    op.create_index("ix_document_versions_editor_id", "document_versions", ["editor_id"])
    op.create_table(
        "document_comments",
        _id(),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("document_version", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        *_audit_columns(),
        _of_document("document_comments"),
        _user("document_comments", "owner_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_comments")),
    )
    op.create_index("ix_document_comments_owner_id", "document_comments", ["owner_id"])
    op.create_index("ix_document_comments_document", "document_comments", ["document_id", "created_at"])
    for resource, member in MEMBER_ACCESS.items():
        grant_builtin_role_permissions(op, resource, member=member)  # type: ignore[arg-type]


def downgrade() -> None:
    for resource in MEMBER_ACCESS:
        revoke_builtin_role_permissions(op, resource)
    for table in ("document_comments", "document_versions", "documents"):
        # Dropping a table drops its indexes and constraints.
        op.drop_table(table)
