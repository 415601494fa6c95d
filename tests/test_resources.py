"""The resource conventions (API.md §5) on every resource, and what bad input gets back."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar

from atrium.platform.web.bodies import MAX_JSON_DEPTH
from tests.api import (
    BODY_LIMITS,
    ITEM_EXTRAS,
    MOVES_ON_CHANGE,
    OLDEST_FIRST,
    UPDATES,
    Api,
    Headers,
    accepted_types,
    add_user,
    assert_problem,
    create,
    create_request,
    endpoints_of,
    error_fields,
    json_body_schema,
    list_all,
    route_resources,
    tenant_endpoints,
    wrong_value,
)
from tests.conftest import MadeTenant

pytest_plugins = ["tests.api"]

RESOURCES = route_resources()
SERVER_FIELDS = {"id", "created_at", "updated_at"}
PAGE_KEYS = {"items", "total", "limit", "offset"}
MiB = 1024 * 1024


def instant(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value)
    assert parsed.utcoffset() == datetime.timedelta(0), f"not UTC: {value}"
    return parsed


def assert_reflects(row: dict[str, Any], sent: dict[str, Any]) -> None:
    """The row shows what was sent (passwords excepted: they are never shown)."""
    if "files" in sent:
        name, content, media_type = sent["files"]["file"]
        assert (row["name"], row["type"], row["size"]) == (name, media_type, len(content)), row
        return
    for key, value in sent["json"].items():
        if key != "password":
            assert row[key] == value, (key, row)


def endpoint_ops(app: Litestar, resource: str) -> set[str]:
    """The resource's operations; ``content`` only for a file's bytes (``/{id}/content``),
    not for other reads below a row (a ticket's replies)."""
    return {
        e.op
        for e in tenant_endpoints(app)
        if e.resource == resource and (e.op != "content" or e.path.endswith("/content"))
    }


# --- create, read, update, list, delete ---------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
async def test_lifecycle(api: Api, owner_a: Headers, resource: str) -> None:
    app, client = api
    ops = endpoint_ops(app, resource)
    sent = await create_request(resource, client, owner_a)
    created = await client.post(f"/{resource}", headers=owner_a, **sent)
    assert created.status_code == 201, created.text
    row = created.json()
    uuid.UUID(row["id"])
    assert row.keys() >= SERVER_FIELDS and "password" not in row
    assert instant(row["created_at"]) <= instant(row["updated_at"])
    assert_reflects(row, sent)
    location = created.headers["location"]
    assert created.url.join(location).path == f"/{resource}/{row['id']}", location

    fetched = await client.get(created.url.join(location).path, headers=owner_a)
    assert fetched.status_code == 200 and fetched.json() == row
    tag = created.headers["etag"]
    assert fetched.headers["etag"] == tag, "the ETag of an unchanged row moved"

    if "content" in ops:
        content = await client.get(f"/{resource}/{row['id']}/content", headers=owner_a)
        _, data, media_type = sent["files"]["file"]
        assert content.status_code == 200 and content.content == data
        assert content.headers["content-type"].split(";")[0] == media_type

    if "update" in ops:
        change = UPDATES[resource]
        patched = await client.patch(f"/{resource}/{row['id']}", json=change, headers=owner_a)
        assert patched.status_code == 200, patched.text
        updated = patched.json()
        assert {k: updated[k] for k in change} == change
        unchanged = set(row) - set(change) - {"updated_at"} - MOVES_ON_CHANGE.get(resource, set())
        assert {k: updated[k] for k in unchanged} == {k: row[k] for k in unchanged}
        assert instant(updated["updated_at"]) > instant(row["updated_at"])
        assert patched.headers["etag"] != tag, "a change kept the ETag"
        again = await client.get(f"/{resource}/{row['id']}", headers=owner_a)
        assert again.json() == updated and again.headers["etag"] == patched.headers["etag"]

    newer = await create(client, owner_a, resource)
    listed = await client.get(f"/{resource}", headers=owner_a)
    assert listed.status_code == 200
    page = listed.json()
    assert set(page) == PAGE_KEYS and (page["limit"], page["offset"]) == (50, 0)
    ids = [item["id"] for item in page["items"]]
    stamps = [instant(item["created_at"]) for item in page["items"]]
    if resource in OLDEST_FIRST:
        assert ids.index(newer) > ids.index(row["id"]), "oldest first"
        assert stamps == sorted(stamps)
    else:
        assert ids.index(newer) < ids.index(row["id"]), "newest first"
        assert stamps == sorted(stamps, reverse=True)
    assert page["total"] == len(await list_all(client, owner_a, resource))

    deleted = await client.delete(f"/{resource}/{row['id']}", headers=owner_a)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(await client.get(f"/{resource}/{row['id']}", headers=owner_a), 404)
    assert_problem(await client.delete(f"/{resource}/{row['id']}", headers=owner_a), 404)
    if "update" in ops:
        gone = await client.patch(f"/{resource}/{row['id']}", json=UPDATES[resource], headers=owner_a)
        assert_problem(gone, 404)
    if "content" in ops:
        assert_problem(await client.get(f"/{resource}/{row['id']}/content", headers=owner_a), 404)
    assert row["id"] not in {item["id"] for item in await list_all(client, owner_a, resource)}


@pytest.mark.parametrize("resource", RESOURCES)
async def test_unknown_ids_are_not_found(api: Api, owner_a: Headers, resource: str) -> None:
    app, client = api
    for endpoint in endpoints_of(app, "get", "update", "delete", "export", *ITEM_EXTRAS):
        if endpoint.resource == resource:
            kwargs = {"json": UPDATES[resource]} if endpoint.op == "update" else {}
            response = await client.request(
                endpoint.method, endpoint.url(str(uuid.uuid4())), headers=owner_a, **kwargs
            )
            assert_problem(response, 404)
    not_a_uuid = await client.get(f"/{resource}/not-a-uuid", headers=owner_a)
    assert not_a_uuid.status_code in {400, 404, 422}, not_a_uuid.text


async def test_customize_belongs_to_the_current_tenant(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    created = await client.post("/customize", json={"data": {"a": 1}}, headers=owner_a)
    assert created.status_code == 201 and created.json()["tenant_id"] == str(tenant_a.tenant.id)
    forged = await client.post(
        "/customize", json={"data": {}, "tenant_id": str(uuid.uuid4())}, headers=owner_a
    )
    assert "tenant_id" in error_fields(assert_problem(forged, 422))


# --- pagination ---------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
async def test_pagination(api: Api, owner_a: Headers, resource: str) -> None:
    _, client = api
    for _ in range(3):
        await create(client, owner_a, resource)
    everything = await list_all(client, owner_a, resource)
    assert len(everything) >= 3

    default = (await client.get(f"/{resource}", headers=owner_a)).json()
    assert (default["limit"], default["offset"]) == (50, 0)
    assert default["items"] == everything[:50]

    pages = []
    for offset in range(len(everything)):
        page = (
            await client.get(f"/{resource}", params={"limit": 1, "offset": offset}, headers=owner_a)
        ).json()
        assert (page["limit"], page["offset"], page["total"]) == (1, offset, len(everything))
        pages.extend(page["items"])
    assert pages == everything

    widest = await client.get(f"/{resource}", params={"limit": 200}, headers=owner_a)
    assert widest.status_code == 200 and widest.json()["limit"] == 200


@pytest.mark.parametrize("resource", RESOURCES)
async def test_total_counts_every_row_even_past_the_last_page(
    api: Api, owner_a: Headers, resource: str
) -> None:
    _, client = api
    await create(client, owner_a, resource)
    total = len(await list_all(client, owner_a, resource))
    for offset in (total - 1, total, total + 10):
        page = (await client.get(f"/{resource}", params={"offset": offset}, headers=owner_a)).json()
        assert (len(page["items"]), page["total"]) == (1 if offset == total - 1 else 0, total), offset


@pytest.mark.parametrize("resource", RESOURCES)
async def test_bad_pagination_parameters(api: Api, owner_a: Headers, resource: str) -> None:
    _, client = api
    bad = [
        {"limit": 0},
        {"limit": 201},
        {"limit": -1},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"offset": -1},
        {"offset": "abc"},
        {"limit": 10**30},
    ]
    for params in bad:
        response = await client.get(f"/{resource}", params=params, headers=owner_a)
        assert response.status_code in {400, 422}, (params, response.status_code, response.text)
        assert_problem(response, response.status_code)


@pytest.mark.parametrize("resource", RESOURCES)
async def test_huge_offsets_are_an_empty_page_or_refused(api: Api, owner_a: Headers, resource: str) -> None:
    """Past PostgreSQL's bigint (2**63) an offset cannot reach the database; never a 500."""
    _, client = api
    for offset in (2**63 - 1, 2**63, 10**30):
        response = await client.get(f"/{resource}", params={"offset": offset}, headers=owner_a)
        if response.status_code == 200:
            assert response.json()["items"] == [], offset
        else:
            assert_problem(response, 400 if response.status_code == 400 else 422)


# --- bad input ----------------------------------------------------------------------------------


def invalid_values(property_schema: dict[str, Any]) -> list[Any]:
    """Values the property's schema refuses: a wrong type, null if not nullable, too long."""
    values = [wrong_value(property_schema)]
    if "null" not in accepted_types(property_schema):
        values.append(None)
    longest = property_schema.get("maxLength") or next(
        (o["maxLength"] for o in property_schema.get("oneOf", []) if "maxLength" in o), None
    )
    if longest is not None:
        values.append("x" * (int(longest) + 1))
    return values


def json_writes(app: Litestar, resource: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, body schema) of the resource's JSON POST and PATCH routes."""
    found = []
    for endpoint in endpoints_of(app, "create", "update"):
        schema = json_body_schema(app, endpoint) if endpoint.resource == resource else None
        if schema is not None:
            found.append((endpoint.method, endpoint.path, schema))
    return found


async def target_url(client: httpx.AsyncClient, owner: Headers, resource: str, path: str) -> str:
    return path.replace("{item_id:uuid}", await create(client, owner, resource)) if "{" in path else path


@pytest.mark.parametrize("resource", RESOURCES)
async def test_bad_json_bodies(api: Api, owner_a: Headers, resource: str) -> None:
    app, client = api
    writes = json_writes(app, resource)
    for method, path, schema in writes:
        url = await target_url(client, owner_a, resource, path)
        valid = (
            (await create_request(resource, client, owner_a))["json"]
            if method == "POST"
            else UPDATES[resource]
        )
        raw = {**owner_a, "content-type": "application/json"}

        for broken in (b'{"name": ', b"{'name': 'x'}", b"not json", b'{"a": 1}}'):
            assert_problem(await client.request(method, url, content=broken, headers=raw), 400)

        unknown = await client.request(method, url, json={**valid, "no_such_field": 1}, headers=owner_a)
        assert "no_such_field" in error_fields(assert_problem(unknown, 422))
        for server_set in sorted(SERVER_FIELDS):
            forged = await client.request(method, url, json={**valid, server_set: "x"}, headers=owner_a)
            assert server_set in error_fields(assert_problem(forged, 422))

        for field, property_schema in schema.get("properties", {}).items():
            for value in invalid_values(property_schema):
                wrong = await client.request(method, url, json={**valid, field: value}, headers=owner_a)
                assert field in error_fields(assert_problem(wrong, 422)), (method, path, field, value)

        for field in schema.get("required", []):
            partial = {k: v for k, v in valid.items() if k != field}
            missing = await client.request(method, url, json=partial, headers=owner_a)
            assert field in error_fields(assert_problem(missing, 422)), (method, path, field)

        # Every bad field in one answer, not only the first msgspec meets.
        if required := set(schema.get("required", [])):
            nothing = await client.request(method, url, json={"no_such_field": 1}, headers=owner_a)
            named = error_fields(assert_problem(nothing, 422))
            # Besides: fields a body rule needs when others are left out (a topic's title).
            assert (
                required | {"no_such_field"}
                <= named
                <= required | {"no_such_field"} | set(schema["properties"])
            ), path
        all_wrong = {
            field: values[0]
            for field, property_schema in schema.get("properties", {}).items()
            if (values := invalid_values(property_schema))
        }
        if all_wrong:
            every = await client.request(method, url, json={**valid, **all_wrong}, headers=owner_a)
            assert set(all_wrong) <= error_fields(assert_problem(every, 422)), (method, path, all_wrong)

        for body in (b"", b"[]", json.dumps([valid]).encode(), b'"a string"', b"null", b"3"):
            wrong_shape = await client.request(method, url, content=body, headers=raw)
            assert_problem(wrong_shape, 400)

        # Only JSON is read as JSON; a body that declares no type is read as JSON too.
        for declared in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            typed = await client.request(
                method, url, json=valid, headers={**owner_a, "content-type": declared}
            )
            assert_problem(typed, 415)
        # (Each resource's bodies are unique per call: `valid` was made for this request.)
        untyped_body = (
            (await create_request(resource, client, owner_a))["json"] if method == "POST" else valid
        )
        untyped = await client.request(
            method, url, content=json.dumps(untyped_body).encode(), headers=owner_a
        )
        assert untyped.status_code in {200, 201}, untyped.text


@pytest.mark.parametrize("resource", RESOURCES)
async def test_deeply_nested_json_is_refused_before_it_is_decoded(
    api: Api, owner_a: Headers, resource: str
) -> None:
    app, client = api
    raw = {**owner_a, "content-type": "application/json"}
    for method, path, _ in json_writes(app, resource):
        url = await target_url(client, owner_a, resource, path)
        for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
            for depth in (MAX_JSON_DEPTH + 1, 400, 3000, 100_000):
                body = b'{"x":' + opening * (depth - 1) + b"1" + closing * (depth - 1) + b"}"
                response = await client.request(method, url, content=body, headers=raw)
                assert f"nested {depth} levels" in assert_problem(response, 400)["detail"], (method, url)
        # At the limit the body is read (and refused for its content, not its depth).
        at_limit = b'{"x":' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
        response = await client.request(method, url, content=at_limit, headers=raw)
        assert response.status_code == 422, response.text


@pytest.mark.parametrize("resource", RESOURCES)
async def test_oversize_json_bodies_are_refused(api: Api, owner_a: Headers, resource: str) -> None:
    app, client = api
    for method, path, _ in json_writes(app, resource):
        url = await target_url(client, owner_a, resource, path)
        limit = BODY_LIMITS.get(resource, MiB)
        body = json.dumps({"padding": "x" * (limit + 1)}).encode()
        response = await client.request(
            method, url, content=body, headers={**owner_a, "content-type": "application/json"}
        )
        assert f"{limit} bytes" in assert_problem(response, 413)["detail"]


# Text PostgreSQL cannot store (NUL), in every stored string and JSON document.
NUL = "nul\u0000byte"
NUL_FIELDS = [
    ("users", "name", NUL),
    ("users", "email", f"a{NUL}@example.test"),
    ("users", "phone", NUL),
    ("user-groups", "name", NUL),
    ("user-roles", "name", NUL),
    ("user-meta", "uniq_customize", {"key": NUL}),
    ("customize", "data", {"key": NUL}),
    ("customize", "data", {NUL: "value"}),
    ("media", "name", f"{NUL}.txt"),
]


@pytest.mark.parametrize(
    ("resource", "field", "value"),
    NUL_FIELDS,
    ids=[f"{resource}-{field}-{i}" for i, (resource, field, _) in enumerate(NUL_FIELDS)],
)
async def test_text_the_database_cannot_store_is_named(
    api: Api, owner_a: Headers, resource: str, field: str, value: Any
) -> None:
    app, client = api
    for method, path, _ in json_writes(app, resource):
        url = await target_url(client, owner_a, resource, path)
        valid = (await create_request(resource, client, owner_a))["json"] if method == "POST" else {}
        response = await client.request(method, url, json={**valid, field: value}, headers=owner_a)
        named = error_fields(assert_problem(response, 422))
        # The field, or the place in it (``data.key``), never the NUL itself.
        assert any(f == field or f.startswith(f"{field}.") for f in named), (method, path, named)
        assert "\x00" not in response.text and "\\u0000" not in response.text


# --- conflicts and references -------------------------------------------------------------------


async def test_user_emails_are_unique_in_any_case(api: Api, owner_a: Headers) -> None:
    _, client = api
    first = (await create_request("users", client, owner_a))["json"]
    assert (await client.post("/users", json=first, headers=owner_a)).status_code == 201
    again = await client.post("/users", json={**first, "email": first["email"].upper()}, headers=owner_a)
    assert_problem(again, 409)
    other = await create(client, owner_a, "users")
    moved = await client.patch(f"/users/{other}", json={"email": first["email"].title()}, headers=owner_a)
    assert_problem(moved, 409)
    assert (await client.get(f"/users/{other}", headers=owner_a)).json()["email"] != first["email"].title()
    # Changing the case of one's own email is no conflict.
    own = (await client.get(f"/users/{other}", headers=owner_a)).json()["email"]
    recased = await client.patch(f"/users/{other}", json={"email": own.upper()}, headers=owner_a)
    assert recased.status_code == 200 and recased.json()["email"] == own.upper()


async def test_concurrent_duplicate_emails_make_one_user(api: Api, owner_a: Headers) -> None:
    _, client = api
    body = (await create_request("users", client, owner_a))["json"]
    variants = [
        body["email"],
        body["email"].upper(),
        body["email"].title(),
        body["email"],
        body["email"].upper(),
    ]
    responses = await asyncio.gather(
        *(client.post("/users", json={**body, "email": email}, headers=owner_a) for email in variants)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409)


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        ("user-meta", "owner_id"),
        ("user-meta", "user_groups"),
        ("user-meta", "user_roles"),
        ("user-groups", "owner_id"),
        ("user-roles", "owner_id"),
    ],
)
async def test_references_to_missing_rows_are_refused(
    api: Api, owner_a: Headers, resource: str, field: str
) -> None:
    _, client = api
    valid = (await create_request(resource, client, owner_a))["json"]
    missing = str(uuid.uuid4())
    created = await client.post(f"/{resource}", json={**valid, field: missing}, headers=owner_a)
    assert field in error_fields(assert_problem(created, 422))
    row = await create(client, owner_a, resource)
    before = (await client.get(f"/{resource}/{row}", headers=owner_a)).json()
    patched = await client.patch(f"/{resource}/{row}", json={field: missing}, headers=owner_a)
    assert field in error_fields(assert_problem(patched, 422))
    assert (await client.get(f"/{resource}/{row}", headers=owner_a)).json() == before


@pytest.mark.parametrize(
    ("resource", "field"), [("user-groups", "user_groups"), ("user-roles", "user_roles")]
)
async def test_a_linked_group_or_role_cannot_be_deleted(
    api: Api, owner_a: Headers, resource: str, field: str
) -> None:
    _, client = api
    target = await create(client, owner_a, resource)
    link_body = (await create_request("user-meta", client, owner_a))["json"]
    link = await client.post("/user-meta", json={**link_body, field: target}, headers=owner_a)
    assert link.status_code == 201, link.text
    refused = assert_problem(await client.delete(f"/{resource}/{target}", headers=owner_a), 409)
    assert f"1 user-meta row ({field})" in refused["detail"], refused
    assert (await client.get(f"/{resource}/{target}", headers=owner_a)).status_code == 200
    assert (await client.delete(f"/user-meta/{link.json()['id']}", headers=owner_a)).status_code == 204
    assert (await client.delete(f"/{resource}/{target}", headers=owner_a)).status_code == 204


async def test_deleting_a_user_removes_their_links_and_keeps_their_rows(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    meta = await create(client, owner_a, "user-meta")
    user = (await client.get(f"/user-meta/{meta}", headers=owner_a)).json()["owner_id"]
    group = await client.post("/user-groups", json={"name": "Theirs", "owner_id": user}, headers=owner_a)
    assert group.status_code == 201, group.text
    assert (await client.delete(f"/users/{user}", headers=owner_a)).status_code == 204
    assert_problem(await client.get(f"/user-meta/{meta}", headers=owner_a), 404)
    assert all(m["owner_id"] != user for m in await list_all(client, owner_a, "user-meta"))
    kept = await client.get(f"/user-groups/{group.json()['id']}", headers=owner_a)
    assert kept.status_code == 200 and kept.json()["owner_id"] == str(tenant_a.tenant.owner_id)


async def test_nobody_deletes_themself_or_the_owner(api: Api, tenant_a: MadeTenant, owner_a: Headers) -> None:
    _, client = api
    owner_id = str(tenant_a.tenant.owner_id)
    admin = await add_user(client, owner_a, role="Admin")
    assert_problem(await client.delete(f"/users/{owner_id}", headers=owner_a), 409)
    assert_problem(await client.delete(f"/users/{admin.id}", headers=admin.headers), 409)
    assert_problem(await client.delete(f"/users/{owner_id}", headers=admin.headers), 409)
    for who in (owner_id, admin.id):
        assert (await client.get(f"/users/{who}", headers=owner_a)).status_code == 200
    assert (await client.get("/auth/me", headers=admin.headers)).status_code == 200


async def test_every_missing_link_of_a_user_meta_row_is_named(api: Api, owner_a: Headers) -> None:
    """API.md §5: one 422 names every bad field; the role was checked alone, then the
    database named one missing row at a time."""
    _, client = api
    links = {name: str(uuid.uuid4()) for name in ("owner_id", "user_groups", "user_roles")}
    refused = assert_problem(await client.post("/user-meta", json=links, headers=owner_a), 422)
    assert error_fields(refused) == set(links), refused
    row = await create(client, owner_a, "user-meta")
    before = (await client.get(f"/user-meta/{row}", headers=owner_a)).json()
    two = {"user_groups": str(uuid.uuid4()), "user_roles": str(uuid.uuid4())}
    patched = assert_problem(await client.patch(f"/user-meta/{row}", json=two, headers=owner_a), 422)
    assert error_fields(patched) == set(two), patched
    assert (await client.get(f"/user-meta/{row}", headers=owner_a)).json() == before


async def test_deleting_a_user_refuses_unknown_query_parameters(api: Api, owner_a: Headers) -> None:
    """API.md §5: an unknown query parameter is 422 naming it. A misspelt ``transfer_to``
    was ignored, and the user's rows went to the owner instead of the user named."""
    _, client = api
    user = await add_user(client, owner_a)
    heir = await add_user(client, owner_a)
    misspelt = await client.delete(f"/users/{user.id}", params={"transferTo": heir.id}, headers=owner_a)
    assert error_fields(assert_problem(misspelt, 422)) == {"transferTo"}
    twice = await client.delete(
        f"/users/{user.id}", params=[("transfer_to", heir.id), ("transfer_to", heir.id)], headers=owner_a
    )
    assert error_fields(assert_problem(twice, 422)) == {"transfer_to"}
    assert (await client.get(f"/users/{user.id}", headers=owner_a)).status_code == 200
    deleted = await client.delete(f"/users/{user.id}", params={"transfer_to": heir.id}, headers=owner_a)
    assert deleted.status_code == 204, deleted.text


async def test_role_permissions_are_described_in_the_openapi_document(api: Api, owner_a: Headers) -> None:
    """API.md §5: fields whose meaning the name does not tell are described. The description
    sat on the list's items, which the document drops, and left out ``manage``."""
    _, client = api
    schemas = (await client.get("/schema/openapi.json", headers=owner_a)).json()["components"]["schemas"]
    for name in ("UserRoleCreate", "UserRoleUpdate", "UserRoleRead"):
        text = json.dumps(schemas[name]["properties"]["permissions"])
        assert all(word in text for word in (":read", ":write", ":manage", "`*`")), (name, text)
