"""/documents (with their versions) and /document-comments.

Not ``from __future__ import annotations``: Litestar reads the handlers' annotations.
"""

import uuid
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import read, write
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.concurrency import CHECKS_IF_MATCH, SENDS_ETAG, entity_tag, request_header, row_tag
from atrium.platform.web.errors import problem, problem_responses
from atrium.platform.web.idempotency import answer_once
from atrium.platform.web.listing import PAGE_PARAMETERS, Filter, ListRequest, query_problems
from atrium.platform.web.pagination import PAGE_DEPENDENCY, PageParams
from atrium.platform.web.resources import ResourceSpec
from atrium.tenants.documents import schemas as s
from atrium.tenants.documents.models import BODY_MAX_BYTES, DocumentVersion
from atrium.tenants.documents.services import DocumentCommentService, DocumentService

DOCUMENTS = "documents"
# A 1 MiB body, JSON-escaped at worst (``\uXXXX`` for each byte is six), with the other fields.
DOCUMENT_BODY_LIMIT = 6 * BODY_MAX_BYTES + 64 * 1024


def _service(
    session: AsyncSession, tenant: ResolvedTenant, request: Request, settings: Settings
) -> DocumentService:
    return DocumentService(session, tenant, request.user, settings)


def _render_version(row: DocumentVersion) -> s.DocumentVersionRead:
    return s.DocumentVersionRead(
        version=row.version,
        title=row.title,
        body=row.body,
        editor_id=row.editor_id,
        created_at=row.created_at,
    )


def _render_document(item: Any) -> s.DocumentRead:
    return DOCUMENTS_SPEC.render(item)  # type: ignore[return-value]


@get(
    "/{item_id:uuid}/versions",
    guards=[requires(read(DOCUMENTS))],
    operation_id="list_document_versions",
    summary="List a document's versions, newest first",
    dependencies=PAGE_DEPENDENCY,
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def list_versions(
    db_session: NamedDependency[AsyncSession],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    request: Request,
    page: NamedDependency[PageParams],
    item_id: FromPath[uuid.UUID],
) -> s.DocumentVersionPage:
    if errors := query_problems(request.query_params, PAGE_PARAMETERS):
        raise problem(422, "The list parameters are not valid.", errors=errors)
    rows, total = await _service(db_session, tenant, request, settings).versions(
        item_id, page.limit, page.offset
    )
    return s.DocumentVersionPage(
        items=[_render_version(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )


@get(
    "/{item_id:uuid}/versions/{version:int}",
    guards=[requires(read(DOCUMENTS))],
    operation_id="get_document_version",
    summary="Get one version of a document",
    opt={SENDS_ETAG: True},
    responses=problem_responses(401, 403, 404, 503),
)
async def get_version(
    db_session: NamedDependency[AsyncSession],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    request: Request,
    item_id: FromPath[uuid.UUID],
    version: FromPath[int],
) -> Response[s.DocumentVersionRead]:
    row = await _service(db_session, tenant, request, settings).version(item_id, version)
    # A version never changes once written: its tag is its id and its time.
    return Response(_render_version(row), headers={"ETag": entity_tag(row.id, row.created_at)})


@post(
    "/{item_id:uuid}/versions/{version:int}/restore",
    guards=[requires(write(DOCUMENTS))],
    operation_id="restore_document_version",
    summary="Make a version's content the document's new latest version",
    status_code=200,
    opt={SENDS_ETAG: True, CHECKS_IF_MATCH: True},
    responses=problem_responses(401, 403, 404, 409, 412, 422, 503),
)
async def restore_version(
    db_session: NamedDependency[AsyncSession],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    request: Request,
    item_id: FromPath[uuid.UUID],
    version: FromPath[int],
) -> Response[s.DocumentRead]:
    if_match = request_header(request.scope, b"if-match")
    crud = _service(db_session, tenant, request, settings)
    return await answer_once(
        request,
        db_session,
        tenant,
        lambda before_commit: crud.restore(item_id, version, if_match, before_commit),
        _render_document,
        lambda item: {"ETag": row_tag(item)},
        status=200,
    )


def comments_oldest_first(request: ListRequest, columns: Any) -> list[Any]:
    return [columns.created_at.asc(), columns.id.asc()]


DOCUMENTS_SPEC = ResourceSpec(
    DOCUMENTS,
    DocumentService,
    s.DocumentRead,
    s.DocumentCreate,
    s.DocumentUpdate,
    extra_handlers=[list_versions, get_version, restore_version],
    filters=[Filter("project_id"), Filter("owner_id")],
    sort=["updated_at", "title"],
    body_limit=DOCUMENT_BODY_LIMIT,
    description=(
        "Markdown documents with attachments (`media_ids`). Every change makes a new `version`, "
        "and every version is kept; restoring one makes its content the latest. A document in a "
        "project is seen by those who see the project, and is read-only (409) while it is archived."
    ),
    member="write",
)

DOCUMENT_COMMENTS = ResourceSpec(
    "document-comments",
    DocumentCommentService,
    s.DocumentCommentRead,
    s.DocumentCommentCreate,
    s.DocumentCommentUpdate,
    filters=[Filter("document_id"), Filter("owner_id")],
    default_order=comments_oldest_first,
    description=(
        "Comments on documents, oldest first, each recording the document's version when it was "
        "made; seen by those who see the document, deleted with it."
    ),
    member="write",
)
