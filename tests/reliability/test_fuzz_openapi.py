"""Fuzzing every operation of the app's own OpenAPI document with Schemathesis.

The app runs in-process (Schemathesis' ASGI transport) on the test database. Every call
goes to a tenant host (``<slug>.localhost``) with the owner's bearer token; ``POST
/auth/logout`` gets a fresh token per case, since it revokes the token it is sent with.
Item routes (``/<resource>/{item_id}``) get, besides generated ids, the ids of real rows
made beforehand with ``tests/api.py``'s factories (deletes have rows of their own), so
reads, updates and deletes reach real rows and not only the 404 path.

Checks on every response: no server error, a status code documented for the operation,
the documented content type, a body valid against the documented schema, the documented
response headers, and for every 4xx/5xx an ``application/problem+json`` body with
``type``, ``title``, ``status`` (equal to the response's) and ``detail``; no response
carries a known test password, a bcrypt hash, SQL, a traceback or a schema name.

Schemathesis runs its examples, coverage (boundary values, wrong types, missing and
unexpected parts) and fuzzing phases, positive and negative data. Examples per operation
in the fuzzing phase: ``ATRIUM_FUZZ_EXAMPLES`` (default 25, as in CI); ``ATRIUM_FUZZ_SEED``
replays a run.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from anyio.from_thread import BlockingPortal
from hypothesis import strategies as st
from schemathesis.checks import CheckContext
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi
from sqlalchemy import Engine

from atrium.platform.app import create_app
from atrium.platform.settings import Settings
from atrium.platform.tenancy.admin import set_status
from atrium.platform.tenancy.registry import TenantStatus
from atrium.platform.web.bodies import JSON_BODY_LIMIT, MAX_JSON_DEPTH
from tests.api import (
    _LEAKS,
    BCRYPT_MARKER,
    BODY_LIMITS,
    FACTORIES,
    ITEM,
    KNOWN_PASSWORDS,
    PROBLEM_TYPE,
    new_tenant,
    resources,
    serve_api,
    unserved_app,
)
from tests.conftest import MadeTenant, login_owner

EXAMPLES = int(os.environ.get("ATRIUM_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ["ATRIUM_FUZZ_SEED"]) if os.environ.get("ATRIUM_FUZZ_SEED") else None
ROWS_FOR_DELETES = 3  # real rows per resource that DELETE may hit
ROWS_FOR_THE_REST = 3  # real rows per resource that the other item routes may hit
LOGOUT = ("POST", "/auth/logout")


def _document() -> dict[str, Any]:
    """The OpenAPI document, as ``GET /schema/openapi.json`` serves it."""
    return json.loads(json.dumps(unserved_app().openapi_schema.to_schema()))


# Loaded at collection time so that every operation is a test item of its own. Schemathesis'
# lazy loader (``schemathesis.pytest.from_fixture``) would load the live document instead,
# but it fails under pytest >= 9.2 (it sets ``node._nodeid``, which pytest no longer has),
# so the ``target`` fixture proves that the live app serves exactly this document.
schema = schemathesis.openapi.from_dict(
    _document(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            **({"seed": SEED} if SEED is not None else {}),
        }
    ),
)


@dataclass
class Target:
    """What every case needs: the app, the tenant, the owner's token and the real rows."""

    app: Any
    tenant: MadeTenant
    token: str
    rows: dict[str, list[str]]  # resource → ids; the first ROWS_FOR_DELETES are for DELETE

    @property
    def base_url(self) -> str:
        return f"http://{self.tenant.host}"

    def fresh_token(self) -> str:
        """Another token of the owner, as ``POST /auth/login`` issues them."""
        made = self.tenant.tenant
        return self.app.state.token_auth.issue(made.owner_id, made.id)


async def _prepare(settings: Settings, tenant: MadeTenant) -> tuple[str, dict[str, list[str]]]:
    """Log the owner in and make the real rows, through an app of their own (closed before fuzzing)."""
    count = ROWS_FOR_DELETES + ROWS_FOR_THE_REST
    async with serve_api(settings) as (app, client):
        owner = await login_owner(client, tenant)
        rows = {
            resource: [await FACTORIES[resource](client, owner, {}) for _ in range(count)]
            for resource in resources(app)
            if resource in FACTORIES
        }
    return owner["Authorization"].removeprefix("Bearer "), rows


@pytest.fixture(scope="module")
def target(settings: Settings, operator_engine: Engine, portal: BlockingPortal) -> Iterator[Target]:
    tenant = new_tenant(operator_engine, "fz")
    token, rows = portal.call(_prepare, settings, tenant)
    app = create_app(settings)
    try:
        with asgi.get_client(app) as client:  # starts the app's lifespan on Schemathesis' loop
            served = client.get("/schema/openapi.json", headers={"Host": tenant.host})
        assert served.status_code == 200, served.text
        assert served.json() == _document(), "the app serves another OpenAPI document than the one fuzzed"
        yield Target(app, tenant, token, rows)
    finally:
        # Schemathesis keeps a started lifespan until the interpreter exits, which would be
        # after the test database is dropped: end it here.
        asgi.shutdown_lifespans()


def problem_documents(ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every error is an RFC 9457 problem document; no response shows a secret or internals."""
    body = response.content or b""
    for password in KNOWN_PASSWORDS:
        assert password.encode() not in body, "a test password is in the response"
    assert BCRYPT_MARKER.encode() not in body, "a bcrypt hash is in the response"
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith(PROBLEM_TYPE), (
        f"error {response.status_code} is not {PROBLEM_TYPE} but {content_type!r}: {body[:300]!r}"
    )
    document = json.loads(body)
    assert isinstance(document, dict), f"the problem is not an object: {body[:300]!r}"
    missing = {"type", "title", "status", "detail"} - document.keys()
    assert not missing, f"problem without {sorted(missing)}: {body[:300]!r}"
    assert document["status"] == response.status_code, f"the problem's status differs: {body[:300]!r}"
    for leak in _LEAKS.finditer(body.decode(errors="replace")):
        # A field name the client sent may come back in ``errors``: only what the server adds counts.
        assert leak.group(0) in _sent(response), f"the error shows {leak.group(0)!r}: {body[:300]!r}"


def _sent(response: schemathesis.Response) -> str:
    """The request's URL and body as text (what an error may quote back)."""
    request = response.request
    body = request.body or b""
    body = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    return f"{request.url} {body} {json.dumps(body)}"


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    problem_documents,
]

# A download answers with the file's own stored type (an invoice's PDF with
# application/pdf); the document calls it bytes (application/octet-stream, format binary)
# so that generated clients return a file.
DOWNLOAD_CHECKS = [c for c in CHECKS if c is not schemathesis.checks.content_type_conformance]
DOWNLOADS = {("GET", "/media/{item_id}/content"), ("GET", "/invoices/{item_id}/pdf")}


def _resource_of_item_path(path: str) -> str | None:
    """``users`` for ``/users/{item_id}`` and ``/users/{item_id}/...``; None for other paths."""
    resource, _, rest = path.strip("/").partition("/")
    return resource if rest.split("/")[0] == ITEM.replace(":uuid", "") else None


def _real_row(target: Target, method: str, resource: str, generated: Any) -> str | None:
    """A real row for most generated UUIDs, chosen by the UUID itself so that replays match."""
    try:
        uuid.UUID(str(generated))
    except ValueError:
        return None  # a malformed id stays as generated
    rows = target.rows.get(resource, [])
    rows = rows[:ROWS_FOR_DELETES] if method == "DELETE" else rows[ROWS_FOR_DELETES:]
    pick = zlib.crc32(str(generated).encode()) % (len(rows) + 1)
    return rows[pick] if pick < len(rows) else None


@schema.parametrize()
@hypothesis.settings(deadline=None, database=None, print_blob=True)
def test_every_operation_conforms_to_its_documentation(case: schemathesis.Case, target: Target) -> None:
    method, path = case.operation.method.upper(), case.operation.path
    token = target.fresh_token() if (method, path) == LOGOUT else target.token
    resource = _resource_of_item_path(path)
    if resource is not None and "item_id" in case.path_parameters:
        row = _real_row(target, method, resource, case.path_parameters["item_id"])
        if row is not None:
            case.path_parameters["item_id"] = row
    case.call_and_validate(
        base_url=target.base_url,
        headers={"Authorization": f"Bearer {token}"},
        checks=DOWNLOAD_CHECKS if (method, path) in DOWNLOADS else CHECKS,
        app=target.app,
        timeout=30,
    )


# --- depth and size of every JSON field ----------------------------------------------------------


def _json_fields() -> list[tuple[str, str, str]]:
    """(method, path, field) for every top-level field of every JSON request body."""
    document = _document()
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            body = content["application/json"]["schema"]
            while "$ref" in body:
                body = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
            for field in sorted(body.get("properties", {})) or ["data"]:
                found.append((method.upper(), path, field))
    return found


def _nested(depth: int, shape: str, leaf: str) -> str:
    """``leaf`` inside ``depth`` arrays or objects, as JSON text (no recursion builds it)."""
    opening, closing = [], []
    for level in range(depth):
        as_array = shape == "array" or (shape == "mixed" and level % 2)
        opening.append("[" if as_array else '{"k":')
        closing.append("]" if as_array else "}")
    return "".join(opening) + leaf + "".join(reversed(closing))


_LEAVES = st.one_of(
    st.sampled_from(["null", "0", "-1e308", "true", '""', '"\\u0000"', "[]", "{}"]),
    st.text(max_size=30).map(json.dumps),
    # Long strings and long arrays: up to just over the body limit.
    st.integers(0, 70_000).map(lambda n: json.dumps("x" * n)),
    st.sampled_from([JSON_BODY_LIMIT - 64, JSON_BODY_LIMIT + 1]).map(lambda n: json.dumps("x" * n)),
    st.integers(0, 50_000).map(lambda n: "[" + ",".join(["0"] * n) + "]"),
)
_DEPTHS = st.one_of(
    st.integers(0, 8),
    st.sampled_from([MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1]),
    st.integers(MAX_JSON_DEPTH, 5_000),
)


@pytest.mark.parametrize(("method", "path", "field"), _json_fields(), ids=lambda v: str(v))
@hypothesis.settings(deadline=None, database=None, max_examples=EXAMPLES, print_blob=True)
@hypothesis.given(depth=_DEPTHS, shape=st.sampled_from(["array", "object", "mixed"]), leaf=_LEAVES)
def test_every_json_field_survives_any_depth_and_size(
    target: Target, method: str, path: str, field: str, depth: int, shape: str, leaf: str
) -> None:
    """Each field nested up to thousands of levels, or grown past the body limit: never a
    5xx; deeper than MAX_JSON_DEPTH is a 400 and larger than the limit a 413 (problems)."""
    url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
    body = ("{" + json.dumps(field) + ":" + _nested(depth, shape, leaf) + "}").encode()
    token = target.fresh_token() if (method, path) == LOGOUT else target.token
    with asgi.get_client(target.app) as client:
        response = client.request(
            method,
            target.base_url + url,
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
    what = f"{method} {url} with {field!r} {depth} deep ({shape}), {len(body)} bytes"
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(PROBLEM_TYPE), what
    # A resource with a larger limit (documents' bodies) reads such a body, and judges it.
    if len(body) > BODY_LIMITS.get(path.split("/")[1], JSON_BODY_LIMIT):
        assert response.status_code == 413, f"{what}: {response.status_code} {response.text[:300]}"
    elif depth + 1 > MAX_JSON_DEPTH:
        assert response.status_code == 400, f"{what}: {response.status_code} {response.text[:300]}"


def test_the_document_says_that_unknown_fields_are_refused() -> None:
    """API.md §5: unknown fields in a body → 422. The request schemas must say so
    (``additionalProperties: false``), or clients and generators take extra fields for valid."""
    document = _document()
    components = document["components"]["schemas"]
    permissive = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            if body is None:
                continue
            name = body.get("$ref", "").rsplit("/", 1)[-1]
            resolved = components.get(name, body)
            if resolved.get("additionalProperties") is not False:
                permissive.append(f"{method.upper()} {path} ({name or 'inline schema'})")
    assert not permissive, "request bodies documented as accepting unknown fields: " + ", ".join(permissive)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _example_url(path: str) -> str:
    # Every id (a row's, or a row's child's: a room's message) is a UUID; other path
    # parameters (a version number, a feed's file name) get a plain value.
    return re.sub(r"\{([a-z_]+)\}", lambda m: str(uuid.uuid4()) if m.group(1).endswith("_id") else "1", path)


def test_public_operations_are_documented_as_public(target: Target) -> None:
    """An operation that answers without a token must not inherit the document's global
    ``BearerToken`` requirement (it needs ``security: []``, or ``[{}]`` for optional auth)."""
    document = _document()
    wrong = []
    with asgi.get_client(target.app) as client:
        for method, path, operation in _operations(document):
            response = client.request(method, _example_url(path), headers={"Host": target.tenant.host})
            if response.status_code == 401:
                continue  # needs a token, as documented globally
            security = operation.get("security", document.get("security", []))
            if security and {} not in security:
                wrong.append(f"{method} {path} (answered {response.status_code} without a token)")
    assert not wrong, "operations documented as needing a bearer token that answer without one: " + (
        ", ".join(wrong)
    )


def test_health_documents_the_database_outage() -> None:
    """API.md §1: ``GET /health`` answers 503 when the database does not."""
    responses = _document()["paths"]["/health"]["get"]["responses"]
    assert "503" in responses, f"GET /health documents only {sorted(responses)}"


def test_tenant_level_errors_are_documented(target: Target, operator_engine: Engine) -> None:
    """Every tenant operation can answer the tenant middleware's problems (API.md §1): 404
    ``tenant-not-found`` on an unknown host, 403 ``tenant-suspended``, 400 for an invalid Host.
    Each must be among the operation's documented responses."""
    suspended = new_tenant(operator_engine, "fzs")
    set_status(operator_engine, suspended.slug, TenantStatus.SUSPENDED)
    hosts = {
        "unknown tenant": f"nobody-{uuid.uuid4().hex[:8]}.localhost",
        "suspended tenant": suspended.host,
        "invalid host": "bad_host..localhost",
    }
    undocumented: dict[str, list[str]] = {}
    with asgi.get_client(target.app) as client:
        for method, path, operation in _operations(_document()):
            documented = set(operation.get("responses", {}))
            for reason, host in hosts.items():
                response = client.request(
                    method,
                    _example_url(path),
                    headers={"Host": host, "Authorization": f"Bearer {target.token}"},
                )
                if str(response.status_code) not in documented:
                    undocumented.setdefault(f"{method} {path}", []).append(
                        f"{response.status_code} ({reason})"
                    )
    assert not undocumented, "undocumented statuses: " + "; ".join(
        f"{operation} answers {', '.join(statuses)}" for operation, statuses in undocumented.items()
    )


def _validate(status: int, content_type: str, body: Any) -> None:
    """Run the checks on a made-up answer to ``GET /users``."""
    response = httpx.Response(
        status,
        headers={"content-type": content_type},
        content=body.encode() if isinstance(body, str) else json.dumps(body).encode(),
        request=httpx.Request("GET", "http://t.localhost/users"),
    )
    response.elapsed = datetime.timedelta(0)  # set by a transport; the checks read it
    schema["/users"]["GET"].Case().validate_response(response, checks=CHECKS)


PROBLEM = {"type": "x", "title": "x", "detail": "x"}


@pytest.mark.parametrize(
    ("status", "content_type", "body", "caught_by"),
    [
        (500, PROBLEM_TYPE, {**PROBLEM, "status": 500}, "ServerError"),
        (418, PROBLEM_TYPE, {**PROBLEM, "status": 418}, "UndefinedStatusCode"),
        (200, "text/plain", "hello", "UndefinedContentType"),
        (
            200,
            "application/json",
            {"items": "not a list", "total": 0, "limit": 1, "offset": 0},
            "JsonSchemaError",
        ),
        (403, "application/json", {**PROBLEM, "status": 403}, "problem_documents"),
        (403, PROBLEM_TYPE, {"type": "x", "title": "x", "status": 403}, "problem_documents"),
        (401, PROBLEM_TYPE, {**PROBLEM, "status": 401, "detail": "SELECT 1"}, "problem_documents"),
        (422, PROBLEM_TYPE, {**PROBLEM, "status": 400}, "problem_documents"),
    ],
)
def test_the_checks_catch_a_wrong_response(status: int, content_type: str, body: Any, caught_by: str) -> None:
    """The checks are not vacuous: each wrong answer fails the check named in ``caught_by``."""
    with pytest.raises(FailureGroup) as caught:
        _validate(status, content_type, body)
    found = [f"{type(e).__name__}: {e}" for e in caught.value.exceptions]
    assert any(caught_by in failure for failure in found), found


def test_the_checks_pass_a_right_response() -> None:
    _validate(200, "application/json", {"items": [], "total": 0, "limit": 50, "offset": 0})
    _validate(401, PROBLEM_TYPE, {**PROBLEM, "status": 401})
