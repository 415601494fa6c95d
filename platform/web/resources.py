"""The resource conventions of API.md §5, written once for every route.

A resource is a ``ResourceSpec``: its path and permission name, its msgspec schemas
and its service (a ``CrudService`` subclass holding whatever is special about it).
``crud_router`` turns a spec into list / create / get / update / delete handlers with
pagination, permission guards, ``Location`` headers, ``ETag`` and ``If-Match``
(concurrency.py) and problem responses.

This module deliberately does not use ``from __future__ import annotations``: the
handlers are built at runtime and Litestar reads their real annotation objects.
"""

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.types import Scope
from sqlalchemy import ColumnElement, bindparam, select
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from atrium.platform.db import read_transaction
from atrium.platform.db.read_transaction import READS_ON_DRIVER, ROW_BY_ID, ReadTransaction, RowById
from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import MemberAccess, manage, read, write
from atrium.platform.settings import Settings
from atrium.platform.tenancy.middleware import current_tenant
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.actions import Action
from atrium.platform.web.bodies import JSON_BODY_LIMIT
from atrium.platform.web.concurrency import CHECKS_IF_MATCH, SENDS_ETAG, entity_tag, request_header, row_tag
from atrium.platform.web.errors import LIST_PROBLEMS, problem_responses
from atrium.platform.web.idempotency import answer_once
from atrium.platform.web.listing import (
    LIST_PARAMETERS,
    DefaultOrder,
    Filter,
    Listing,
    ListRequest,
    Sort,
    literal_choices,
    string_formats,
)
from atrium.platform.web.openapi import TAG_DESCRIPTION
from atrium.platform.web.pagination import PAGE_DEPENDENCY, PageParams
from atrium.platform.web.services import CrudService, not_found


@dataclass(frozen=True)
class ReadQueries:
    """The SQL of a resource's reads, made once from its read schema and table.

    Reads run on the request's ``ReadTransaction`` (see read_transaction.py for why),
    selecting exactly the read schema's fields, so deferred columns (media bytes) are
    never fetched. Names come from the model, quoted; the tenant is the bound path.
    """

    fields: tuple[str, ...]
    # Where the row's id and version are, for its ETag (concurrency.py).
    id_at: int
    updated_at: int
    by_id: str
    # The same row as ``by_id``, for the caller check to fetch (read_transaction.py).
    row_by_id: RowById

    @classmethod
    def build(
        cls,
        model: type[Any],
        read_schema: type[msgspec.Struct],
        visibility: str | None = None,
        caller_fields: Mapping[str, ColumnElement[Any]] | None = None,
    ) -> "ReadQueries":
        """The reads of ``model``; with ``visibility`` (an SQL condition on the row, with
        ``%(caller_id)s``), kept to the rows it shows; ``caller_fields``: read fields that
        are not columns but expressions of the row and the caller (ResourceSpec)."""
        caller_fields = caller_fields or {}
        fields = tuple(read_schema.__struct_fields__)
        missing = [f for f in fields if f not in model.__table__.c and f not in caller_fields]
        if missing:
            raise TypeError(f"{read_schema.__name__} fields {missing} are not columns of {model.__name__}")
        if not {"id", "updated_at"} <= set(fields):
            raise TypeError(f"{read_schema.__name__} lacks id or updated_at, which its ETag is made of")
        table = quote_ident(model.__tablename__)
        and_visible = f" AND ({visibility})" if visibility else ""
        by_id = f"SELECT {', '.join(quote_ident(f) for f in fields)} FROM {table} WHERE id = %(id)s"
        if caller_fields:
            # Compiled as a whole, so that an expression's subqueries correlate with the row.
            c = model.__table__.c
            selected = (caller_fields[f].label(f) if f in caller_fields else c[f] for f in fields)
            by_id = _compiled(select(*selected).where(c.id == bindparam("id", type_=c.id.type)))
        return cls(
            fields,
            id_at=fields.index("id"),
            updated_at=fields.index("updated_at"),
            by_id=by_id + and_visible,
            row_by_id=RowById(model.__tablename__, fields, "item_id"),
        )


def _compiled(expression: Any) -> str:
    return str(expression.compile(dialect=psycopg.dialect()))


def visibility_sql(service: type[CrudService[Any]]) -> str | None:
    """The service's visibility rule as SQL for the read path, compiled once, with the
    caller as ``%(caller_id)s``; ``None`` where every row is visible."""
    rule = service.visibility(bindparam("caller_id", type_=service.model.id.type))
    if rule is None:
        return None
    return _compiled(rule)


def read_transaction_provider(
    engine: AsyncEngine, statement_timeout_ms: int
) -> Callable[[Scope], Awaitable[ReadTransaction]]:
    """The ``reads`` dependency: the request's read transaction.

    Routes marked ``READS_ON_DRIVER`` find the one authentication opened; a new one is
    begun only where none was.
    """

    async def provide_reads(scope: Scope) -> ReadTransaction:
        transaction = read_transaction.current(scope)
        if transaction is None:
            tenant = current_tenant(scope)
            transaction, _ = await ReadTransaction.begin(engine, tenant.schema, statement_timeout_ms)
            read_transaction.remember(scope, transaction)
        return transaction

    return provide_reads


async def read_page(
    reads: ReadTransaction, statement: str, values: dict[str, Any], page: PageParams
) -> tuple[list[Sequence[Any]], int]:
    """A page of a ``Listing`` statement and the total, whose last column it carries."""
    rows = await reads.fetch_all(statement, {**values, "limit": page.limit, "offset": page.offset})
    if rows:
        return rows, rows[0][-1]
    if page.offset:
        # Past the last page no row carries the window's count: ask for the first row.
        first = await reads.fetch_all(statement, {**values, "limit": 1, "offset": 0})
        return rows, first[0][-1] if first else 0
    return rows, 0


WindowRefiner = Callable[[ReadTransaction, ListRequest, dict[str, Any]], Awaitable[Sequence[uuid.UUID]]]


@dataclass(frozen=True)
class ResourceSpec:
    """Everything that differs between two CRUD resources."""

    resource: str  # the path segment and the permission name, e.g. "user-groups"
    service: type[CrudService[Any]]
    read_schema: type[msgspec.Struct]
    create_schema: type[msgspec.Struct]
    update_schema: type[msgspec.Struct]
    # Handlers beyond the conventional ones; a function of the settings where they need them.
    extra_handlers: Sequence[Any] | Callable[[Settings], Sequence[Any]] = ()
    # A resource whose create or update is not plain JSON (media) leaves those out
    # and brings its own handlers in ``extra_handlers``.
    operations: frozenset[str] = frozenset({"list", "create", "get", "update", "delete"})
    # What the resource is, for the OpenAPI document's tag.
    description: str = ""
    # One row's name in operation ids (``get_user``); default: the resource less its plural s.
    item_name: str = ""
    # What the built-in Member role may do here (API.md §4); Admin may do everything.
    member: MemberAccess = "read"
    # List parameters (listing.py): equality filters, sortable fields, the time span of
    # ``from``/``to``. ``q`` searches the columns of the model's ``search_index``.
    filters: Sequence[Filter] = ()
    sort: Sequence[str | Sort] = ()
    window: tuple[str, str] | None = ("created_at", "created_at")
    # The list's order without ``sort`` or ``q`` (listing.py); None: newest first.
    default_order: DefaultOrder | None = None
    # ``POST /<resource>/{id}/<action>`` state changes (actions.py).
    actions: Sequence[Action] = ()
    # Rows a ``from``/``to`` window leaves out although their span overlaps it (an event
    # series with no occurrence in the window): ``(reads, request, caller) -> ids``.
    refine_window: WindowRefiner | None = None
    # The largest create or update body, in bytes: more where a field may be large itself
    # (a document's 1 MiB body), so that the field's own limit is the one a client meets.
    body_limit: int = JSON_BODY_LIMIT
    # Read fields that are no column but depend on the caller (a room's ``unread_count``):
    # name → an SQL expression of the row and ``bindparam("caller_id")``, evaluated in
    # lists and gets alike; the service sets them on the rows it writes.
    caller_fields: Mapping[str, ColumnElement[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The service checks ``<resource>:manage`` itself (ownership): it learns its
        # permission name from the one spec that serves it.
        bound = vars(self.service).get("resource")
        if bound and bound != self.resource:
            raise TypeError(f"{self.service.__name__} already serves {bound!r}, not {self.resource!r}")
        self.service.resource = self.resource

    @property
    def names(self) -> tuple[str, str]:
        """The snake_case names of the collection and of one row, for operation ids."""
        plural = self.resource.replace("-", "_")
        return plural, self.item_name or (plural[:-1] if plural.endswith("s") else plural)

    def render(self, item: Any) -> msgspec.Struct:
        return msgspec.convert(item, self.read_schema, from_attributes=True)


def _action_handler(spec: ResourceSpec, action: Action, service: Callable[..., Any], one: str) -> Any:
    """``POST /{id}/<action>``: the service's ``act`` on the row, then the row."""
    Read, Body = spec.read_schema, action.body

    async def run(
        db_session: AsyncSession,
        tenant: ResolvedTenant,
        settings: Settings,
        request: Request,
        item_id: uuid.UUID,
        data: Any,
    ) -> Any:
        if_match = request_header(request.scope, b"if-match")
        crud = service(db_session, tenant, request, settings)
        # Like every POST, an action is answered once per Idempotency-Key (a payment retried
        # is recorded once).
        return await answer_once(
            request,
            db_session,
            tenant,
            lambda before_commit: crud.act(item_id, action, data, if_match, before_commit),
            spec.render,
            lambda item: {"ETag": row_tag(item)},
            status=200,
        )

    if Body is None:

        async def act(
            db_session: NamedDependency[AsyncSession],
            tenant: NamedDependency[ResolvedTenant],
            settings: NamedDependency[Settings],
            request: Request,
            item_id: FromPath[uuid.UUID],
        ) -> Response[Read]:  # type: ignore[valid-type]
            return await run(db_session, tenant, settings, request, item_id, None)

    elif any(f.required for f in msgspec.structs.fields(Body)):

        async def act(  # type: ignore[misc]
            db_session: NamedDependency[AsyncSession],
            tenant: NamedDependency[ResolvedTenant],
            settings: NamedDependency[Settings],
            request: Request,
            item_id: FromPath[uuid.UUID],
            data: JSONBody[Body],  # type: ignore[valid-type]
        ) -> Response[Read]:  # type: ignore[valid-type]
            return await run(db_session, tenant, settings, request, item_id, data)

    else:
        # Every field optional (``pay``'s amount): the body may be left out altogether.
        async def act(  # type: ignore[misc]
            db_session: NamedDependency[AsyncSession],
            tenant: NamedDependency[ResolvedTenant],
            settings: NamedDependency[Settings],
            request: Request,
            item_id: FromPath[uuid.UUID],
            data: JSONBody[Body | None] = None,  # type: ignore[valid-type]
        ) -> Response[Read]:  # type: ignore[valid-type]
            return await run(db_session, tenant, settings, request, item_id, Body() if data is None else data)

    permission = write(spec.resource) if action.permission == "write" else manage(spec.resource)
    return post(
        f"/{{item_id:uuid}}/{action.name}",
        guards=[requires(permission)],
        operation_id=f"{action.name.replace('-', '_')}_{one}",
        summary=action.summary or f"{action.name.capitalize()} a {spec.resource} row",
        status_code=200,
        request_max_body_size=JSON_BODY_LIMIT,
        opt={SENDS_ETAG: True, CHECKS_IF_MATCH: True},
        responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 415, 422, 503),
    )(act)


def _extra_handlers(spec: ResourceSpec, settings: Settings | None) -> Sequence[Any]:
    if not callable(spec.extra_handlers):
        return spec.extra_handlers
    if settings is None:
        raise TypeError(f"the {spec.resource} routes need the settings")
    return spec.extra_handlers(settings)


def found_again_response(spec: ResourceSpec) -> dict[int, ResponseSpec]:
    """The 200 of a create that may find its row already there (``found_again``)."""
    if not spec.service.found_again:
        return {}
    return {200: ResponseSpec(data_container=spec.read_schema, description=spec.service.found_again)}


def crud_router(spec: ResourceSpec, settings: Settings | None = None) -> Router:
    """List, create, get, update and delete handlers for ``spec``, guarded and documented."""
    Read, Create, Update = spec.read_schema, spec.create_schema, spec.update_schema
    Page = msgspec.defstruct(
        f"{Read.__name__}Page", [("items", list[Read]), ("total", int), ("limit", int), ("offset", int)]
    )
    plural, one = spec.names
    tags = [spec.resource]

    def service(
        session: AsyncSession, tenant: ResolvedTenant, request: Request, settings: Settings
    ) -> CrudService[Any]:
        return spec.service.for_request(session, tenant, request, settings)

    queries = ReadQueries.build(spec.service.model, Read, caller_fields=spec.caller_fields)
    rule = visibility_sql(spec.service)
    # Where a visibility rule applies, callers without manage read through it.
    kept_to_visible = (
        None if rule is None else ReadQueries.build(spec.service.model, Read, rule, spec.caller_fields)
    )
    managing = spec.service.sees_every_row_permission()

    def queries_for(scope: Scope) -> tuple[ReadQueries, dict[str, Any], bool]:
        """The queries for the caller, their parameters, and whether they keep to the
        visible rows."""
        user = scope["user"]
        if kept_to_visible is None or user.can(managing):
            return queries, {"caller_id": user.id} if spec.caller_fields else {}, False
        return kept_to_visible, {"caller_id": user.id}, True

    listing = Listing(
        spec.service.model.__table__,
        queries.fields,
        spec.filters,
        sort=spec.sort,
        window=spec.window,
        visibility=spec.service.visibility(bindparam("caller_id", type_=spec.service.model.id.type)),
        default_order=spec.default_order,
        computed=spec.caller_fields,
        choices=literal_choices(Read),
        formats=string_formats(spec.create_schema),
    )

    def render(row: Sequence[Any]) -> Any:
        return Read(**dict(zip(queries.fields, row, strict=False)))

    async def list_items(
        request: Request,
        reads: NamedDependency[ReadTransaction],
        page: NamedDependency[PageParams],
    ) -> Page:  # type: ignore[valid-type]
        _, caller, visible_only = queries_for(request.scope)
        wanted = listing.parse(request.query_params, visible_only=visible_only)
        if spec.refine_window is not None and wanted.window != (None, None):
            wanted = replace(wanted, exclude=tuple(await spec.refine_window(reads, wanted, caller)))
        rows, total = await read_page(reads, listing.statement(wanted), {**wanted.values(), **caller}, page)
        await reads.close()
        return Page(items=[render(r) for r in rows], total=total, limit=page.limit, offset=page.offset)

    async def create_item(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        settings: NamedDependency[Settings],
        request: Request,
        data: JSONBody[Create],
    ) -> Response[Read]:  # type: ignore[valid-type]
        crud = service(db_session, tenant, request, settings)
        return await answer_once(
            request,
            db_session,
            tenant,
            lambda before_commit: crud.create(data, before_commit),
            spec.render,
            lambda item: {"Location": f"/{spec.resource}/{item.id}", "ETag": row_tag(item)},
            status=crud.created_status,
        )

    async def get_item(scope: Scope, item_id: FromPath[uuid.UUID]) -> Response[Read]:  # type: ignore[valid-type]
        # Authentication (``READS_ON_DRIVER``, ``ROW_BY_ID``) either fetched the row or
        # opened the read transaction. Not the ``reads`` dependency: resolving one costs
        # every request ~5 µs, and most take the kept row.
        kept = read_transaction.kept_row(scope)
        if kept is not None:
            row = kept[0]
        else:
            reads = read_transaction.current(scope)
            if reads is None:
                raise RuntimeError("a GET by id reached its handler without passing authentication's reader")
            chosen, caller, _ = queries_for(scope)
            row = await reads.fetch_one(chosen.by_id, {"id": item_id, **caller})
            await reads.close()
        if row is None:
            raise not_found(spec.service.model)
        # From the row as fetched: no statement more for the version.
        tag = entity_tag(row[queries.id_at], row[queries.updated_at])
        return Response(render(row), headers={"ETag": tag})

    async def update_item(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        settings: NamedDependency[Settings],
        request: Request,
        item_id: FromPath[uuid.UUID],
        data: JSONBody[Update],
    ) -> Response[Read]:  # type: ignore[valid-type]
        if_match = request_header(request.scope, b"if-match")
        item = await service(db_session, tenant, request, settings).update(item_id, data, if_match)
        return Response(spec.render(item), headers={"ETag": row_tag(item)})

    async def delete_item(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        settings: NamedDependency[Settings],
        request: Request,
        item_id: FromPath[uuid.UUID],
    ) -> None:
        if_match = request_header(request.scope, b"if-match")
        await service(db_session, tenant, request, settings).delete(item_id, if_match)

    reading, writing = [requires(read(spec.resource))], [requires(write(spec.resource))]
    standard = {
        "list": get(
            "/",
            guards=reading,
            operation_id=f"list_{plural}",
            summary=f"List {spec.resource}",
            dependencies=PAGE_DEPENDENCY,
            opt={
                READS_ON_DRIVER: True,
                LIST_PARAMETERS: listing.openapi_parameters(),
                LIST_PROBLEMS: listing.problems_of,
            },
            responses=problem_responses(400, 401, 403, 422, 503),
        )(list_items),
        "create": post(
            "/",
            guards=writing,
            operation_id=f"create_{one}",
            summary=f"Create a {spec.resource} row",
            request_max_body_size=spec.body_limit,
            opt={SENDS_ETAG: True},
            responses={
                **problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
                **found_again_response(spec),
            },
        )(create_item),
        "get": get(
            "/{item_id:uuid}",
            guards=reading,
            operation_id=f"get_{one}",
            summary=f"Get a {spec.resource} row",
            # The caller check fetches the row only where every row is visible.
            opt={
                READS_ON_DRIVER: True,
                SENDS_ETAG: True,
                **({ROW_BY_ID: queries.row_by_id} if rule is None else {}),
            },
            responses=problem_responses(401, 403, 404, 503),
        )(get_item),
        "update": patch(
            "/{item_id:uuid}",
            guards=writing,
            operation_id=f"update_{one}",
            summary=f"Update a {spec.resource} row (partial)",
            request_max_body_size=spec.body_limit,
            opt={SENDS_ETAG: True, CHECKS_IF_MATCH: True},
            responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 415, 422, 503),
        )(update_item),
        "delete": delete(
            "/{item_id:uuid}",
            guards=writing,
            operation_id=f"delete_{one}",
            summary=f"Delete a {spec.resource} row",
            status_code=204,
            opt={CHECKS_IF_MATCH: True},
            responses=problem_responses(401, 403, 404, 409, 412, 503),
        )(delete_item),
    }
    handlers = [handler for op, handler in standard.items() if op in spec.operations]
    actions = [_action_handler(spec, action, service, one) for action in spec.actions]
    return Router(
        path=f"/{spec.resource}",
        route_handlers=[*handlers, *actions, *_extra_handlers(spec, settings)],
        tags=tags,
        security=[{"BearerToken": []}],
        opt={TAG_DESCRIPTION: spec.description} if spec.description else None,
    )
