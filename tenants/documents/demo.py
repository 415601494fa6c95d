"""Sample documents (one with two versions) and comments for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.base import utcnow
from atrium.tenants.documents.models import Document, DocumentComment, DocumentVersion

FIRST = "# Onboarding\n\nWelcome! Read the handbook and set up your accounts."
SECOND = FIRST + "\n\n## First week\n\nPair with a teammate and ship one small change."


def seed(conn: Connection, demo: DemoTenant) -> None:
    people = demo.made.get("users", [])
    editor = people[0] if people else demo.owner_id
    document_id = uuid.uuid4()
    written = utcnow() - datetime.timedelta(days=1)
    conn.execute(
        insert(Document).values(
            id=document_id, title="Onboarding guide", body=SECOND, version=2, owner_id=demo.owner_id
        )
    )
    conn.execute(
        insert(DocumentVersion),
        [
            {
                "document_id": document_id,
                "version": 1,
                "title": "Onboarding guide",
                "body": FIRST,
                "editor_id": demo.owner_id,
                "created_at": written,
            },
            {
                "document_id": document_id,
                "version": 2,
                "title": "Onboarding guide",
                "body": SECOND,
                "editor_id": editor,
                "created_at": written + datetime.timedelta(hours=2),
            },
        ],
    )
    notes_id = uuid.uuid4()
    notes = "# Release notes\n\nWhat changed in each release, newest first."
    conn.execute(insert(Document).values(id=notes_id, title="Release notes", body=notes, owner_id=editor))
    conn.execute(
        insert(DocumentVersion).values(
            document_id=notes_id, version=1, title="Release notes", body=notes, editor_id=editor
        )
    )
    conn.execute(
        insert(DocumentComment),
        [
            {
                "document_id": document_id,
                "body": "Could we add who to ask for laptop setup?",
                "document_version": 1,
                "owner_id": editor,
                "created_at": written + datetime.timedelta(hours=1),
            },
            {
                "document_id": document_id,
                "body": "Added a first-week section.",
                "document_version": 2,
                "owner_id": demo.owner_id,
                "created_at": written + datetime.timedelta(hours=3),
            },
        ],
    )
    demo.made["documents"] = [document_id, notes_id]
