"""Lists: filters, full-text search, time windows and sort, declared per resource (API.md §5).

A resource declares which fields filter by equality, which feed ``q`` and which sort; a
list request is then one statement, as a plain page is: the rows of the page and the
total, counted by a window over the same filtered rows. Statements are built with
SQLAlchemy Core and compiled once per shape (which parameters are present, the sort),
never assembled from strings per request. Repeated values of one parameter match any of
them through ``= ANY(array)``, so the number of values does not change the shape.

Text search uses PostgreSQL's own (``websearch_to_tsquery``: any input is a valid query,
words are matched by stem) over an expression that the resource's GIN index holds
verbatim (``search_index``), in the tenant's schema like every other row.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec
from litestar.datastructures import MultiDict
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Parameter, Schema
from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Index,
    String,
    all_,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql

from atrium.platform.web.errors import problem
from atrium.platform.web.validation import plain_type, readable

# Stems English words; a tenant-chosen language would replace this constant per tenant.
TEXT_SEARCH_CONFIG = "english"
# Route option: the list's declared parameters, for the OpenAPI document (openapi.py).
LIST_PARAMETERS = "list_parameters"
# Parameters every list has besides its declared ones (pagination.py reads them).
PAGE_PARAMETERS = frozenset({"limit", "offset"})
MAX_VALUES = 100
MAX_QUERY_LENGTH = 500

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Filter:
    """Equality on a column: ``?name=value``, repeatable to match any of the values."""

    name: str
    # Compared in lower case (emails are unique in any case).
    casefold: bool = False
    # The column, where the parameter is named otherwise (``member_id`` on ``member_ids``).
    column: str = ""
    # The column is an array: a row matches when it holds any of the values.
    element: bool = False
    # ``?name=null`` matches rows where the column is null (``parent_id=null``: top level).
    null: bool = False
    # What the field's body rules refuse beyond its type (an unknown currency), so that the
    # filter refuses it too: a message, or None for a value the field accepts.
    check: Callable[[str], str | None] | None = None

    @property
    def column_name(self) -> str:
        return self.column or self.name


@dataclass(frozen=True)
class Sort:
    """A sort key whose order is another column's (``priority`` by its rank)."""

    name: str
    column: str


def search_vector(columns: Sequence[Column[Any]]) -> ColumnElement[Any]:
    """The text-search document of ``columns``: the same expression in queries and index."""
    # ``||`` over coalesced text, not ``concat_ws``: an index expression must be immutable,
    # and constants are written out so that queries repeat the index's expression exactly.
    document: ColumnElement[Any] = func.coalesce(columns[0], literal_column("''"))
    for column in columns[1:]:
        blank = literal_column("' '")
        document = document.op("||")(blank).op("||")(func.coalesce(column, literal_column("''")))
    return func.to_tsvector(literal_column(f"'{TEXT_SEARCH_CONFIG}'::regconfig"), document)


def email_words(column: str) -> str:
    """The SQL of a generated column holding ``column``'s email as separate words: the parser
    reads ``bob.smith@acme.com`` as one token, so a search for ``acme.com``, ``acme`` or
    ``smith`` needs the domain and every part beside it. Searched next to the email itself,
    so that a whole address matches too."""
    return f"(replace({column}, '@', ' ') || ' ') || translate({column}, '@._+', '    ')"


# ``Index.info`` key: the columns a ``search_index`` covers.
_SEARCHED = "atrium_searched_columns"


def search_index(name: str, *columns: str) -> Index:
    """The GIN index a resource with ``q`` declares in its model's ``__table_args__``: the
    expression of ``search_vector``, written out (an index declared with column objects
    before the table exists would not attach to it)."""
    # Parenthesised as PostgreSQL prints the index back, so that comparing the models with a
    # migrated schema (Alembic compares the text) finds them equal past two columns too.
    text_sql = f"coalesce({columns[0]}, '')"
    for n, column in enumerate(columns[1:]):
        left = f"({text_sql})" if n else text_sql
        text_sql = f"({left} || ' ') || coalesce({column}, '')"
    return Index(
        name,
        text(f"to_tsvector('{TEXT_SEARCH_CONFIG}'::regconfig, {text_sql})"),
        postgresql_using="gin",
        info={_SEARCHED: columns},
    )


def searched_columns(table: Any) -> tuple[str, ...]:
    """The columns ``q`` searches in ``table``: its ``search_index``'s, in their order (none
    without one). Declared once, with the index that serves them."""
    for index in table.indexes:
        if _SEARCHED in index.info:
            return tuple(index.info[_SEARCHED])
    return ()


DefaultOrder = Callable[["ListRequest", Any], list[Any]]


@dataclass(frozen=True)
class ListRequest:
    """A list request's parsed parameters (page apart)."""

    filters: tuple[tuple[str, list[Any]], ...] = ()
    q: str | None = None
    window: tuple[datetime.datetime | None, datetime.datetime | None] = (None, None)
    sort: str | None = None
    # Kept to the rows the resource's visibility rule shows the caller (``caller_id``).
    visible_only: bool = False
    # Rows left out although they match (``excluded_ids``): a window's refinement, for
    # rows whose span overlaps it with nothing in it (a series between its occurrences).
    exclude: tuple[uuid.UUID, ...] = ()

    def has_null(self, name: str) -> bool:
        """Whether filter ``name`` asks for rows where its column is null."""
        return any(value is None for n, values in self.filters if n == name for value in values)

    def filtered(self, name: str) -> bool:
        return any(n == name for n, _ in self.filters)

    @property
    def shape(self) -> tuple[Any, ...]:
        return (
            self.visible_only,
            tuple((name, None in values, len(values) > values.count(None)) for name, values in self.filters),
            self.q is not None,
            self.window[0] is not None,
            self.window[1] is not None,
            self.sort,
            bool(self.exclude),
        )

    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {f"f_{name}": [x for x in v if x is not None] for name, v in self.filters}
        if self.q is not None:
            values["q"] = self.q
        if self.window[0] is not None:
            values["from"] = self.window[0]
        if self.window[1] is not None:
            values["to"] = self.window[1]
        if self.exclude:
            values["excluded_ids"] = list(self.exclude)
        return values


@dataclass
class Listing:
    """The list statements of one table: what may filter, search and sort it."""

    table: Any
    fields: tuple[str, ...]
    filters: Sequence[Filter] = ()
    # What ``q`` searches; ``None``: the table's ``search_index`` columns (``searched_columns``).
    search: Sequence[str] | None = None
    sort: Sequence[str | Sort] = ()
    # A row's time span for ``from``/``to`` (start and end columns; one column twice for
    # an instant); a row matches when it overlaps the window.
    window: tuple[str, str] | None = ("created_at", "created_at")
    # The service's visibility rule, with the caller as the ``caller_id`` parameter.
    visibility: ColumnElement[bool] | None = None
    # The order without ``sort`` (and without ``q``'s ranking), given the request and the
    # table's columns; it may look only at what the request's ``shape`` holds (which
    # filters, null or not), since the statement is compiled once per shape. None:
    # newest first.
    default_order: DefaultOrder | None = None
    # A condition every statement carries, whose parameters the caller supplies: a list
    # of a row's children (a ticket's replies) is kept to that row.
    within: ColumnElement[bool] | None = None
    # Read fields that are expressions, not columns (ResourceSpec.caller_fields).
    computed: Mapping[str, ColumnElement[Any]] = field(default_factory=dict)
    # The values a filter may take where its field is one of a few (``literal_choices``):
    # any other is 422, not an empty page.
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The string types with a format a filter's values must have (``string_formats``).
    formats: Mapping[str, Any] = field(default_factory=dict)
    _statements: dict[tuple[Any, ...], str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.search is None:
            self.search = searched_columns(self.table)
        columns = self.table.c
        self._sort_columns = {"created_at": "created_at"}
        for key in self.sort:
            name, column = (key.name, key.column) if isinstance(key, Sort) else (key, key)
            self._sort_columns[name] = column
        named = [f.column_name for f in self.filters] + list(self.search) + list(self._sort_columns.values())
        named += list(self.window or ())
        if missing := [n for n in named if n not in columns]:
            raise TypeError(f"{self.table.name} has no columns {missing}")
        self._filters = {f.name: f for f in self.filters}
        self.sortable = frozenset(self._sort_columns)

    # -- parameters ------------------------------------------------------------------

    @property
    def parameters(self) -> frozenset[str]:
        names = set(self._filters) | {"sort"}
        if self.search:
            names.add("q")
        if self.window:
            names |= {"from", "to"}
        return frozenset(names)

    def parse(self, query: MultiDict[str], visible_only: bool = False) -> ListRequest:
        """The request's list parameters; every unknown or bad one named in one 422."""
        wanted, errors = self._parse(query, visible_only)
        if errors:
            raise problem(422, "The list parameters are not valid.", errors=errors)
        return wanted

    @property
    def problems_of(self) -> Callable[[MultiDict[str]], list[dict[str, str]]]:
        """``query ->`` every unknown or bad list parameter, for a 422 that Litestar's check
        of ``limit`` and ``offset`` (the page dependency) answers before ``parse`` runs. A
        function, not a bound method: Litestar deep-copies route options, and a method
        would copy the listing with it."""
        return lambda query: self._parse(query, False)[1]

    def _parse(self, query: MultiDict[str], visible_only: bool) -> tuple[ListRequest, list[dict[str, str]]]:
        errors = query_problems(query, self.parameters | PAGE_PARAMETERS, once=PAGE_PARAMETERS)
        filters = []
        for name, spec in self._filters.items():
            raw = query.getall(name, [])
            if not raw:
                continue
            if len(raw) > MAX_VALUES:
                errors.append(_error(name, f"at most {MAX_VALUES} values"))
                continue
            converted = [self._convert(name, value, spec, errors) for value in raw]
            filters.append((name, converted))
        q = self._single(query, "q", errors) if self.search else None
        if q is not None and not (0 < len(q.strip()) <= MAX_QUERY_LENGTH):
            errors.append(_error("q", f"1-{MAX_QUERY_LENGTH} characters of search text"))
        window = (None, None)
        if self.window:
            window = (self._instant(query, "from", errors), self._instant(query, "to", errors))
            if window[0] and window[1] and window[0] >= window[1]:
                errors.append(_error("to", "must be later than from"))
        sort = self._single(query, "sort", errors)
        if sort is not None and sort.removeprefix("-") not in self.sortable:
            errors.append(_error("sort", f"one of {', '.join(sorted(self.sortable))}, or - before one"))
        return ListRequest(
            tuple(filters), q, window, sort, visible_only and self.visibility is not None
        ), errors

    def _convert(self, name: str, value: str, spec: Filter, errors: list[dict[str, str]]) -> Any:
        python_type = _python_type(self._element_type(spec))
        if spec.null and value == "null":
            return None
        if "\x00" in value:
            errors.append(_error(name, "contains a NUL character"))
            return None
        if not value.strip():
            # No row has an empty tag, type or status: an empty value is a slip, not a question.
            errors.append(_error(name, "empty: give a value, or leave the parameter out"))
            return None
        try:
            if python_type is uuid.UUID:
                return uuid.UUID(value)
            if python_type is int:
                return int(value)
            if python_type is bool:
                return {"true": True, "false": False}[value]
        except (ValueError, KeyError):
            errors.append(_error(name, f"not a valid {python_type.__name__.lower()}"))
            return None
        choices = self.choices.get(name)
        if choices is not None and value not in choices:
            errors.append(_error(name, f"one of {', '.join(choices)}"))
            return None
        if name in self.formats:
            try:
                msgspec.convert(value, self.formats[name])
            except msgspec.ValidationError as exc:
                errors.append(_error(name, readable(str(exc))))
                return None
        if spec.check is not None and (message := spec.check(value)) is not None:
            errors.append(_error(name, message))
            return None
        return value.lower() if spec.casefold else value

    def _element_type(self, spec: Filter) -> Any:
        """The column a filter's values are compared with, or its array's element."""
        column = self.table.c[spec.column_name]
        return Column(column.type.item_type) if spec.element else column

    @staticmethod
    def _single(query: MultiDict[str], name: str, errors: list[dict[str, str]]) -> str | None:
        values = query.getall(name, [])
        if len(values) > 1:
            errors.append(_error(name, "give it once"))
        if not values:
            return None
        if "\x00" in values[0]:
            errors.append(_error(name, "contains a NUL character"))
            return None
        return values[0]

    def _instant(
        self, query: MultiDict[str], name: str, errors: list[dict[str, str]]
    ) -> datetime.datetime | None:
        raw = self._single(query, name, errors)
        return None if raw is None else parse_instant(raw, name, errors)

    # -- the statement ---------------------------------------------------------------

    def statement(self, request: ListRequest) -> str:
        """The page statement for ``request``'s shape, with psycopg's named placeholders:
        the read fields, then the total; ``limit`` and ``offset`` besides the request's values."""
        shape = request.shape
        sql = self._statements.get(shape)
        if sql is None:
            sql = self._statements[shape] = self._compile(request)
        return sql

    def _compile(self, request: ListRequest) -> str:
        c = self.table.c
        query = select(
            *(self.computed[f].label(f) if f in self.computed else c[f] for f in self.fields),
            func.count().over(),
        ).select_from(self.table)
        if self.within is not None:
            query = query.where(self.within)
        if request.visible_only and self.visibility is not None:
            query = query.where(self.visibility)
        for name, values in request.filters:
            query = query.where(self._matching(self._filters[name], values))
        if request.exclude:
            query = query.where(c.id != all_(bindparam("excluded_ids", type_=ARRAY(c.id.type))))
        order: list[Any] = []
        if request.q is not None:
            vector = search_vector([c[n] for n in self.search])
            tsquery = func.websearch_to_tsquery(
                literal_column(f"'{TEXT_SEARCH_CONFIG}'::regconfig"), bindparam("q", type_=String)
            )
            query = query.where(vector.op("@@")(tsquery))
            if request.sort is None:
                order.append(func.ts_rank(vector, tsquery).desc())
        if self.window is not None:
            start, end = c[self.window[0]], c[self.window[1]]
            if request.window[0] is not None:
                window_from = bindparam("from", type_=_instant_type(end))
                if isinstance(end.type, Date):
                    # A date is its whole day (UTC): it lasts until the next midnight, so a
                    # window inside that day overlaps it.
                    query = query.where(end + literal_column("1") > func.timezone(_UTC, window_from))
                elif start is end:
                    # A moment (``created_at``): in the window from its first instant on.
                    query = query.where(end >= window_from)
                else:
                    # A span ends where the next begins: one that ends at ``from`` is before
                    # the window, as one that starts at ``to`` is after it.
                    query = query.where(end > window_from)
            if request.window[1] is not None:
                window_to = bindparam("to", type_=_instant_type(start))
                if isinstance(start.type, Date):
                    query = query.where(start < func.timezone(_UTC, window_to))
                else:
                    query = query.where(start < window_to)
        if request.sort is not None:
            column = c[self._sort_columns[request.sort.removeprefix("-")]]
            descending = request.sort.startswith("-")
            # Text in the order people read it, whatever the database's collation: "Zed"
            # after "ann", not before (C collation puts capitals first).
            key = func.lower(column) if isinstance(column.type, String) else column
            ordered = key.desc() if descending else key.asc()
            # Rows without the value (a room with no message yet, a draft's issue date) come
            # last either way: PostgreSQL's default puts them first in a descending sort,
            # above every room that has had a message.
            order += [
                ordered.nulls_last() if column.nullable else ordered,
                c.id.desc() if descending else c.id.asc(),
            ]
        elif not order and self.default_order is not None:
            order += self.default_order(request, c)
        else:
            order += [c.created_at.desc(), c.id.desc()]
        query = query.order_by(*order).limit(bindparam("limit")).offset(bindparam("offset"))
        return str(query.compile(dialect=_DIALECT))

    def _matching(self, spec: Filter, values: list[Any]) -> ColumnElement[bool]:
        """The condition of one filter for ``values``: any of them (``None``: a null column)."""
        column = self.table.c[spec.column_name]
        element_type = self._element_type(spec).type
        parameter = bindparam(f"f_{spec.name}", type_=ARRAY(element_type))
        conditions: list[ColumnElement[bool]] = []
        # Values are matched unless ``null`` is all that was asked for.
        if None not in values or any(v is not None for v in values):
            if spec.element:
                # ``&&``: the array holds any of the values (a GIN index on it serves this).
                conditions.append(column.op("&&")(parameter))
            else:
                compared = func.lower(column) if spec.casefold else column
                conditions.append(compared == any_(parameter))
        if None in values:
            conditions.append(column.is_(None))
        return conditions[0] if len(conditions) == 1 else or_(*conditions)

    def openapi_parameters(self) -> list[Parameter]:
        """The declared parameters as OpenAPI parameters (openapi.py adds them to the list)."""
        described = []
        for name, spec in self._filters.items():
            if spec.element:
                meaning = (
                    f"Rows whose `{spec.column_name}` holds one of the values (repeat it to give several)"
                )
            else:
                meaning = f"Rows whose `{name}` is one of the values (repeat it to give several)"
            if spec.null:
                meaning += "; `null` matches rows where it is null"
            item = _schema_of(self._element_type(spec))
            if name in self.choices:
                item = Schema(type=OpenAPIType.STRING, enum=list(self.choices[name]))
            if spec.null:
                item = Schema(one_of=[item, Schema(type=OpenAPIType.STRING, enum=["null"])])
            described.append(
                _parameter(
                    name,
                    Schema(type=OpenAPIType.ARRAY, items=item),
                    meaning + (", in any case." if spec.casefold else "."),
                )
            )
        if self.search:
            described.append(
                _parameter(
                    "q",
                    Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_QUERY_LENGTH),
                    f"Full-text search over {', '.join(self.search)}, ranked; words match by their stem.",
                )
            )
        if self.window:
            instant = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME)
            described.append(_parameter("from", instant, "Rows that end at or after this time (RFC 3339)."))
            described.append(_parameter("to", instant, "Rows that start before this time (RFC 3339)."))
        choices = sorted(self.sortable)
        described.append(
            _parameter(
                "sort",
                Schema(type=OpenAPIType.STRING, enum=[*choices, *(f"-{c}" for c in choices)]),
                "Sort by a field, ascending; `-field` descending. Default: newest first"
                + (", or by relevance with `q`." if self.search else "."),
            )
        )
        return described


def parse_instant(raw: str, name: str, errors: list[dict[str, str]]) -> datetime.datetime | None:
    """Query parameter ``name``'s RFC 3339 time, or None with its error added to ``errors``."""
    try:
        value = datetime.datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        errors.append(_error(name, "an RFC 3339 time with its offset, e.g. 2026-01-31T09:00:00Z"))
        return None
    return value


def query_problems(
    query: MultiDict[str], allowed: Collection[str], what: str = "this list", once: Collection[str] = ()
) -> list[dict[str, str]]:
    """Every parameter of ``query`` that ``allowed`` does not name, and every one of ``once``
    given more than once, each named (API.md §5: an unknown query parameter is 422)."""
    takes = ", ".join(sorted(allowed)) or "none"
    errors = [
        _error(name, f"unknown query parameter; {what} takes {takes}")
        for name in dict.fromkeys(query.keys())
        if name not in allowed
    ]
    return errors + [_error(name, "give it once") for name in once if len(query.getall(name, [])) > 1]


# Literal, not bound: list statements are compiled once and bound with the request's values only.
_UTC = literal_column("'UTC'")


def _instant_type(column: Column[Any]) -> Any:
    """The type ``from`` and ``to`` are bound as beside ``column``: instants, also beside a date."""
    return DateTime(timezone=True) if isinstance(column.type, Date) else column.type


def _error(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message, "source": "query"}


def _python_type(column: Column[Any], element: bool = False) -> type:
    kind = column.type.item_type if element else column.type  # type: ignore[attr-defined]
    try:
        return kind.python_type
    except NotImplementedError:
        return str


def string_formats(schema: type[msgspec.Struct]) -> dict[str, Any]:
    """The string fields of ``schema`` (a create body) with a pattern (a currency code, an
    email): a list's filter on one refuses a value the field itself would (422, not an
    empty page that looks like an answer)."""
    found = {}
    for name, hint in get_type_hints(schema, include_extras=True).items():
        plain, metas = plain_type(hint)
        patterned = tuple(m for m in metas if m.pattern is not None)
        if plain is str and patterned:
            found[name] = Annotated[str, *patterned]
    return found


def literal_choices(schema: type[msgspec.Struct]) -> dict[str, tuple[str, ...]]:
    """The fields of ``schema`` that take one of a few strings (a ``Literal``, maybe
    annotated or nullable), with their values in declared order: a list's filter on such a
    field takes only those."""
    found = {}
    for name, hint in get_type_hints(schema, include_extras=True).items():
        pending = [hint]
        while pending:
            kind = pending.pop()
            if get_origin(kind) is Literal and all(isinstance(v, str) for v in get_args(kind)):
                found[name] = get_args(kind)
            elif get_origin(kind) in (Annotated, Union, UnionType):
                pending.extend(get_args(kind)[:1] if get_origin(kind) is Annotated else get_args(kind))
    return found


def _schema_of(column: Column[Any], element: bool = False) -> Schema:
    python_type = _python_type(column, element)
    if python_type is uuid.UUID:
        return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.UUID)
    if python_type is int:
        return Schema(type=OpenAPIType.INTEGER)
    if python_type is bool:
        return Schema(type=OpenAPIType.BOOLEAN)
    return Schema(type=OpenAPIType.STRING)


def _parameter(name: str, schema: Schema, description: str) -> Parameter:
    return Parameter(
        name=name, param_in=ParamType.QUERY, required=False, description=description, schema=schema
    )
