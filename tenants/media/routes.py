"""/media: uploaded files. Metadata through the shared CRUD conventions, bytes through two handlers.

``POST /media`` takes ``multipart/form-data`` (field ``file``); ``GET /media/{id}/content``
answers the exact bytes as a download that never runs on the API's origin. Listing and
reading metadata never load the bytes (``Media.data`` is deferred).

Like ``atrium.platform.web.resources``, this module does not use ``from __future__ import
annotations``: the handlers are built at runtime and Litestar reads their annotations.
"""

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import ResponseHeader, UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from sqlalchemy import any_, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import read, write
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.concurrency import SENDS_ETAG, next_updated_at_sql, row_tag
from atrium.platform.web.errors import FILE_LIMIT, problem, problem_responses, too_large
from atrium.platform.web.idempotency import BeforeCommit, answer_once
from atrium.platform.web.listing import Filter
from atrium.platform.web.resources import ResourceSpec
from atrium.platform.web.services import CrudService
from atrium.tenants.documents.models import Document, DocumentVersion
from atrium.tenants.media.models import Media
from atrium.tenants.media.schemas import (
    MediaRead,
    MediaUpdate,
    MediaUpload,
    clean_filename,
    clean_media_type,
    content_disposition,
)

# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024

# Served with every download: the browser must save the bytes, never sniff, render or
# run them on the API's origin.
CONTENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-cache",
}


class MediaService(CrudService[Media]):
    model = Media
    # Documents attach media by id (``before_delete``); a document write checking this
    # file holds it FOR KEY SHARE, so the delete waits for it and then mends it too.
    locks_to_delete = True

    async def upload(
        self, name: str, media_type: str, data: bytes, before_commit: BeforeCommit[Media] | None = None
    ) -> Media:
        item = Media(owner_id=self.user.id, name=name, type=media_type, size=len(data), data=data)
        await self.add(item, before_commit)
        return item

    async def with_content(self, item_id: uuid.UUID) -> Media:
        """The row with its bytes: the only place the deferred ``data`` column is loaded."""
        return await self.get(item_id, undefer(Media.data))

    async def before_delete(self, item: Media) -> None:
        # Documents list their attachments by id (an array, so no foreign key): a deleted
        # file leaves them, as it would a page in any wiki, in the same transaction. That is
        # a change of each document, so each gets its next version (API.md §7), written by
        # whoever deleted the file.
        documents, versions = Document.__table__, DocumentVersion.__table__
        detached = (
            update(documents)
            .where(literal(item.id, documents.c.id.type) == any_(documents.c.media_ids))
            .values(
                media_ids=func.array_remove(documents.c.media_ids, item.id),
                version=documents.c.version + 1,
                updated_at=next_updated_at_sql(documents.c.updated_at),
            )
            .returning(documents.c.id, documents.c.version, documents.c.title, documents.c.body)
            .cte("detached")
        )
        editor = literal(self.user.id, versions.c.editor_id.type)
        await self.session.execute(
            insert(versions).from_select(
                ["document_id", "version", "title", "body", "editor_id"],
                select(detached.c.id, detached.c.version, detached.c.title, detached.c.body, editor),
                include_defaults=False,
            )
        )

    async def prepare_update(self, item: Media, changes: dict[str, Any]) -> dict[str, Any]:
        if "name" in changes and clean_filename(changes["name"]) != changes["name"]:
            raise problem(
                422,
                "The name is not a plain file name.",
                errors=[
                    {
                        "field": "name",
                        "message": "no path separators, control characters or surrounding spaces",
                    }
                ],
            )
        return changes


def _service(
    session: AsyncSession, tenant: ResolvedTenant, request: Request, settings: Settings
) -> MediaService:
    return MediaService(session, tenant, request.user, settings)


async def _read_at_most(data: MediaUpload, limit: int) -> bytes:
    """The uploaded bytes, or 413 when there are more than ``limit`` of them."""
    try:
        content = await data.file.read(limit + 1)
    finally:
        await data.file.close()
    if len(content) > limit:
        raise too_large("the file", limit)
    return content


async def _refuse_other_fields(request: Request, data: MediaUpload) -> None:
    """422 naming every form field besides ``file`` (API.md §5: unknown fields in a body are
    refused). ``owner_id`` or ``name`` sent beside the file were silently dropped, so a
    client believed it had set them."""
    form = await request.form()  # parsed once already, for ``data``: Litestar keeps it
    unknown = [key for key in dict.fromkeys(form.keys()) if key != "file"]
    if not unknown:
        return
    for value in form.values():
        if isinstance(value, UploadFile) and value is not data.file:
            await value.close()
    await data.file.close()
    raise problem(
        422,
        "The request is not valid.",
        errors=[
            {"field": key, "message": "unknown field; the upload takes one part, `file`"} for key in unknown
        ],
    )


def media_handlers(settings: Settings) -> list[Any]:
    """The upload and download handlers.

    The upload's request body is capped before it is read at the configured limit plus
    room for the multipart framing; the handler then checks the file against the limit
    exactly.
    """
    body_limit = {"request_max_body_size": settings.max_upload_bytes + MULTIPART_OVERHEAD}

    @post(
        "/",
        guards=[requires(write("media"))],
        operation_id="create_media",
        summary="Upload a file (multipart/form-data, field `file`)",
        description=(
            "The part's file name (without any path) becomes `name`, its content type `type` "
            "(`application/octet-stream` when missing or malformed). Larger than the "
            "configured limit: 413."
        ),
        status_code=201,
        opt={SENDS_ETAG: True, FILE_LIMIT: settings.max_upload_bytes},
        responses=problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
        response_headers=[
            ResponseHeader(name="Location", description="/media/{id}", documentation_only=True)
        ],
        **body_limit,
    )
    async def upload_media(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        settings: NamedDependency[Settings],
        request: Request,
        data: Annotated[MediaUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[MediaRead]:
        await _refuse_other_fields(request, data)
        content = await _read_at_most(data, settings.max_upload_bytes)
        name = clean_filename(data.file.filename)
        media_type = clean_media_type(data.file.headers.get("Content-Type"))
        service = _service(db_session, tenant, request, settings)
        return await answer_once(
            request,
            db_session,
            tenant,
            lambda before_commit: service.upload(name, media_type, content, before_commit),
            lambda item: msgspec.convert(item, MediaRead, from_attributes=True),
            lambda item: {"Location": f"/media/{item.id}", "ETag": row_tag(item)},
            # The file, not the multipart body: its boundary differs from one retry to the next.
            body=[name.encode(), media_type.encode(), content],
        )

    @get(
        "/{item_id:uuid}/content",
        guards=[requires(read("media"))],
        operation_id="get_media_content",
        summary="Download a file's bytes",
        description="The exact bytes as uploaded, with their stored content type, as an attachment.",
        # Documented as bytes for client generators; each answer carries the file's stored type.
        media_type="application/octet-stream",
        responses=problem_responses(401, 403, 404, 503),
        # The row's tag: a new name (the attachment's file name) is a new version of the answer.
        opt={SENDS_ETAG: True},
        response_headers=[
            ResponseHeader(
                name="Content-Disposition",
                description="attachment; filename=\"…\"; filename*=UTF-8''…",
                documentation_only=True,
            ),
            ResponseHeader(name="X-Content-Type-Options", description="nosniff", documentation_only=True),
            ResponseHeader(
                name="Content-Security-Policy",
                description="default-src 'none'; sandbox",
                documentation_only=True,
            ),
        ],
    )
    async def get_media_content(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        settings: NamedDependency[Settings],
        request: Request,
        item_id: FromPath[uuid.UUID],
    ) -> Response[bytes]:
        item = await _service(db_session, tenant, request, settings).with_content(item_id)
        return Response(
            item.data,
            media_type=item.type,
            headers={
                # Set explicitly: Litestar would append a charset to text/* types.
                "Content-Type": item.type,
                "Content-Disposition": content_disposition(item.name),
                "ETag": row_tag(item),
                **CONTENT_HEADERS,
            },
        )

    return [upload_media, get_media_content]


MEDIA = ResourceSpec(
    "media",
    MediaService,
    MediaRead,
    MediaUpdate,  # unused: creating is the multipart upload of media_handlers
    MediaUpdate,
    operations=frozenset({"list", "get", "update", "delete"}),
    extra_handlers=media_handlers,
    filters=[Filter("owner_id"), Filter("type")],
    sort=["name", "size", "updated_at"],
    description="Uploaded files: metadata as JSON, bytes uploaded as multipart and sent back as is.",
    member="write",
)
