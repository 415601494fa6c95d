"""The resource conventions of API.md §5, written once for every route.

A resource is a ``ResourceSpec``: its path and permission name, its msgspec schemas
and its service (a ``CrudService`` subclass holding whatever is special about it).
``crud_router`` turns a spec into list / create / get / update / delete handlers with
pagination, permission guards, ``Location`` headers and problem responses.

This module deliberately does not use ``from __future__ import annotations``: the
handlers are built at runtime and Litestar reads their real annotation objects.
"""

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import msgspec
import psycopg.errors
from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform import read_transaction
from atrium.platform.auth import RELEASE_BEFORE_BODY, AuthUser, requires
from atrium.platform.errors import problem, problem_responses
from atrium.platform.middleware import current_tenant
from atrium.platform.naming import quote_ident
from atrium.platform.permissions import read, write
from atrium.platform.read_transaction import READS_ON_DRIVER, ROW_BY_ID, ReadTransaction, RowById
from atrium.platform.resolution import ResolvedTenant
from atrium.platform.settings import Settings
from atrium.tenants.base import TenantBase

JSON_BODY_LIMIT = 1024 * 1024
MAX_OFFSET = 2**31 - 1
M = TypeVar("M", bound=TenantBase)


class Schema(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused (422)."""


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    offset: int


def provide_page_params(
    limit: Annotated[int, QueryParameter(ge=1, le=200, description="Items per page, 1-200.")] = 50,
    offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit, offset)


_PAGE = {"page": Provide(provide_page_params, sync_to_thread=False)}


# PostgreSQL names the offending column in the error detail: 'Key (owner_id)=(…) is not
# present in table "users"', 'Key (lower(email::text))=(…) already exists'. Only the
# column name is taken from it; the detail itself (with the value) is never shown.
_DETAIL_COLUMN = re.compile(r"^Key \((?:lower\()?([a-z_][a-z0-9_]*)")


def _offending_field(diag: Any) -> str:
    match = _DETAIL_COLUMN.match(getattr(diag, "message_detail", None) or "")
    return match.group(1) if match else ""


def integrity_problem(exc: Exception, deleting: bool = False) -> Exception:
    """Map a database integrity or data error to the problem a client understands."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    while not isinstance(orig, psycopg.Error) and getattr(orig, "__cause__", None) is not None:
        orig = orig.__cause__
    diag = getattr(orig, "diag", None)
    field_name = _offending_field(diag)
    if isinstance(orig, psycopg.errors.UniqueViolation):
        return problem(409, f"A row with this {field_name or 'value'} already exists.", type_="conflict")
    if isinstance(orig, psycopg.errors.ForeignKeyViolation):
        if deleting or (diag and (diag.message_primary or "").startswith("update or delete")):
            return problem(409, "This row is still referenced by other rows.", type_="conflict")
        return problem(
            422,
            "A referenced row does not exist.",
            errors=[{"field": field_name, "message": "no such row in this tenant"}],
        )
    if isinstance(orig, psycopg.errors.StringDataRightTruncation):
        return problem(422, "A value is too long.", errors=[{"field": field_name, "message": "too long"}])
    if isinstance(orig, (psycopg.errors.IntegrityError, psycopg.errors.DataError)):
        return problem(
            422, "A value is not valid.", errors=[{"field": field_name, "message": "invalid value"}]
        )
    return exc


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def refuse_nul_characters(values: dict[str, Any]) -> None:
    """PostgreSQL stores no NUL character in text or jsonb: refuse it, naming the field."""
    bad = [name for name, value in values.items() if _has_nul(value)]
    if bad:
        raise problem(
            422,
            "Text may not contain the NUL character.",
            errors=[{"field": name, "message": "contains a NUL character"} for name in bad],
        )


def not_found(model: type[Any]) -> Exception:
    return problem(404, f"No such {model.__tablename__.replace('_', ' ')} row.")


@dataclass(frozen=True)
class ReadQueries:
    """The SQL of a resource's reads, made once from its read schema and table.

    Reads run on the request's ``ReadTransaction`` (see read_transaction.py for why),
    selecting exactly the read schema's fields, so deferred columns (media bytes) are
    never fetched. Names come from the model, quoted; the tenant is the bound path.
    """

    fields: tuple[str, ...]
    by_id: str
    page: str
    count: str
    # The same row as ``by_id``, for the caller check to fetch (read_transaction.py).
    row_by_id: RowById

    @classmethod
    def build(cls, model: type[Any], read_schema: type[msgspec.Struct]) -> "ReadQueries":
        fields = tuple(read_schema.__struct_fields__)
        missing = [f for f in fields if f not in model.__table__.c]
        if missing:
            raise TypeError(f"{read_schema.__name__} fields {missing} are not columns of {model.__name__}")
        table = quote_ident(model.__tablename__)
        columns = ", ".join(quote_ident(f) for f in fields)
        return cls(
            fields,
            by_id=f"SELECT {columns} FROM {table} WHERE id = %(id)s",
            # The same order and window count as advanced-alchemy's get_many_and_count.
            page=(
                f"SELECT {columns}, count(*) OVER () FROM {table}"
                " ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s"
            ),
            count=f"SELECT count(*) FROM {table}",
            row_by_id=RowById(model.__tablename__, fields, "item_id"),
        )


async def provide_reads(request: Request) -> ReadTransaction:
    """The request's read transaction: the one authentication opened, else a new one."""
    transaction = read_transaction.current(request.scope)
    if transaction is None:
        tenant = current_tenant(request.scope)
        settings = request.app.state.settings
        transaction = await ReadTransaction.bound(
            request.app.state.engine, tenant.schema, settings.db_statement_timeout_ms
        )
        read_transaction.remember(request.scope, transaction)
    return transaction


_READS = {"reads": Provide(provide_reads)}


@cache
def repository_for(model: type[Any]) -> type[SQLAlchemyAsyncRepository[Any]]:
    """advanced-alchemy's repository for ``model``, made once per model."""
    return type(f"{model.__name__}Repository", (SQLAlchemyAsyncRepository,), {"model_type": model})


@dataclass
class CrudService(Generic[M]):
    """Create, read, update and delete one resource inside the request's transaction.

    Subclasses override the ``prepare_*`` and ``before_delete`` hooks. Writes commit
    explicitly, so a failed commit is the client's error response, never a lost write
    behind a 2xx.
    """

    session: AsyncSession
    tenant: NamedDependency[ResolvedTenant]
    user: AuthUser
    settings: Settings
    model: ClassVar[type[Any]]
    _repository: Any = field(init=False)

    def __post_init__(self) -> None:
        self._repository = repository_for(self.model)(
            session=self.session, auto_expunge=False, auto_commit=False
        )

    async def get(self, item_id: uuid.UUID) -> M:
        try:
            return await self._repository.get(item_id)
        except NotFoundError:
            raise not_found(self.model) from None

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        return values

    async def prepare_update(self, item: M, changes: dict[str, Any]) -> dict[str, Any]:
        return changes

    async def before_delete(self, item: M) -> None:
        return None

    async def create(self, data: msgspec.Struct) -> M:
        values = msgspec.structs.asdict(data)
        refuse_nul_characters(values)
        values = await self.prepare_create(values)
        item = self.model(**values)
        await self._write(lambda: self._repository.add(item))
        return item

    async def update(self, item_id: uuid.UUID, data: msgspec.Struct) -> M:
        item = await self.get(item_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        refuse_nul_characters(changes)
        for key, value in (await self.prepare_update(item, changes)).items():
            setattr(item, key, value)
        # A flush of the attached row, not advanced-alchemy's ``repository.update``: that
        # reads every column, deferred ones too (media bytes), which fails under asyncio.
        await self._write(self.session.flush)
        return item

    async def delete(self, item_id: uuid.UUID) -> None:
        item = await self.get(item_id)
        await self.before_delete(item)
        await self._write(lambda: self._repository.delete(item.id), deleting=True)

    async def _write(self, operation: Callable[[], Any], deleting: bool = False) -> None:
        try:
            await operation()
            await self.session.commit()
        except (
            Exception
        ) as exc:  # raw, or wrapped by advanced-alchemy: integrity_problem looks down the causes
            await self.session.rollback()
            mapped = integrity_problem(exc, deleting)
            if mapped is exc:
                raise
            raise mapped from None


@dataclass(frozen=True)
class ResourceSpec:
    """Everything that differs between two CRUD resources."""

    resource: str  # the path segment and the permission name, e.g. "user-groups"
    service: type[CrudService[Any]]
    read_schema: type[msgspec.Struct]
    create_schema: type[msgspec.Struct]
    update_schema: type[msgspec.Struct]
    extra_handlers: Sequence[Any] = ()
    # A resource whose create or update is not plain JSON (media) leaves those out
    # and brings its own handlers in ``extra_handlers``.
    operations: frozenset[str] = frozenset({"list", "create", "get", "update", "delete"})

    def render(self, item: Any) -> msgspec.Struct:
        return msgspec.convert(item, self.read_schema, from_attributes=True)


def crud_router(spec: ResourceSpec) -> Router:
    """List, create, get, update and delete handlers for ``spec``, guarded and documented."""
    Read, Create, Update = spec.read_schema, spec.create_schema, spec.update_schema
    Page = msgspec.defstruct(
        f"{Read.__name__}Page", [("items", list[Read]), ("total", int), ("limit", int), ("offset", int)]
    )
    name = spec.resource.replace("-", "_")
    tags = [spec.resource]

    def service(session: AsyncSession, tenant: ResolvedTenant, request: Request) -> CrudService[Any]:
        return spec.service(session, tenant, request.user, request.app.state.settings)

    queries = ReadQueries.build(spec.service.model, Read)

    def render(row: Sequence[Any]) -> Any:
        return Read(**dict(zip(queries.fields, row, strict=False)))

    async def list_items(reads: NamedDependency[ReadTransaction], page: NamedDependency[PageParams]) -> Page:  # type: ignore[valid-type]
        rows = await reads.fetch_all(queries.page, {"limit": page.limit, "offset": page.offset})
        if rows:
            total = rows[0][-1]
        elif page.offset:
            # The count comes from a window over the page's rows; past the last page
            # there are none to carry it.
            total = (await reads.fetch_one(queries.count))[0]  # type: ignore[index]
        else:
            total = 0
        await reads.close()
        return Page(items=[render(r) for r in rows], total=total, limit=page.limit, offset=page.offset)

    async def create_item(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        request: Request,
        data: JSONBody[Create],
    ) -> Response[Read]:  # type: ignore[valid-type]
        item = await service(db_session, tenant, request).create(data)
        return Response(
            spec.render(item), status_code=201, headers={"Location": f"/{spec.resource}/{item.id}"}
        )

    async def get_item(request: Request, item_id: FromPath[uuid.UUID]) -> Read:  # type: ignore[valid-type]
        kept = read_transaction.kept_row(request.scope)
        if kept is not None:
            row = kept[0]
        else:
            reads = await provide_reads(request)
            row = await reads.fetch_one(queries.by_id, {"id": item_id})
            await reads.close()
        if row is None:
            raise not_found(spec.service.model)
        return render(row)

    async def update_item(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        request: Request,
        item_id: FromPath[uuid.UUID],
        data: JSONBody[Update],
    ) -> Read:  # type: ignore[valid-type]
        return spec.render(await service(db_session, tenant, request).update(item_id, data))

    async def delete_item(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        request: Request,
        item_id: FromPath[uuid.UUID],
    ) -> None:
        await service(db_session, tenant, request).delete(item_id)

    reading, writing = [requires(read(spec.resource))], [requires(write(spec.resource))]
    standard = {
        "list": get(
            "/",
            guards=reading,
            operation_id=f"list_{name}",
            summary=f"List {spec.resource}",
            dependencies={**_PAGE, **_READS},
            opt={READS_ON_DRIVER: True},
            responses=problem_responses(400, 401, 403, 422, 503),
        )(list_items),
        "create": post(
            "/",
            guards=writing,
            operation_id=f"create_{name}",
            summary=f"Create a {spec.resource} row",
            request_max_body_size=JSON_BODY_LIMIT,
            opt={RELEASE_BEFORE_BODY: True},
            responses=problem_responses(400, 401, 403, 409, 413, 422, 503),
        )(create_item),
        "get": get(
            "/{item_id:uuid}",
            guards=reading,
            operation_id=f"get_{name}",
            summary=f"Get a {spec.resource} row",
            opt={READS_ON_DRIVER: True, ROW_BY_ID: queries.row_by_id},
            responses=problem_responses(401, 403, 404, 503),
        )(get_item),
        "update": patch(
            "/{item_id:uuid}",
            guards=writing,
            operation_id=f"update_{name}",
            summary=f"Update a {spec.resource} row (partial)",
            request_max_body_size=JSON_BODY_LIMIT,
            opt={RELEASE_BEFORE_BODY: True},
            responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503),
        )(update_item),
        "delete": delete(
            "/{item_id:uuid}",
            guards=writing,
            operation_id=f"delete_{name}",
            summary=f"Delete a {spec.resource} row",
            status_code=204,
            responses=problem_responses(401, 403, 404, 409, 503),
        )(delete_item),
    }
    handlers = [handler for op, handler in standard.items() if op in spec.operations]
    return Router(
        path=f"/{spec.resource}",
        route_handlers=[*handlers, *spec.extra_handlers],
        tags=tags,
        security=[{"BearerToken": []}],
    )
