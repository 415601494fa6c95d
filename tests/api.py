"""Shared helpers of the identity and access tests (auth, RBAC, isolation, resources, passwords).

- The tenant routes are read from the application's own route table (``tenant_endpoints``),
  so a route added later is picked up by every matrix, and ``uncovered`` names the routes
  that no matrix knows how to exercise (no factory, or an unknown shape).
- ``FACTORIES`` creates a valid row of each resource; ``UPDATES`` is a valid partial change.
- ``serve_api`` is ``conftest.serve`` with ``check_response`` installed as an httpx event hook:
  no response may contain a known test password or a bcrypt hash, every error response
  must be a clean problem document (never a 500, a schema name, SQL or a traceback), and
  every successful single-row response (create, get, update of any resource) an ``ETag``.

Test modules load this file as a plugin (``pytest_plugins = ["tests.api"]``) to get the
module-scoped fixtures at the bottom.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import Engine, text

from atrium.platform.app import create_app
from atrium.platform.settings import Settings
from atrium.platform.tenancy.provisioning import OwnerSpec, provision_tenant
from atrium.tenants.documents.routes import DOCUMENT_BODY_LIMIT
from tests.conftest import MadeTenant, login, serve, unique_slug

Headers = dict[str, str]
Context = dict[str, Any]
Api = tuple[Litestar, httpx.AsyncClient]  # the ``api`` fixture: the app and a client on it
T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Secrets that must never come back, and the response scan
# ---------------------------------------------------------------------------------------------

KNOWN_PASSWORDS: set[str] = set()
BCRYPT_MARKER = "$2b$"
# Error bodies never show SQL, a traceback, the driver or a schema name (schemas are
# ``tenant_<slug>``; the field name ``tenant_id`` is fine).
_LEAKS = re.compile(r"tenant_(?!id\b)|SELECT|Traceback|psycopg")
PROBLEM_TYPE = "application/problem+json"
# A resource row (``/<resource>/<id>``) or collection (``/<resource>``): not /auth, not
# sub-resources such as /media/{id}/content.
_ROW_PATH = re.compile(r"^/(?!auth/|health$|schema)[a-z][a-z-]*(/[0-9a-fA-F-]{36})?/?$")


def secret_password(prefix: str = "pw") -> str:
    """A fresh password that the response scan will look for."""
    return remember_password(f"{prefix}-{secrets.token_urlsafe(12)}")


def remember_password(password: str) -> str:
    KNOWN_PASSWORDS.add(password)
    return password


def _describe(response: httpx.Response) -> str:
    request = response.request
    return (
        f"{request.method} {request.url.path} (Host {request.headers.get('host')}) → {response.status_code}"
    )


async def check_response(response: httpx.Response) -> None:
    """The httpx response hook of every client of these tests."""
    body = await response.aread()
    for password in KNOWN_PASSWORDS:
        for form in {password, json.dumps(password)[1:-1]}:
            assert form.encode() not in body, f"a test password is in the response of {_describe(response)}"
    assert BCRYPT_MARKER.encode() not in body, f"a bcrypt hash is in the response of {_describe(response)}"
    if response.status_code < 400:
        if _is_single_row(response):
            assert "etag" in response.headers, f"no ETag on {_describe(response)}"
        return
    text = body.decode(errors="replace")
    where = f"{_describe(response)}: {text[:500]}"
    assert response.status_code < 500 or response.status_code == 503, f"server error on {where}"
    assert response.headers.get("content-type", "").startswith(PROBLEM_TYPE), f"not a problem: {where}"
    problem = json.loads(text)
    missing = {"type", "title", "status", "detail"} - problem.keys()
    assert not missing, f"problem without {sorted(missing)}: {where}"
    assert problem["status"] == response.status_code, f"problem status differs: {where}"
    for error in problem.get("errors") or ():
        # Each bad field says where it is, and never with a Python type's name.
        sources = {"body", "query", "header", "row"}
        assert error.get("source") in sources, f"an error without its source: {where}"
        assert "<class " not in error.get("message", ""), f"a Python class in an error: {where}"
    leak = _LEAKS.search(text)
    assert leak is None, f"error body shows {leak.group(0)!r}: {where}"


def _is_single_row(response: httpx.Response) -> bool:
    """A create (201), or a get or update of one row (200): API.md §5 wants an ETag on it."""
    matched = _ROW_PATH.match(response.request.url.path)
    if matched is None:
        return False
    on_row, method = matched.group(1) is not None, response.request.method
    if method == "POST":
        return response.status_code == 201 and not on_row
    return response.status_code == 200 and on_row and method in {"GET", "PATCH"}


@asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """``conftest.serve`` with the response scan installed on its client."""
    async with serve(settings) as (app, client):
        client.event_hooks = {"request": [], "response": [check_response]}
        yield app, client


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """``response`` is the problem ``status``; returns its body. (The hook checks the format.)"""
    assert response.status_code == status, f"{_describe(response)}, expected {status}: {response.text[:500]}"
    assert response.headers["content-type"].startswith(PROBLEM_TYPE), response.headers
    return response.json()


def error_fields(problem: dict[str, Any]) -> set[str]:
    errors = problem.get("errors")
    assert isinstance(errors, list) and errors, f"no errors list in {problem}"
    return {str(e.get("field", "")) for e in errors}


# ---------------------------------------------------------------------------------------------
# The route table
# ---------------------------------------------------------------------------------------------

ITEM = "{item_id:uuid}"
# ``/<resource>.ics``: a resource's calendar feed.
FEED = ".ics"
# A numbered version of a row (documents): every row has its first.
VERSION = "{version:int}"
_PLATFORM_PREFIXES = ("/health", "/schema")
_CATCH_ALL = {"/", "/{path:path}"}
_IMPLICIT_METHODS = {"OPTIONS", "HEAD"}  # added by Litestar, answered without auth
# (method, segments after the resource) → operation
_SHAPES = {
    ("GET", ()): "list",
    ("POST", ()): "create",
    ("GET", (ITEM,)): "get",
    ("PATCH", (ITEM,)): "update",
    ("DELETE", (ITEM,)): "delete",
    ("GET", (ITEM, "content")): "content",
    # A download of the row's children that only some readers may take (``EXPORTED_BY``).
    ("GET", (ITEM, "responses.csv")): "export",
    ("GET", (ITEM, "versions")): "versions",
    ("GET", (ITEM, "versions", VERSION)): "version",
    ("POST", (ITEM, "versions", VERSION, "restore")): "restore",
    ("GET", ("occurrences",)): "occurrences",
    ("GET", (FEED,)): "feed",
    ("POST", ("feed-token",)): "feed-token",
}
# Routes below a row that are not a file's bytes: (method, resource, last segment) → operation.
# ``content`` reads something of the row (a ticket's replies, an invoice's PDF); ``action``
# is a POST on the row, which needs its ``ACTIONS`` case.
_SUB_ROUTES = {
    ("GET", "help-desk", "replies"): "content",
    ("POST", "help-desk", "replies"): "action",
    ("GET", "invoices", "pdf"): "content",
    ("GET", "chats", "messages"): "content",
    ("POST", "chats", "messages"): "action",
    ("POST", "chats", "read"): "action",
    **{
        ("POST", "invoices", action): "action" for action in ("finalize", "pay", "void", "mark-uncollectible")
    },
}
# Operations that need only ``<resource>:read`` (a feed token is the caller's own address).
READS = {"list", "get", "content", "versions", "version", "occurrences", "feed", "feed-token"}
# resource with an export → the resource whose ``manage`` opens another user's export
# (the row's owner may always take their own).
EXPORTED_BY = {"forms": "form-responses"}
# op → the query a matrix sends with it
QUERIES: dict[str, dict[str, str]] = {
    "occurrences": {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
}
# Item routes besides get, update and delete: each a read or a write of one row.
ITEM_EXTRAS = ("content", "versions", "version", "restore")
# A row's child by its own id (a room's message, ``/chats/{id}/messages/{message_id}``):
# made by the row's action of that name (its ``ACTIONS`` case, a 201 whose ``Location`` is
# the child's URL, ``child_url``). The isolation matrix runs them
# (tests/test_isolation.py); their ownership rules are their area's tests
# (tests/test_chats.py, tests/test_helpdesk.py).
_CHILD_ROUTES = {
    ("GET", "chats", "messages"): "child",
    ("PATCH", "chats", "messages"): "child",
    ("DELETE", "chats", "messages"): "child",
    ("GET", "help-desk", "replies"): "child",
}
# The live socket (``/chats/ws``): HTTP matrices cannot call it; tests/test_chats_live.py does.
_SOCKETS = {("WEBSOCKET", "/chats/ws")}
UNMATRIXED = {"child", "socket"}
AUTH_ROUTES = {
    ("POST", "/auth/login"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/me"),
    ("PATCH", "/auth/me"),
}
# Routes that need no token, each proved by its area's own tests (tests/test_forms.py,
# tests/test_calendar.py): no bearer, so no role matrix.
PUBLIC_ROUTES = {
    ("GET", "/public/forms/{item_id:uuid}"),
    ("POST", "/public/forms/{item_id:uuid}/responses"),
    ("GET", "/events/feed/{name:str}"),
}


@dataclass(frozen=True, order=True)
class Endpoint:
    resource: str
    op: str  # a value of _SHAPES, or "" when no matrix knows this shape
    method: str
    path: str

    @property
    def on_item(self) -> bool:
        return ITEM in self.path

    def url(self, item_id: str | None = None) -> str:
        if self.on_item:
            assert item_id is not None, self
            return self.path.replace(ITEM, item_id).replace(VERSION, "1")
        if self.op in QUERIES:
            return f"{self.path}?{urlencode(QUERIES[self.op])}"
        return self.path

    @property
    def action(self) -> tuple[str, str]:
        """(resource, last path segment): the key of an action's ``ACTIONS`` case; for a
        child route, of the action that makes the child (the segment before its id)."""
        segments = self.path.strip("/").split("/")
        return self.resource, segments[-2] if self.op == "child" else segments[-1]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def route_table(app: Litestar) -> Iterator[tuple[str, str]]:
    """Every (method, path) of the app's tenant routes, auth and public routes included."""
    for route in app.routes:
        path = route.path
        if path in _CATCH_ALL or any(path == p or path.startswith(p + "/") for p in _PLATFORM_PREFIXES):
            continue
        handlers = getattr(route, "route_handlers", None)
        methods = {m for h in handlers for m in h.http_methods} if handlers else {"WEBSOCKET"}
        for method in sorted(methods - _IMPLICIT_METHODS):
            yield method, path


def tenant_endpoints(app: Litestar, every: bool = False) -> list[Endpoint]:
    """The resource routes (everything but auth), classified by shape; without ``every``,
    only those the HTTP matrices run (not a row's children by id, not sockets)."""
    endpoints = []
    for method, path in route_table(app):
        if path.startswith(("/auth/", "/public/")) or (method, path) in PUBLIC_ROUTES:
            continue
        resource, *rest = path.strip("/").split("/")
        if resource.endswith(FEED):
            resource, rest = resource.removesuffix(FEED), [FEED, *rest]
        op = _SHAPES.get((method, tuple(rest)), "")
        if not op and len(rest) == 2 and rest[0] == ITEM:
            op = _SUB_ROUTES.get((method, resource, rest[1]), "")
        if not op and len(rest) == 3 and rest[0] == ITEM:
            op = _CHILD_ROUTES.get((method, resource, rest[1]), "")
        if (method, path) in _SOCKETS:
            # Never an HTTP matrix's: no matrix selects this op.
            op = "socket"
        if every or op not in UNMATRIXED:
            endpoints.append(Endpoint(resource, op, method, path))
    return sorted(endpoints)


@cache
def unserved_app() -> Litestar:
    """The app, built only to read its route table at collection time (never started)."""
    return create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none", secret_key="c" * 40))


def route_resources() -> list[str]:
    """The resources of the route table, for ``pytest.mark.parametrize``."""
    return resources(unserved_app())


@cache
def endpoints_of(app: Litestar, *ops: str) -> list[Endpoint]:
    return [e for e in tenant_endpoints(app) if e.op in ops]


def resources(app: Litestar) -> list[str]:
    return sorted({e.resource for e in tenant_endpoints(app)})


def uncovered(app: Litestar) -> list[str]:
    """Routes no matrix can exercise: unknown shape, no factory, no update body, unknown auth route."""
    problems = [
        f"{method} {path}: an auth route without tests"
        for method, path in route_table(app)
        if path.startswith("/auth/") and (method, path) not in AUTH_ROUTES
    ]
    problems += [
        f"{method} {path}: a public route without tests"
        for method, path in route_table(app)
        if path.startswith("/public/") and (method, path) not in PUBLIC_ROUTES
    ]
    for e in tenant_endpoints(app, every=True):
        if not e.op:
            problems.append(f"{e}: a route shape no matrix knows")
        elif e.resource not in FACTORIES:
            problems.append(f"{e}: no factory for {e.resource!r} in tests/api.py")
        elif e.op == "update" and e.resource not in UPDATES:
            problems.append(f"{e}: no update body for {e.resource!r} in tests/api.py")
        elif e.op in {"action", "child"} and e.action not in ACTIONS:
            problems.append(f"{e}: no ACTIONS case for {e.action} in tests/api.py")
        elif e.op == "child" and ACTIONS[e.action].status != 201:
            problems.append(f"{e}: its ACTIONS case {e.action} creates no child (201)")
        elif e.op == "child" and e.method == "PATCH" and e.action not in CHILD_UPDATES:
            problems.append(f"{e}: no CHILD_UPDATES body for {e.action} in tests/api.py")
    return problems


def restricted_resources() -> frozenset[str]:
    """Resources with a visibility rule: without manage, another's row is not there (404)."""
    from atrium.platform.web.resources import visibility_sql
    from atrium.tenants.areas import resource_specs

    return frozenset(spec.resource for spec in resource_specs() if visibility_sql(spec.service) is not None)


# ---------------------------------------------------------------------------------------------
# Rows: how to create a valid one of each resource, and a valid partial change
# ---------------------------------------------------------------------------------------------

USER_PHONE = "+1 555 0101"
RequestBuilder = Callable[[httpx.AsyncClient, Headers, Context], Awaitable[dict[str, Any]]]


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def _user_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    tag = _tag()
    return {
        "json": {
            "name": f"User {tag}",
            "email": f"user-{tag}@example.test",
            "phone": USER_PHONE,
            "password": secret_password("user"),
        }
    }


async def _group_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    return {"json": {"name": f"Group {_tag()}"}}


async def _role_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    return {"json": {"name": f"Role {_tag()}", "permissions": ["customize:read", "users:read"]}}


async def _meta_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    """A link of a new user to a new group and a new role without permissions (so that the
    link changes nothing the user may do)."""
    user = await FACTORIES["users"](client, headers, context)
    group = await FACTORIES["user-groups"](client, headers, context)
    role_body = {"json": {"name": f"Role {_tag()}", "permissions": []}}
    response = await client.post("/user-roles", headers=headers, **role_body)
    assert response.status_code == 201, response.text
    role = str(response.json()["id"])
    context[role] = role_body  # recorded like every row a factory makes
    return {
        "json": {
            "owner_id": user,
            "user_groups": group,
            "user_roles": role,
            "uniq_customize": {"tag": _tag()},
        }
    }


async def _customize_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    return {"json": {"data": {"theme": "dark", "tag": _tag()}}}


async def _media_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    tag = _tag()
    return {"files": {"file": (f"note-{tag}.txt", f"hello {tag}\n".encode(), "text/plain")}}


async def _project_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    """A project every user of the tenant is a member of, so that each may see it (a
    project's visibility is its members'), the creator among them."""
    members = [row["id"] for row in await list_all(client, headers, "users")]
    return {"json": {"name": f"Project {_tag()}", "description": "A test project.", "member_ids": members}}


async def _project_discussion_request(
    client: httpx.AsyncClient, headers: Headers, context: Context
) -> dict[str, Any]:
    project = await FACTORIES["projects"](client, headers, context)
    return {"json": {"project_id": project, "title": f"Discussion {_tag()}", "body": "What do you think?"}}


async def _forum_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    return {"json": {"name": f"Forum {_tag()}", "description": "A test forum."}}


async def _forum_discussion_request(
    client: httpx.AsyncClient, headers: Headers, context: Context
) -> dict[str, Any]:
    forum = await FACTORIES["forums"](client, headers, context)
    return {"json": {"forum_id": forum, "title": f"Topic {_tag()}", "body": "Hello, forum."}}


# A form with one field of every type, in the form the server stores (so that a created row
# reflects what was sent), and answers to every field.
FORM_FIELDS: list[dict[str, Any]] = [
    {"key": "name", "label": "Name", "type": "text", "required": True, "max": 100},
    {"key": "bio", "label": "About you", "type": "textarea", "required": False},
    {"key": "age", "label": "Age", "type": "number", "required": False, "min": 0, "max": 150},
    {"key": "email", "label": "Email", "type": "email", "required": False},
    {"key": "born", "label": "Born", "type": "date", "required": False},
    {"key": "team", "label": "Team", "type": "select", "required": False, "options": ["red", "blue"]},
    {"key": "tags", "label": "Tags", "type": "multiselect", "required": False, "options": ["a", "@b", "c"]},
    {"key": "agree", "label": "Agree", "type": "checkbox", "required": False},
    {"key": "score", "label": "Score", "type": "rating", "required": False},
    # Tests that vary a JSON change add a key: ``writer`` (tests/test_concurrency.py) or
    # ``tag`` (tests/reliability/test_stateful_isolation.py). Answers to them are valid.
    {"key": "writer", "label": "Writer", "type": "number", "required": False},
    {"key": "tag", "label": "Tag", "type": "text", "required": False},
]
FORM_ANSWERS: dict[str, Any] = {
    "name": "Ada",
    "bio": "Writes code.",
    "age": 36,
    "email": "ada@example.test",
    "born": "1990-12-10",
    "team": "red",
    "tags": ["a", "c"],
    "agree": True,
    "score": 4,
}


async def _form_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    return {"json": {"title": f"Form {_tag()}", "status": "open", "fields": FORM_FIELDS}}


async def _form_response_request(
    client: httpx.AsyncClient, headers: Headers, context: Context
) -> dict[str, Any]:
    form = await FACTORIES["forms"](client, headers, context)
    return {"json": {"form_id": form, "answers": FORM_ANSWERS}}


async def _document_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    media = await FACTORIES["media"](client, headers, context)
    return {
        "json": {"title": f"Document {_tag()}", "body": "# Notes\n\nSome *markdown*.", "media_ids": [media]}
    }


async def _document_comment_request(
    client: httpx.AsyncClient, headers: Headers, context: Context
) -> dict[str, Any]:
    document = await FACTORIES["documents"](client, headers, context)
    return {"json": {"document_id": document, "body": "Looks good."}}


async def _event_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    me = (await client.get("/auth/me", headers=headers)).json()["user"]["id"]
    return {
        "json": {
            "title": f"Event {_tag()}",
            "starts_at": "2026-01-05T08:00:00Z",
            "ends_at": "2026-01-05T09:00:00Z",
            "time_zone": "Europe/Berlin",
            "recurrence": "FREQ=WEEKLY;BYDAY=MO;COUNT=10",
            "attendee_ids": [me],
            "location": "Room 1",
        }
    }


# resource → builder of the keyword arguments of a valid POST (rows it needs first are
# created with the given headers)
CREATE_REQUESTS: dict[str, RequestBuilder] = {
    "users": _user_request,
    "user-groups": _group_request,
    "user-roles": _role_request,
    "user-meta": _meta_request,
    "customize": _customize_request,
    "media": _media_request,
    "projects": _project_request,
    "project-discussions": _project_discussion_request,
    "forums": _forum_request,
    "forum-discussions": _forum_discussion_request,
    "forms": _form_request,
    "form-responses": _form_response_request,
    "documents": _document_request,
    "events": _event_request,
    "document-comments": _document_comment_request,
}

# Fields the server keeps from writes to other resources (a form's count of its responses),
# which a model of each resource's own writes cannot predict.
DERIVED_FIELDS: dict[str, frozenset[str]] = {"forms": frozenset({"response_count"})}


def comparable(resource: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without the fields other resources' writes move."""
    derived = DERIVED_FIELDS.get(resource, frozenset())
    return {name: value for name, value in row.items() if name not in derived}


# Resources listed oldest first by default (API.md says so for each).
OLDEST_FIRST = {"document-comments"}
# resource → its JSON create/update body limit where it is not the default 1 MiB
BODY_LIMITS = {"documents": DOCUMENT_BODY_LIMIT}

# resource → server-set fields besides ``updated_at`` that move on every change
MOVES_ON_CHANGE: dict[str, set[str]] = {"documents": {"version"}}

# resource → a valid partial change of one field
UPDATES: dict[str, dict[str, Any]] = {
    "users": {"name": "Renamed User"},
    "user-groups": {"name": "Renamed Group"},
    "user-roles": {"name": "Renamed Role"},
    "user-meta": {"uniq_customize": {"changed": True}},
    "customize": {"data": {"changed": True}},
    "media": {"name": "renamed.txt"},
    # Not the names: they are unique, and a matrix may change several rows alike.
    "projects": {"description": "Changed description"},
    "project-discussions": {"body": "Edited body"},
    "forums": {"description": "Changed description"},
    "forum-discussions": {"body": "Edited body"},
    "forms": {"title": "Renamed Form"},
    "form-responses": {"answers": {"name": "Grace"}},
    "documents": {"body": "# Edited\n\nA new version."},
    "events": {"location": "Room 2"},
    "document-comments": {"body": "Edited comment"},
}


async def _ticket_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    tag = _tag()
    # No tags: a requester without help-desk:manage may not set them (an agent triages).
    return {"json": {"subject": f"Ticket {tag}", "body": f"Something about {tag}"}}


CREATE_REQUESTS["help-desk"] = _ticket_request
UPDATES["help-desk"] = {"subject": "Renamed ticket"}


async def _invoice_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    tag = _tag()
    return {
        "json": {
            "customer_name": f"Customer {tag}",
            "customer_email": f"billing-{tag}@example.test",
            "currency": "USD",
            "items": [
                {"description": f"Work {tag}", "quantity": "1.5", "unit_price": 1000, "tax_rate": "20"}
            ],
        }
    }


CREATE_REQUESTS["invoices"] = _invoice_request
UPDATES["invoices"] = {"notes": "Changed notes"}


async def _chat_request(client: httpx.AsyncClient, headers: Headers, context: Context) -> dict[str, Any]:
    """A group room of its creator alone: a restricted row, which other callers without
    chats:manage do not see (404), as the matrices expect of a resource with visibility."""
    return {"json": {"kind": "group", "name": f"Room {_tag()}"}}


CREATE_REQUESTS["chats"] = _chat_request
UPDATES["chats"] = {"name": "Renamed room"}


@dataclass(frozen=True)
class ActionCase:
    """How to run ``POST /<resource>/{id}/<action>`` on a fresh row the factory made."""

    # Brings the row to a state the action accepts (as the given headers); returns the
    # request's keyword arguments.
    prepare: Callable[[httpx.AsyncClient, Headers, str], Awaitable[dict[str, Any]]]
    status: int = 200


async def _reply(client: httpx.AsyncClient, headers: Headers, row_id: str) -> dict[str, Any]:
    return {"json": {"body": f"A reply {_tag()}", "visibility": "public"}}


async def _draft(client: httpx.AsyncClient, headers: Headers, row_id: str) -> dict[str, Any]:
    return {}


async def _finalized(client: httpx.AsyncClient, headers: Headers, row_id: str) -> dict[str, Any]:
    response = await client.post(f"/invoices/{row_id}/finalize", headers=headers)
    assert response.status_code == 200, response.text
    return {"json": {}}


async def _chat_message(client: httpx.AsyncClient, headers: Headers, row_id: str) -> dict[str, Any]:
    return {"json": {"body": f"Hello {_tag()}"}}


async def _chat_read(client: httpx.AsyncClient, headers: Headers, row_id: str) -> dict[str, Any]:
    return {"json": {"seq": 0}}


# (resource, action) → its case
ACTIONS: dict[tuple[str, str], ActionCase] = {
    ("help-desk", "replies"): ActionCase(_reply, status=201),
    ("invoices", "finalize"): ActionCase(_draft),
    ("invoices", "pay"): ActionCase(_finalized),
    ("invoices", "void"): ActionCase(_finalized),
    ("invoices", "mark-uncollectible"): ActionCase(_finalized),
    ("chats", "messages"): ActionCase(_chat_message, status=201),
    ("chats", "read"): ActionCase(_chat_read),
}


# (resource, child kind) → a valid change of a child (its PATCH body)
CHILD_UPDATES: dict[tuple[str, str], dict[str, Any]] = {("chats", "messages"): {"body": "Edited"}}


async def action_request(
    endpoint: Endpoint, client: httpx.AsyncClient, setup_headers: Headers, row_id: str
) -> dict[str, Any]:
    """The keyword arguments of a valid action on ``row_id``, made ready for it first."""
    return await ACTIONS[endpoint.action].prepare(client, setup_headers, row_id)


async def child_url(endpoint: Endpoint, client: httpx.AsyncClient, headers: Headers, row_id: str) -> str:
    """A new child of ``row_id`` for a child route, made by its action: the 201's ``Location``."""
    resource, kind = endpoint.action
    kwargs = await ACTIONS[endpoint.action].prepare(client, headers, row_id)
    response = await client.post(f"/{resource}/{row_id}/{kind}", headers=headers, **kwargs)
    assert response.status_code == 201, (str(endpoint), response.text)
    return response.headers["Location"]


def success_status(endpoint: Endpoint) -> int:
    if endpoint.op == "action":
        return ACTIONS[endpoint.action].status
    # Every other operation a matrix knows answers 200.
    return {"create": 201, "delete": 204}.get(endpoint.op, 200)


async def create_request(
    resource: str, client: httpx.AsyncClient, setup_headers: Headers, context: Context | None = None
) -> dict[str, Any]:
    """The keyword arguments of a valid ``POST /<resource>``; rows it needs are made first."""
    return await CREATE_REQUESTS[resource](client, setup_headers, {} if context is None else context)


def _factory(resource: str) -> Callable[[httpx.AsyncClient, Headers, Context], Awaitable[str]]:
    async def create(client: httpx.AsyncClient, headers: Headers, context: Context) -> str:
        """Create a row as ``headers``; records what was sent under ``context[id]``."""
        kwargs = await create_request(resource, client, headers, context)
        response = await client.post(f"/{resource}", headers=headers, **kwargs)
        assert response.status_code == 201, f"creating {resource}: {response.status_code} {response.text}"
        row_id = str(response.json()["id"])
        context[row_id] = kwargs
        return row_id

    return create


# resource → async (client, headers, context) → id of a new row
FACTORIES = {resource: _factory(resource) for resource in CREATE_REQUESTS}


async def create(client: httpx.AsyncClient, headers: Headers, resource: str) -> str:
    return await FACTORIES[resource](client, headers, {})


async def list_all(client: httpx.AsyncClient, headers: Headers, resource: str) -> list[dict[str, Any]]:
    """Every row of a list, page by page."""
    items: list[dict[str, Any]] = []
    while True:
        response = await client.get(
            f"/{resource}", params={"limit": 200, "offset": len(items)}, headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        if not page["items"] or len(items) >= page["total"]:
            return items


# ---------------------------------------------------------------------------------------------
# Request bodies described by the app's OpenAPI document
# ---------------------------------------------------------------------------------------------


def json_body_schema(app: Litestar, endpoint: Endpoint) -> dict[str, Any] | None:
    """The resolved JSON schema of the endpoint's request body, or None if it takes no JSON."""
    document = app.openapi_schema.to_schema()
    operation = (
        document["paths"].get(endpoint.path.replace(ITEM, "{item_id}"), {}).get(endpoint.method.lower())
    )
    content = (operation or {}).get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return _resolve(document, content["application/json"]["schema"])


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = document["components"]["schemas"][name]
    return schema


def accepted_types(document_schema: dict[str, Any]) -> set[str]:
    """The JSON types a property schema accepts (``type`` or the types of its ``oneOf``)."""
    found: set[str] = set()
    for option in [document_schema, *document_schema.get("oneOf", []), *document_schema.get("anyOf", [])]:
        kind = option.get("type")
        found.update([kind] if isinstance(kind, str) else kind or [])
    return found


def wrong_value(property_schema: dict[str, Any]) -> Any:
    """A value of a JSON type the property does not accept."""
    kinds = accepted_types(property_schema)
    if "object" not in kinds:
        return {"not": "this type"}
    return 12345 if not kinds & {"integer", "number"} else "not this type"


# ---------------------------------------------------------------------------------------------
# Tenants and users
# ---------------------------------------------------------------------------------------------


def new_tenant(operator_engine: Engine, prefix: str = "t") -> MadeTenant:
    """A provisioned tenant whose owner password the response scan knows."""
    slug = unique_slug(prefix)
    email = f"owner@{slug}.example"
    password = secret_password("owner")
    tenant = provision_tenant(
        operator_engine, slug, "Test Org", OwnerSpec("Owner", email, "+1 555 0100", password), bcrypt_rounds=4
    )
    return MadeTenant(tenant, email, password)


async def role_id(client: httpx.AsyncClient, owner: Headers, name: str) -> str:
    return await _builtin_id(client, owner, "user-roles", name)


async def everyone_group_id(client: httpx.AsyncClient, owner: Headers) -> str:
    return await _builtin_id(client, owner, "user-groups", "Everyone")


async def _builtin_id(client: httpx.AsyncClient, owner: Headers, resource: str, name: str) -> str:
    ids = [r["id"] for r in await list_all(client, owner, resource) if r["name"] == name]
    assert len(ids) == 1, f"{resource} {name!r}: {ids}"
    return ids[0]


@dataclass(frozen=True)
class TenantUser:
    """A user of a tenant, with their credentials and a logged-in session."""

    id: str
    email: str
    password: str
    headers: Headers


async def add_user(
    client: httpx.AsyncClient, owner: Headers, role: str | None = None, password: str | None = None
) -> TenantUser:
    """A new user created by ``owner``, linked to the built-in ``role`` if given, logged in."""
    body = (await create_request("users", client, owner))["json"]
    if password is not None:
        body["password"] = remember_password(password)
    response = await client.post("/users", json=body, headers=owner)
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    if role is not None:
        link = {
            "owner_id": user_id,
            "user_groups": await everyone_group_id(client, owner),
            "user_roles": await role_id(client, owner, role),
        }
        response = await client.post("/user-meta", json=link, headers=owner)
        assert response.status_code == 201, response.text
    headers = await login(client, owner["Host"], body["email"], body["password"])
    return TenantUser(user_id, body["email"], body["password"], headers)


async def user_with(client: httpx.AsyncClient, owner: Headers, permissions: list[str]) -> TenantUser:
    """A new user holding exactly ``permissions``, through a role of their own."""
    name = f"Role {uuid.uuid4().hex[:10]}"
    role = await client.post("/user-roles", json={"name": name, "permissions": permissions}, headers=owner)
    assert role.status_code == 201, role.text
    return await add_user(client, owner, role=name)


# ---------------------------------------------------------------------------------------------
# Module-scoped fixtures (tenants and the app are reused within a module)
# ---------------------------------------------------------------------------------------------


@asynccontextmanager
async def in_own_task(manager: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit ``manager`` in one task of its own.

    pytest-asyncio sets a shared fixture up and tears it down in different tasks, and the
    app's lifespan (anyio cancel scopes) must be left in the task that entered it.
    """
    entered: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    leave = asyncio.Event()

    async def hold() -> None:
        async with manager as value:
            entered.set_result(value)
            await leave.wait()

    task = asyncio.create_task(hold())
    await asyncio.wait([entered, task], return_when=asyncio.FIRST_COMPLETED)
    if not entered.done():
        await task  # raises what went wrong on the way in
    try:
        yield entered.result()
    finally:
        leave.set()
        await task


@pytest.fixture(scope="module")
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with in_own_task(serve_api(settings)) as served:
        yield served


@pytest.fixture(scope="module")
def tenant_a(operator_engine: Engine) -> MadeTenant:
    return new_tenant(operator_engine, "a")


@pytest.fixture(scope="module")
def tenant_b(operator_engine: Engine) -> MadeTenant:
    return new_tenant(operator_engine, "b")


@pytest.fixture(scope="module")
async def owner_a(api: Api, tenant_a: MadeTenant) -> Headers:
    return await login(api[1], tenant_a.host, tenant_a.owner_email, tenant_a.owner_password)


@pytest.fixture(scope="module")
async def owner_b(api: Api, tenant_b: MadeTenant) -> Headers:
    return await login(api[1], tenant_b.host, tenant_b.owner_email, tenant_b.owner_password)


async def until_a_lock_is_awaited(engine: Engine, seconds: float = 5.0) -> None:
    """Until a transaction in ``engine``'s database waits for a lock (a test holding one
    has paused a request at the point it wanted)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(int(seconds / 0.02)):
        with engine.connect() as conn:
            if conn.scalar(query):
                return
        await asyncio.sleep(0.02)
    raise AssertionError("no transaction waited for a lock")
