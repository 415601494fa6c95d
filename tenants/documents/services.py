"""What is special about documents: versions, attachments, the project's archive, comments."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.plugins.problem_details import ProblemDetailsException
from sqlalchemy import ColumnElement, bindparam, func, insert, literal, or_, select

from atrium.platform.db.queued_inserts import queue_statement
from atrium.platform.security.permissions import manage
from atrium.platform.web.concurrency import next_updated_at
from atrium.platform.web.errors import field_problem, problem, with_errors
from atrium.platform.web.idempotency import BeforeCommit
from atrium.platform.web.services import CrudService
from atrium.tenants.base import utcnow
from atrium.tenants.documents.models import Document, DocumentComment, DocumentVersion
from atrium.tenants.documents.schemas import MEDIA_ONCE
from atrium.tenants.media.models import Media
from atrium.tenants.projects.models import Project
from atrium.tenants.projects.services import PROJECTS, member_of_project, refuse_writes_if_archived

# Versions are an ``integer`` column: no number past it names one.
MAX_VERSION = 2**31 - 1
# A change of any of these makes a new version.
VERSIONED = ("title", "body", "project_id", "media_ids")


def visible_documents(caller: ColumnElement[Any]) -> ColumnElement[bool]:
    """A document outside any project is every reader's; one in a project, its members'.
    Uncorrelated (``IN``): the read path compiles the rule on its own."""
    return or_(
        Document.project_id.is_(None),
        Document.project_id.in_(select(Project.id).where(member_of_project(caller))),
    )


# The columns a create writes; the rest are the table's defaults.
_CREATED = (
    *("id", "title", "body", "project_id", "media_ids", "version", "owner_id"),
    *("created_at", "updated_at"),
)


def _create_with_first_version() -> Any:
    """``INSERT`` of a document, and of its first version from the row it returns, so the
    body is sent once. Parameters: the ``_CREATED`` columns and ``editor_id``."""
    documents, versions = Document.__table__, DocumentVersion.__table__
    made = (
        insert(documents)
        .values({column: bindparam(column, type_=documents.c[column].type) for column in _CREATED})
        .returning(documents.c.id, documents.c.version, documents.c.title, documents.c.body)
        .cte("made")
    )
    editor = bindparam("editor_id", type_=versions.c.editor_id.type)
    return insert(versions).from_select(
        ["document_id", "version", "title", "body", "editor_id"],
        select(made.c.id, made.c.version, made.c.title, made.c.body, editor),
        include_defaults=False,
    )


_CREATE = _create_with_first_version()


class DocumentService(CrudService[Document]):
    model = Document
    # Those who see every project see every document.
    sees_every_row = manage(PROJECTS)

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return visible_documents(caller)

    async def _check_values(self, values: dict[str, Any], project_id: uuid.UUID | None = None) -> None:
        """Every bad field in one 422: the attachments, and ``project_id`` when given: a
        project the caller sees (422), not archived (409)."""
        errors = MEDIA_ONCE(values)
        media_ids = values.get("media_ids")
        if media_ids and not errors:
            # Held until the commit: a file deleted meanwhile waits, then leaves this
            # document too (MediaService.locks_to_delete), instead of staying listed.
            found = await self.session.scalars(
                select(Media.id).where(Media.id.in_(media_ids)).with_for_update(read=True, key_share=True)
            )
            if len(found.all()) != len(media_ids):
                errors.append(
                    {"field": "media_ids", "message": "names media that do not exist in this tenant"}
                )
        if project_id is not None:
            try:
                await refuse_writes_if_archived(self.session, project_id, self.user)
            except ProblemDetailsException as refused:
                if refused.status_code == 422:
                    raise with_errors(refused, errors) from None
                if not errors:
                    raise
        if errors:
            raise problem(422, "The document is not valid.", errors=errors)

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        await self._check_values(values, values.get("project_id"))
        if values.get("media_ids") is None:
            values["media_ids"] = []
        values["version"] = 1
        return values

    async def add(self, item: Document, before_commit: BeforeCommit[Document] | None = None) -> None:
        """The document and its first version in one statement (``_CREATE``), queued with
        the commit (queued_inserts.py): no round trip of its own and no unit of work, where
        the ORM took two flushes. Every column is known here, so the row is rendered from
        ``item`` as is."""
        item.id = uuid.uuid4()
        item.created_at = item.updated_at = utcnow()

        async def adding() -> None:
            values = {column: getattr(item, column) for column in _CREATED}
            queue_statement(self.session, _CREATE, {**values, "editor_id": self.user.id})
            if before_commit is not None:
                await before_commit(item)

        await self._write(adding)

    async def _refuse_if_archived(self, item: Document) -> None:
        if item.project_id is not None:
            # The document's own project: seen already (the document is), so 409 or nothing.
            await refuse_writes_if_archived(self.session, item.project_id)

    def locks_to_update(self, changes: dict[str, Any]) -> bool:
        # The next version is the row's plus one: concurrent edits take their turns (two
        # that read the same version collided on it, 409, and one edit was lost).
        return any(key in changes for key in VERSIONED)

    async def prepare_update(self, item: Document, changes: dict[str, Any]) -> dict[str, Any]:
        await self._refuse_if_archived(item)
        moved_to = changes.get("project_id")
        await self._check_values(changes, moved_to if moved_to != item.project_id else None)
        if any(key in changes and changes[key] != getattr(item, key) for key in VERSIONED):
            self._next_version(item, changes)
        return changes

    def _next_version(self, item: Document, changes: dict[str, Any]) -> None:
        """One more version, with the content ``changes`` leave: kept beside the row."""
        changes["version"] = item.version + 1
        self.session.add(
            DocumentVersion(
                document_id=item.id,
                version=changes["version"],
                title=changes.get("title", item.title),
                body=changes.get("body", item.body),
                editor_id=self.user.id,
            )
        )

    async def before_delete(self, item: Document) -> None:
        await self._refuse_if_archived(item)

    async def version(self, document_id: uuid.UUID, number: int) -> DocumentVersion:
        """Version ``number`` of a document the caller sees; 404 otherwise."""
        await self.get(document_id)
        if not 1 <= number <= MAX_VERSION:
            raise problem(404, f"This document has no version {number}.")
        found = await self.session.scalar(
            select(DocumentVersion).where(
                DocumentVersion.document_id == document_id, DocumentVersion.version == number
            )
        )
        if found is None:
            raise problem(404, f"This document has no version {number}.")
        return found

    async def versions(
        self, document_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[DocumentVersion], int]:
        """A page of a document's versions, newest first, and how many there are."""
        await self.get(document_id)
        of_document = DocumentVersion.document_id == document_id
        total = await self.session.scalar(select(func.count()).where(of_document))
        rows = await self.session.scalars(
            select(DocumentVersion)
            .where(of_document)
            .order_by(DocumentVersion.version.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(rows), total or 0

    async def restore(
        self,
        document_id: uuid.UUID,
        number: int,
        if_match: str | None,
        before_commit: BeforeCommit[Document] | None = None,
    ) -> Document:
        """Make version ``number``'s content the new latest version (the older ones stay);
        ``before_commit(row)`` adds to the same transaction (idempotency.py)."""
        item = await self.get_to_write(document_id, if_match, lock=True)
        await self._refuse_if_archived(item)
        old = await self.version(document_id, number)
        changes = {"title": old.title, "body": old.body}
        if all(getattr(item, key) == value for key, value in changes.items()):
            # The content is already that version's: no new version, as a PATCH that
            # changes nothing makes none (and the ETag others hold stays good).
            async def unchanged() -> None:
                if before_commit is not None:
                    await before_commit(item)

            await self._write(unchanged)
            return item
        self._next_version(item, changes)
        for key, value in changes.items():
            setattr(item, key, value)
        item.updated_at = next_updated_at(item.updated_at)

        async def flushing() -> None:
            await self.session.flush()
            if before_commit is not None:
                await before_commit(item)

        await self._write(flushing)
        return item


class DocumentCommentService(CrudService[DocumentComment]):
    model = DocumentComment
    sees_every_row = manage(PROJECTS)

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        # Exactly those who see the document see its comments.
        return DocumentComment.document_id.in_(select(Document.id).where(visible_documents(caller)))

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        statement = select(Document.version, Document.project_id).where(Document.id == values["document_id"])
        visible = None if self.user.can(self.sees_every_row) else visible_documents(self._caller())
        if visible is not None:
            statement = statement.where(visible)
        # FOR SHARE: the version recorded is the one the comment was made on, not one a
        # concurrent edit is writing over.
        found = (await self.session.execute(statement.with_for_update(read=True, of=Document))).first()
        if found is None:
            raise field_problem(422, "document_id", "no such document")
        await self._refuse_if_archived(found.project_id)
        values["document_version"] = found.version
        return values

    async def _refuse_if_archived(self, project_id: uuid.UUID | None) -> None:
        # An archived project's documents are read-only, their comments with them (API.md §8).
        if project_id is not None:
            await refuse_writes_if_archived(self.session, project_id)

    async def _document_project(self, item: DocumentComment) -> uuid.UUID | None:
        return await self.session.scalar(select(Document.project_id).where(Document.id == item.document_id))

    async def prepare_update(self, item: DocumentComment, changes: dict[str, Any]) -> dict[str, Any]:
        await self._refuse_if_archived(await self._document_project(item))
        return changes

    async def before_delete(self, item: DocumentComment) -> None:
        await self._refuse_if_archived(await self._document_project(item))

    def _caller(self) -> ColumnElement[Any]:
        return literal(self.user.id, Document.id.type)
