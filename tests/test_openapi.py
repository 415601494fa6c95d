"""The OpenAPI document validates, reads cleanly, and generates a client that works.

API.md §5: valid OpenAPI 3.1, unique snake_case operation ids, declared tags, the bearer
scheme where a token is needed and ``security: []`` where none is, every response header
with its schema, binary downloads as binary. The generated-client test runs
openapi-python-client on the served document and then uses the client against the app.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from atrium.platform.settings import Settings
from tests.api import endpoints_of, resources, unserved_app
from tests.conftest import MadeTenant, serve

SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
# The secret calendar feed is public: its address is the credential (API.md §7).
PUBLIC = {"health", "login", "get_public_form", "answer_public_form", "get_events_feed"}
METHODS = {"get", "put", "post", "delete", "patch"}
OUTPUT = ("--meta", "none", "--output-path", "atrium_client")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return unserved_app().openapi_schema.to_schema()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert errors == []
    assert document["openapi"].startswith("3.1")


def test_operation_ids_are_unique_snake_case_names(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if not SNAKE.match(i)] == []
    assert {"login", "logout", "get_me", "health", "list_users", "get_user", "create_user"} <= set(ids)
    assert {"update_user_group", "delete_user_role", "get_user_meta", "get_media_content"} <= set(ids)


def test_public_operations_need_no_token_and_the_others_the_bearer_scheme(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        expected = [] if operation["operationId"] in PUBLIC else [{"BearerToken": []}]
        assert operation["security"] == expected, (method, path)
    scheme = document["components"]["securitySchemes"]["BearerToken"]
    assert scheme["type"] == "http" and scheme["scheme"].lower() == "bearer"
    assert "name" not in scheme


def test_every_response_header_has_a_schema_and_the_usual_ones_are_there(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            for name, header in headers.items():
                assert "schema" in header, (method, path, status, name)
            if status == "201":
                assert "Location" in headers, (method, path)
            if status in {"429", "503"}:
                assert headers["Retry-After"]["schema"]["type"] == "integer", (method, path, status)


def test_etag_and_if_match_are_documented_on_every_single_row_operation(document: dict[str, Any]) -> None:
    """From the route table, so that a new resource is held to it too: the ETag header on the
    success response of every create, get and update (tests/test_concurrency.py checks that
    each is sent), and If-Match with its 412 on every update and delete."""
    app = unserved_app()
    single_row = endpoints_of(app, "create", "get", "update", "delete")
    assert {e.resource for e in single_row} == set(resources(app))
    for endpoint in single_row:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", endpoint.path)
        operation = document["paths"][path][endpoint.method.lower()]
        success = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert success, endpoint
        if endpoint.op in {"create", "get", "update"}:
            for status, response in success.items():
                header = response.get("headers", {}).get("ETag")
                assert header is not None, f"{endpoint} {status}: no ETag documented"
                assert header["schema"] == {"type": "string"}, endpoint
        if endpoint.op in {"update", "delete"}:
            headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
            assert [p["name"] for p in headers] == ["If-Match"], endpoint
            assert headers[0]["required"] is False and headers[0]["schema"] == {"type": "string"}
            assert "412" in operation["responses"], f"{endpoint}: no 412 documented"
            assert operation["responses"]["412"]["content"].keys() == {"application/problem+json"}
        else:
            assert "412" not in operation["responses"], endpoint


def test_no_single_member_one_of_and_binary_downloads(document: dict[str, Any]) -> None:
    assert [n for n in walk(document) if len(n.get("oneOf", [None, None])) == 1] == []
    download = document["paths"]["/media/{item_id}/content"]["get"]["responses"]["200"]["content"]
    assert download == {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def test_one_of_never_lists_a_value_twice_and_optional_bodies_are_plain(document: dict[str, Any]) -> None:
    # ``int | float`` was integer and number in one oneOf: every integer matched both, and a
    # form's bound of 0 failed its own schema (found by a deep fuzz run).
    both = [n for n in walk(document) if {"integer", "number"} <= {m.get("type") for m in n.get("oneOf", [])}]
    assert both == []
    # ``pay``'s body may be left out: the schema itself, not a oneOf with null.
    body = document["paths"]["/invoices/{item_id}/pay"]["post"]["requestBody"]
    assert body == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Payment"}}},
        "required": False,
    }


def test_query_parameters_a_route_cannot_do_without_are_required(document: dict[str, Any]) -> None:
    """The occurrences' window: a generated client must not offer to leave it out."""
    parameters = {p["name"]: p for p in document["paths"]["/events/occurrences"]["get"]["parameters"]}
    for name in ("from", "to"):
        assert parameters[name]["required"] is True, parameters[name]
        assert parameters[name]["schema"]["type"] == "string", parameters[name]
        assert parameters[name]["schema"]["format"] == "date-time", parameters[name]


def test_form_definitions_are_typed_for_clients(document: dict[str, Any]) -> None:
    """Checked by hand (every bad definition named at once), documented as what they are."""
    schemas = document["components"]["schemas"]
    for name in ("FormCreate", "FormUpdate"):
        fields = schemas[name]["properties"]["fields"]
        assert fields["items"] == {"$ref": "#/components/schemas/FormField"}, fields
        assert (fields["minItems"], fields["maxItems"]) == (1, 100), fields


def test_headers_and_problem_fields_are_documented_where_sent(document: dict[str, Any]) -> None:
    paths = document["paths"]
    found_again = paths["/chats"]["post"]["responses"]["200"]
    assert "Location" in found_again["headers"], found_again
    public = paths["/public/forms/{item_id}/responses"]["post"]["responses"]
    assert "Retry-After" not in (public["201"].get("headers") or {}), public["201"]
    assert "Retry-After" in public["429"]["headers"], public["429"]
    assert "state" in document["components"]["schemas"]["Problem"]["properties"]


def test_tags_are_declared_with_descriptions(document: dict[str, Any]) -> None:
    used = {tag for _, _, operation in operations(document) for tag in operation.get("tags", [])}
    declared = {tag["name"]: tag.get("description") for tag in document["tags"]}
    assert set(declared) == used
    assert all(declared.values()), declared


def test_the_servers_entry_takes_the_tenant_slug(document: dict[str, Any]) -> None:
    (server,) = document["servers"]
    assert server["url"] == "http://{tenant}.localhost:8000"
    assert server["variables"]["tenant"]["default"]
    assert "<slug>.<base domain>" in document["info"]["description"]


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]) -> Iterator[Any]:
    """The client openapi-python-client makes from the document, imported; no warnings."""
    where = tmp_path_factory.mktemp("client")
    (where / "openapi.json").write_text(json.dumps(document))
    # The generator reads bodies it knows (JSON, octet-stream); a PDF is bytes like a download.
    (where / "config.yaml").write_text(
        "post_hooks: []\ncontent_type_overrides:\n  application/pdf: application/octet-stream\n"
    )
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [str(generator), "generate", "--path", "openapi.json", "--config", "config.yaml", *OUTPUT],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    said = (result.stdout + result.stderr).strip()
    assert said == "Generating atrium_client", said  # anything more is a warning
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module("atrium_client")
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n == "atrium_client" or n.startswith("atrium_client.")]:
            del sys.modules[name]


async def test_the_generated_client_logs_in_uploads_and_downloads(
    generated_client: Any, settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    login = importlib.import_module("atrium_client.api.auth.login")
    get_user = importlib.import_module("atrium_client.api.users.get_user")
    create_media = importlib.import_module("atrium_client.api.media.create_media")
    get_media_content = importlib.import_module("atrium_client.api.media.get_media_content")
    models = importlib.import_module("atrium_client.models")
    types = importlib.import_module("atrium_client.types")
    async with serve(settings) as (app, _):
        transport = httpx.ASGITransport(app=app)
        base = f"http://{made.host}"
        anonymous = generated_client.Client(base_url=base)
        anonymous.set_async_httpx_client(httpx.AsyncClient(transport=transport, base_url=base))
        body = models.LoginRequest(email=made.owner_email, password=made.owner_password)
        session = await login.asyncio(client=anonymous, body=body)
        assert isinstance(session, models.LoginResponse), session

        client = generated_client.AuthenticatedClient(base_url=base, token=session.access_token)
        client.set_async_httpx_client(
            httpx.AsyncClient(
                transport=transport,
                base_url=base,
                headers={"Authorization": f"Bearer {session.access_token}"},
            )
        )
        me = await get_user.asyncio(client=client, item_id=session.user.id)
        assert me.email == made.owner_email

        upload = models.MediaUpload(
            file=types.File(
                payload=io.BytesIO(b"\x00\x01 bytes"), file_name="b.bin", mime_type="application/octet-stream"
            )
        )
        created = await create_media.asyncio(client=client, body=upload)
        assert isinstance(created, models.MediaRead), created
        downloaded = await get_media_content.asyncio(client=client, item_id=created.id)
        assert downloaded.payload.read() == b"\x00\x01 bytes"


def test_an_anonymous_post_documents_whether_its_idempotency_key_is_kept(document: dict[str, Any]) -> None:
    """Keys are kept per user, and per client address on a public form's answers: a login
    promises no replay, every other POST does."""
    for path, method, operation in operations(document):
        if method != "post":
            continue
        (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        created = operation["responses"].get("201", {})
        replayed = "Idempotent-Replayed" in created.get("headers", {})
        if operation["operationId"] == "answer_public_form":
            assert "from the same client address" in key["description"] and replayed, (method, path)
        elif operation["security"] == []:
            assert "not remembered" in key["description"] and not replayed, (method, path)
        else:
            assert "answers the first successful answer again" in key["description"], (method, path)
            assert replayed or "201" not in operation["responses"], (method, path)


def test_every_answer_a_route_can_give_is_documented(document: dict[str, Any]) -> None:
    """A query parameter a route does not read is 422 anywhere but /health (query.py); a
    direct room found again is 200; a created message or reply carries its ETag."""
    by_id = {operation["operationId"]: operation for _path, _method, operation in operations(document)}
    for operation_id, operation in by_id.items():
        if operation_id != "health":
            assert "422" in operation["responses"], operation_id
    assert "200" in by_id["create_chat"]["responses"] and "201" in by_id["create_chat"]["responses"]
    for operation_id in ("create_chat_message", "create_help_desk_reply"):
        assert "ETag" in by_id[operation_id]["responses"]["201"]["headers"], operation_id
    assert "application/pdf" in by_id["get_invoice_pdf"]["responses"]["200"]["content"]
