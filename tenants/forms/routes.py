"""/forms, /form-responses, the public form routes and the CSV export.

Like ``atrium.platform.web.resources``, this module does not use ``from __future__ import
annotations``: the handlers are built at runtime and Litestar reads their annotations.
"""

import uuid

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db import read_transaction
from atrium.platform.db.read_transaction import READS_ON_DRIVER, ReadTransaction
from atrium.platform.security.permissions import manage, read
from atrium.platform.settings import Settings
from atrium.platform.stores import AttemptCounter
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.bodies import JSON_BODY_LIMIT
from atrium.platform.web.client_address import client_address
from atrium.platform.web.errors import problem, problem_responses
from atrium.platform.web.idempotency import KEEPS_ANONYMOUS_ANSWERS, answer_once
from atrium.platform.web.listing import Filter
from atrium.platform.web.openapi import TAG_DESCRIPTION
from atrium.platform.web.resources import ResourceSpec
from atrium.platform.web.services import not_found
from atrium.tenants.forms.export import csv_chunks, export_query
from atrium.tenants.forms.models import Form, FormResponse
from atrium.tenants.forms.schemas import (
    FormCreate,
    FormRead,
    FormResponseCreate,
    FormResponseRead,
    FormResponseUpdate,
    FormUpdate,
    PublicAnswers,
    PublicForm,
    PublicReceipt,
)
from atrium.tenants.forms.services import FormResponseService, FormService, submit_public

_FORMS = quote_ident(Form.__tablename__)
PUBLIC_FORM_SQL = (
    f"SELECT id, title, description, fields, version FROM {_FORMS}"
    " WHERE id = %(id)s AND public AND status = 'open'"
)
EXPORTED_FORM_SQL = f"SELECT owner_id, fields FROM {_FORMS} WHERE id = %(id)s"
POSTS_WINDOW_SECONDS = 60


@get(
    "/forms/{item_id:uuid}/responses.csv",
    operation_id="export_form_responses",
    summary="A form's responses as CSV, streamed",
    description=(
        "The form's owner or `form-responses:manage` only (else 403). A header row, then one "
        "row per response, oldest first: `id`, `submitted_at`, `respondent` (email or empty), "
        "then one column per field key in field order (multiselect values joined by `; `). A "
        "cell beginning with `=`, `+`, `-`, `@`, tab or carriage return is prefixed with `'`."
    ),
    media_type="text/csv",
    tags=["forms"],
    opt={READS_ON_DRIVER: True},
    responses=problem_responses(401, 403, 404, 503),
    response_headers=[
        ResponseHeader(
            name="Content-Disposition",
            description='attachment; filename="form-{id}.csv"',
            documentation_only=True,
        )
    ],
)
async def export_responses(
    request: Request,
    reads: NamedDependency[ReadTransaction],
    item_id: FromPath[uuid.UUID],
) -> Stream:
    form = await reads.fetch_one(EXPORTED_FORM_SQL, {"id": item_id})
    if form is None:
        raise not_found(Form)
    owner_id, fields = form
    user = request.user
    if not (user.can(manage("form-responses")) or (owner_id == user.id and user.can(read("forms")))):
        raise problem(403, "Only the form's owner, or 'form-responses:manage', may export its responses.")
    # From here the transaction is the body's: it ends when the last row is sent.
    read_transaction.detach(request.scope)
    sql, params = export_query(fields)
    rows = reads.stream(sql, {**params, "id": item_id})
    return Stream(
        csv_chunks(fields, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="form-{item_id}.csv"'},
    )


@get(
    "/public/forms/{item_id:uuid}",
    operation_id="get_public_form",
    summary="An open public form's definition (no token)",
    exclude_from_auth=True,
    security=[{}],
    opt={READS_ON_DRIVER: True},
    responses=problem_responses(404, 503),
)
async def get_public_form(
    reads: NamedDependency[ReadTransaction], item_id: FromPath[uuid.UUID]
) -> PublicForm:
    row = await reads.fetch_one(PUBLIC_FORM_SQL, {"id": item_id})
    await reads.close()
    if row is None:
        raise not_found(Form)
    return msgspec.convert(dict(zip(PublicForm.__struct_fields__, row, strict=True)), PublicForm)


@post(
    "/public/forms/{item_id:uuid}/responses",
    operation_id="answer_public_form",
    summary="Answer an open public form anonymously (no token)",
    description=(
        "Limited per client address (429 with `Retry-After`). A form that is not public or "
        "not open is 404. The body is at most 1 MiB (413)."
    ),
    exclude_from_auth=True,
    security=[{}],
    status_code=201,
    request_max_body_size=JSON_BODY_LIMIT,
    responses=problem_responses(400, 404, 413, 415, 422, 429, 503),
    # Retry-After is documented on its 429 (openapi.py), the only answer that sends it.
    opt={KEEPS_ANONYMOUS_ANSWERS: True},
)
async def answer_public_form(
    request: Request,
    db_session: NamedDependency[AsyncSession],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    attempt_counter: NamedDependency[AttemptCounter],
    item_id: FromPath[uuid.UUID],
    data: JSONBody[PublicAnswers],
) -> Response[PublicReceipt]:
    client = client_address(request)
    key = f"{tenant.id}:public-form-posts:{client}"
    retry_after = await attempt_counter.take([(key, settings.public_posts_per_minute)], POSTS_WINDOW_SECONDS)
    if retry_after:
        raise problem(
            429,
            "Too many responses from this address; try again later.",
            headers={"Retry-After": str(retry_after)},
        )

    def receipt(item: FormResponse) -> PublicReceipt:
        return msgspec.convert(item, PublicReceipt, from_attributes=True)

    def location(item: FormResponse) -> dict[str, str]:
        # The response's own URL, where the form's owner (not the anonymous sender) reads it.
        return {"Location": f"/form-responses/{item.id}"}

    return await answer_once(
        request,
        db_session,
        tenant,
        lambda before_commit: submit_public(db_session, item_id, data.answers, before_commit),
        receipt,
        location,
        anonymous_client=client,
    )


def form_routes(_settings: Settings) -> list[Router]:
    """The export (beside /forms' own routes) and the public routes, with no token."""
    return [
        Router(path="/", route_handlers=[export_responses], security=[{"BearerToken": []}]),
        Router(
            path="/",
            route_handlers=[get_public_form, answer_public_form],
            tags=["public-forms"],
            opt={TAG_DESCRIPTION: "Open public forms, read and answered without a token."},
        ),
    ]


FORMS = ResourceSpec(
    "forms",
    FormService,
    FormRead,
    FormCreate,
    FormUpdate,
    filters=[Filter("owner_id"), Filter("status"), Filter("public")],
    sort=["title", "status", "response_count", "updated_at"],
    description="Forms: typed fields checked at save, a version that follows the fields, a response count.",
    member="read",
)

FORM_RESPONSES = ResourceSpec(
    "form-responses",
    FormResponseService,
    FormResponseRead,
    FormResponseCreate,
    FormResponseUpdate,
    filters=[Filter("form_id"), Filter("owner_id")],
    description=(
        "Answers to forms, checked against the form's current fields; seen by the respondent, "
        "the form's owner and `form-responses:manage`."
    ),
    member="write",
)
