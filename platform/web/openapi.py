"""The OpenAPI document: Litestar's, finished so that it validates and makes clean clients.

Litestar generates the document from the handlers. What it leaves out or spells in a way
client generators trip over is put right here, once, on the generated objects
(``finish_openapi``), so that handlers keep declaring only what is special about them:

- response headers get a schema (OpenAPI 3.1 requires one; Litestar writes none);
- every 201 documents ``Location``, every 429 and 503 ``Retry-After``;
- handlers that send a row's ``ETag`` (route option ``SENDS_ETAG``) document it on their
  success responses, and those that check ``If-Match`` (``CHECKS_IF_MATCH``) document the
  header parameter (platform/web/concurrency.py);
- public operations say ``security: []`` and every other one names the bearer scheme,
  which loses the ``name`` field OpenAPI forbids on an ``http`` scheme;
- downloads are ``application/octet-stream`` bytes (``format: binary``);
- a one-member ``oneOf`` (Litestar's spelling of ``T | UNSET`` in update bodies) becomes
  the member itself, so generators make plain fields instead of wrapper classes, and an
  ``integer`` beside a ``number`` in a ``oneOf`` (``int | float``) goes, since every
  integer is a number and ``oneOf`` wants exactly one member to match;
- a body that may be left out (``X | None``, an action whose fields are all optional) is
  ``X`` with ``required: false``, not a ``oneOf`` with ``null``;
- request bodies that refuse unknown fields say so (``additionalProperties: false``);
- every tag in use is declared, with its router's description;
- every POST documents the ``Idempotency-Key`` header (idempotency.py), its 422, and on
  creates the ``Idempotent-Replayed`` header of a replay and the 409 of a key in use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

from litestar import Litestar, Router
from litestar.enums import ParamType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
    Server,
    ServerVariable,
    Tag,
)

from atrium.platform.settings import Settings
from atrium.platform.web.bodies import Schema as BodySchema
from atrium.platform.web.concurrency import CHECKS_IF_MATCH, SENDS_ETAG
from atrium.platform.web.docs import docs_render_plugin
from atrium.platform.web.idempotency import HEADER as IDEMPOTENCY_HEADER
from atrium.platform.web.idempotency import KEEPS_ANONYMOUS_ANSWERS, KEPT_FOR, REPLAYED_HEADER
from atrium.platform.web.listing import LIST_PARAMETERS
from atrium.platform.web.query import REQUIRED_QUERY, mark_routes_reading_no_query
from atrium.tenants.idempotency_keys import KEY_MAX_LENGTH

API_VERSION = "0.1.0"
BEARER = "BearerToken"
# Router option: the description of the router's tag in the document.
TAG_DESCRIPTION = "tag_description"
PLATFORM_TAGS = {"platform": "Served on every host: liveness and the database check."}

_DESCRIPTION = """\
Schema-per-tenant SaaS API. Each tenant (organisation) is served at its own host,
`<slug>.<base domain>` (for example `acme.example.com`), or at a custom domain its operator
added; the host alone decides the tenant. Point a client at the tenant's host: the
`servers` entry below takes the tenant's slug as a variable.

Every route needs `Authorization: Bearer <token>`, from `POST /auth/login` on the same host
(a token works only on the tenant that issued it), but the login itself, `GET /health`, an
open public form (`/public/forms/...`) and a calendar's feed address (`/events/feed/...`).
Errors are `application/problem+json` (RFC 9457); validation errors list every bad field.
"""


def openapi_config(settings: Settings) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Atrium",
        version=API_VERSION,
        description=_DESCRIPTION,
        path="/schema",
        render_plugins=[docs_render_plugin()],
        servers=[
            Server(
                url=settings.tenant_url("{tenant}"),
                description="A tenant's host",
                variables={"tenant": ServerVariable(default="demo", description="The tenant's slug")},
            )
        ],
    )


def finish_openapi(app: Litestar, routers: Iterable[Router]) -> None:
    """Put the generated document right (see the module's docstring); call once."""
    document = app.openapi_schema
    components = document.components
    _document_concurrency(app, document.paths or {})
    for scheme in (components.security_schemes or {}).values():
        if not isinstance(scheme, Reference):
            scheme.name = None
    kept_anonymously = {
        id(operation)
        for handler, operations in _handler_operations(app, document.paths or {})
        if handler.opt.get(KEEPS_ANONYMOUS_ANSWERS)
        for operation in operations
    }
    for method, operation in _operations_by_method(document.paths or {}):
        public = operation.security == [{}]
        if method == "post":
            # Keys are kept per user, and per client address on the anonymous routes that
            # keep them (a public form's answers); a login keeps none.
            anonymous = id(operation) in kept_anonymously
            _document_idempotency(operation, remembered=not public or anonymous, anonymous=anonymous)
        _optional_body(operation)
        operation.security = [] if public else [{BEARER: []}]
        for status, response in (operation.responses or {}).items():
            if isinstance(response, OpenAPIResponse):
                _document_headers(int(status), response, creates="201" in (operation.responses or {}))
                _document_binary(response)
    closed = _closed_body_names()
    for name, schema in (components.schemas or {}).items():
        if name.rsplit(".", 1)[-1] in closed:
            schema.additional_properties = False
    for schema in list((components.schemas or {}).values()):
        _flatten_single_one_of(schema)
    document.tags = _declared_tags(document.paths or {}, routers)
    _add_list_parameters(app, document.paths or {})
    _document_required_query(app, document.paths or {})
    mark_routes_reading_no_query(_handlers_and_query(app, document.paths or {}))


def _handler_operations(app: Litestar, paths: dict[str, Any]) -> Iterator[tuple[Any, list[Operation]]]:
    """Each documented handler and its operations."""
    for route in app.routes:
        item = paths.get(document_path(route.path))
        for handler in getattr(route, "route_handlers", ()) if item is not None else ():
            operations = [getattr(item, m.lower(), None) for m in handler.http_methods]
            operations = [o for o in operations if isinstance(o, Operation)]
            if operations:
                yield handler, operations


def _handlers_and_query(app: Litestar, paths: dict[str, Any]) -> Iterator[tuple[Any, bool]]:
    """Each documented handler, and whether its operations declare query parameters."""
    for handler, operations in _handler_operations(app, paths):
        queried = any(
            getattr(p, "param_in", None) == ParamType.QUERY for o in operations for p in o.parameters or ()
        )
        yield handler, queried


_TYPED_PARAMETER = re.compile(r"\{(\w+):[^}]+\}")


def document_path(template: str) -> str:
    """A Litestar path template (``/chats/{item_id:uuid}``) as the document writes it."""
    return _TYPED_PARAMETER.sub(r"{\1}", template)


def _add_list_parameters(app: Litestar, paths: dict[str, Any]) -> None:
    """Lists read their filters from the query string themselves (listing.py), so Litestar
    cannot see them: the route carries them for the document."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            extra = handler.opt.get(LIST_PARAMETERS)
            # A list below a row (``/help-desk/{item_id:uuid}/replies``) is documented at
            # ``/help-desk/{item_id}/replies``: looked up by the template, it was never found.
            item = paths.get(document_path(route.path))
            if extra and item is not None and item.get is not None:
                item.get.parameters = [*(item.get.parameters or []), *extra]


def _document_required_query(app: Litestar, paths: dict[str, Any]) -> None:
    """Required instants the handler checks itself (``REQUIRED_QUERY``): required, not
    nullable, RFC 3339 date-times in the document."""
    for handler, operations in _handler_operations(app, paths):
        names = handler.opt.get(REQUIRED_QUERY) or ()
        for parameter in (p for o in operations for p in o.parameters or () if isinstance(p, Parameter)):
            if parameter.name in names and parameter.param_in == ParamType.QUERY:
                parameter.required = True
                parameter.schema = Schema(
                    type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME, description=parameter.description
                )


def _operations(paths: dict[str, Any]) -> Iterator[Operation]:
    for _method, operation in _operations_by_method(paths):
        yield operation


def _operations_by_method(paths: dict[str, Any]) -> Iterator[tuple[str, Operation]]:
    for item in paths.values():
        for name in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
            operation = getattr(item, name, None)
            if isinstance(operation, Operation):
                yield name, operation


_IDEMPOTENCY_DESCRIPTION = f"""\
Makes a retry safe. The same key from the same user on this tenant within \
{KEPT_FOR.total_seconds() / 3600:g} hours answers the first successful answer again (same status, \
body and `Location`, plus `{REPLAYED_HEADER}: true`) and does nothing more; the same key \
with another body is 422, and while the first request with the key is still running, 409. \
A request that failed is not remembered. `POST /auth/login` and `POST /auth/logout` check \
the key but remember nothing: a login answers a new token each time."""
_UNKEPT_IDEMPOTENCY_DESCRIPTION = (
    "Checked (1 to 255 characters, else 422) and not remembered: keys are kept per user, and "
    "an anonymous request has none. Each request is answered on its own."
)
_ANONYMOUS_IDEMPOTENCY_DESCRIPTION = _IDEMPOTENCY_DESCRIPTION.replace(
    "from the same user", "from the same client address"
).split(" `POST /auth/login`")[0]


def _document_idempotency(operation: Operation, remembered: bool, anonymous: bool = False) -> None:
    parameters = list(operation.parameters or [])
    parameters.append(
        Parameter(
            name=IDEMPOTENCY_HEADER,
            param_in="header",
            required=False,
            description=(
                _ANONYMOUS_IDEMPOTENCY_DESCRIPTION
                if anonymous
                else _IDEMPOTENCY_DESCRIPTION
                if remembered
                else _UNKEPT_IDEMPOTENCY_DESCRIPTION
            ),
            schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=KEY_MAX_LENGTH),
        )
    )
    operation.parameters = parameters
    responses = operation.responses or {}
    problem = next(
        (r for status, r in responses.items() if status.startswith("4") and isinstance(r, OpenAPIResponse)),
        None,
    )
    # Every answer with a body may be a replay: a create's 201, an action's 200.
    answered = [r for s, r in responses.items() if s in ("200", "201") and isinstance(r, OpenAPIResponse)]
    for response in answered if remembered else ():
        response.headers = {
            **(response.headers or {}),
            REPLAYED_HEADER: OpenAPIHeader(
                description=f"`true`: the first answer to an earlier request with this {IDEMPOTENCY_HEADER}",
                schema=Schema(type=OpenAPIType.STRING, enum=["true"]),
            ),
        }
    if remembered and answered:
        _problem_response(responses, "409", _DESCRIPTION_409, problem)
    _problem_response(responses, "422", _DESCRIPTION_422, problem)
    operation.responses = dict(sorted(responses.items()))


def _problem_response(
    responses: dict[str, Any], status: str, description: str, like: OpenAPIResponse | None
) -> None:
    """``status`` documented with ``description``, as a problem like the operation's others."""
    response = responses.get(status)
    if isinstance(response, OpenAPIResponse):
        response.description = description
    elif like is not None:
        responses[status] = OpenAPIResponse(description=description, content=like.content)


_DESCRIPTION_409 = f"Conflict with existing data, or a request with this {IDEMPOTENCY_HEADER} still running"
_DESCRIPTION_422 = f"Validation failed (the {IDEMPOTENCY_HEADER} header too); `errors` names each bad field"


_STRING = Schema(type=OpenAPIType.STRING)
_HEADER_SCHEMAS = {"Retry-After": Schema(type=OpenAPIType.INTEGER, description="Seconds to wait")}
_ETAG = (
    "The row's current version, a strong entity tag; send it back in If-Match to write only over this version"
)
_IF_MATCH = (
    "Write only if the row's current ETag is one of these (comma-separated, strong comparison: "
    "weak `W/` tags never match), or `*` for any existing row; otherwise 412 and the row is "
    "unchanged. Without it, the last write wins."
)


def _document_concurrency(app: Litestar, paths: dict[str, Any]) -> None:
    """The ``ETag`` header and the ``If-Match`` parameter where the handlers' options say."""
    for route in app.routes:
        item = paths.get(route.path_format)
        for handler in getattr(route, "route_handlers", ()):
            if not handler.opt.get(SENDS_ETAG) and not handler.opt.get(CHECKS_IF_MATCH):
                continue
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if not isinstance(operation, Operation):
                    continue
                if handler.opt.get(SENDS_ETAG):
                    for status, response in (operation.responses or {}).items():
                        if str(status).startswith("2") and isinstance(response, OpenAPIResponse):
                            headers = dict(response.headers or {})
                            headers.setdefault("ETag", OpenAPIHeader(description=_ETAG))
                            response.headers = headers
                if handler.opt.get(CHECKS_IF_MATCH):
                    parameters = list(operation.parameters or [])
                    if not any(getattr(p, "name", "").lower() == "if-match" for p in parameters):
                        parameters.append(
                            Parameter(
                                name="If-Match",
                                param_in=ParamType.HEADER,
                                required=False,
                                schema=Schema(type=OpenAPIType.STRING),
                                description=_IF_MATCH,
                            )
                        )
                    operation.parameters = parameters


def _document_headers(status: int, response: OpenAPIResponse, creates: bool = False) -> None:
    headers = dict(response.headers or {})
    if status == 201:
        headers.setdefault("Location", OpenAPIHeader(description="The created row's URL"))
    elif status == 200 and creates:
        # A create that found its row already there (a direct room) answers where it is.
        headers.setdefault("Location", OpenAPIHeader(description="The row's URL"))
    if status in (429, 503):
        headers.setdefault("Retry-After", OpenAPIHeader(description="Seconds to wait before trying again"))
    for name, header in headers.items():
        if isinstance(header, OpenAPIHeader) and header.schema is None and header.content is None:
            header.schema = _HEADER_SCHEMAS.get(name, _STRING)
    response.headers = headers or None


def _document_binary(response: OpenAPIResponse) -> None:
    """Bytes (a download, a PDF) as ``format: binary``, which generators turn into a file,
    not a string."""
    for media_type, media in (response.content or {}).items():
        if (
            media_type in _BINARY_TYPES
            and isinstance(media.schema, Schema)
            and media.schema.type == OpenAPIType.STRING
        ):
            media.schema.format = OpenAPIFormat.BINARY


_BINARY_TYPES = frozenset({"application/octet-stream", "application/pdf"})


def _closed_body_names() -> set[str]:
    """Request bodies refuse unknown fields (msgspec ``forbid_unknown_fields``); Litestar's
    schema generation does not carry that over."""
    closed: set[str] = set()
    pending = list(BodySchema.__subclasses__())
    while pending:
        cls = pending.pop()
        closed.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return closed


def _optional_body(operation: Operation) -> None:
    """A JSON body of ``X | None``: the body is ``X``, and may be left out."""
    body = operation.request_body
    if body is None or isinstance(body, Reference):
        return
    media = (body.content or {}).get("application/json")
    if media is None or not isinstance(media.schema, Schema) or len(media.schema.one_of or ()) != 2:
        return
    members = media.schema.one_of or ()
    kept = [m for m in members if not (isinstance(m, Schema) and m.type == OpenAPIType.NULL)]
    if len(kept) == 1:
        media.schema = kept[0]
        body.required = False


def _flatten_single_one_of(node: Any) -> None:
    """Replace every ``oneOf: [X]`` under ``node`` by X's own keywords, and drop an
    ``integer`` member beside a ``number`` one, recursively."""
    if isinstance(node, Schema):
        types = [m.type if isinstance(m, Schema) else None for m in node.one_of or ()]
        if OpenAPIType.NUMBER in types and OpenAPIType.INTEGER in types:
            members = zip(node.one_of or (), types, strict=True)
            node.one_of = [m for m, t in members if t != OpenAPIType.INTEGER]
        if node.one_of is not None and len(node.one_of) == 1 and isinstance(node.one_of[0], Schema):
            (member,) = node.one_of
            node.one_of = None
            for field in fields(member):
                value = getattr(member, field.name)
                if value is not None and getattr(node, field.name) is None:
                    setattr(node, field.name, value)
        for field in fields(node):
            _flatten_single_one_of(getattr(node, field.name))
    elif isinstance(node, dict):
        for value in node.values():
            _flatten_single_one_of(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _flatten_single_one_of(value)


def _declared_tags(paths: dict[str, Any], routers: Iterable[Router]) -> list[Tag]:
    descriptions = dict(PLATFORM_TAGS)
    for router in routers:
        for tag in router.tags or ():
            if description := router.opt.get(TAG_DESCRIPTION):
                descriptions[tag] = description
    used = sorted({tag for operation in _operations(paths) for tag in operation.tags or ()})
    return [Tag(name=tag, description=descriptions.get(tag)) for tag in used]
