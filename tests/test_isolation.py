"""Tenant isolation on every route: B's token, host and ids never reach A's rows, and back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar import Litestar

from tests.api import (
    CHILD_UPDATES,
    FACTORIES,
    ITEM_EXTRAS,
    UPDATES,
    Api,
    Headers,
    assert_problem,
    child_url,
    create,
    create_request,
    endpoints_of,
    error_fields,
    list_all,
    resources,
    secret_password,
    tenant_endpoints,
)
from tests.conftest import MadeTenant

pytest_plugins = ["tests.api"]


@pytest.fixture(scope="module")
async def rows_a(api: Api, owner_a: Headers) -> dict[str, str]:
    """One row of every resource in tenant A: resource → id."""
    app, client = api
    return {r: await create(client, owner_a, r) for r in resources(app) if r in FACTORIES}


@pytest.fixture(scope="module")
async def rows_b(api: Api, owner_b: Headers) -> dict[str, str]:
    app, client = api
    return {r: await create(client, owner_b, r) for r in resources(app) if r in FACTORIES}


async def snapshot(
    app: Litestar, client: httpx.AsyncClient, headers: Headers, rows: dict[str, str]
) -> dict[str, Any]:
    """What the tenant itself reads of ``rows``: every item route, bodies and bytes."""
    seen: dict[str, Any] = {}
    for endpoint in endpoints_of(app, "get", "content", "export", "versions", "version"):
        response = await client.get(endpoint.url(rows[endpoint.resource]), headers=headers)
        assert response.status_code == 200, (str(endpoint), response.text)
        seen[str(endpoint)] = response.content
    return seen


async def every_id(app: Litestar, client: httpx.AsyncClient, headers: Headers) -> set[str]:
    """The ids of every row the tenant can list, of every resource."""
    ids: set[str] = set()
    for endpoint in endpoints_of(app, "list"):
        ids |= {row["id"] for row in await list_all(client, headers, endpoint.resource)}
    return ids


async def test_other_tenants_ids_are_not_found_and_stay_untouched(
    api: Api, owner_a: Headers, owner_b: Headers, rows_a: dict[str, str], rows_b: dict[str, str]
) -> None:
    app, client = api
    before = await snapshot(app, client, owner_a, rows_a)
    item_routes = endpoints_of(app, "get", "update", "delete", "export", *ITEM_EXTRAS)
    assert {e.op for e in item_routes} >= {"get", "update", "delete"}
    for endpoint in item_routes:
        kwargs = {"json": UPDATES[endpoint.resource]} if endpoint.op == "update" else {}
        response = await client.request(
            endpoint.method, endpoint.url(rows_a[endpoint.resource]), headers=owner_b, **kwargs
        )
        assert_problem(response, 404)
        # The same request on B's own row succeeds: the 404 is about the tenant, not the request.
        if endpoint.op != "delete":
            own = await client.request(
                endpoint.method, endpoint.url(rows_b[endpoint.resource]), headers=owner_b, **kwargs
            )
            assert own.status_code == 200, (str(endpoint), own.text)
    assert await snapshot(app, client, owner_a, rows_a) == before


async def test_other_tenants_child_rows_are_not_found_and_stay_untouched(
    api: Api, owner_a: Headers, owner_b: Headers, rows_a: dict[str, str], rows_b: dict[str, str]
) -> None:
    """A row's children by id (a room's message, a ticket's reply): B reaches none of A's,
    neither under A's row id nor under one of its own, and A's child is unchanged."""
    app, client = api
    children = [e for e in tenant_endpoints(app, every=True) if e.op == "child"]
    assert {e.method for e in children} >= {"GET", "PATCH", "DELETE"}
    for endpoint in children:
        url_a = await child_url(endpoint, client, owner_a, rows_a[endpoint.resource])
        child_a = url_a.rsplit("/", 1)[-1]
        before = await client.get(url_a, headers=owner_a)
        assert before.status_code == 200, (str(endpoint), before.text)
        kwargs = {"json": CHILD_UPDATES[endpoint.action]} if endpoint.method == "PATCH" else {}
        resource, kind = endpoint.action
        for url in (url_a, f"/{resource}/{rows_b[resource]}/{kind}/{child_a}"):
            assert_problem(await client.request(endpoint.method, url, headers=owner_b, **kwargs), 404)
        # The same request on B's own child succeeds: the 404 is about the tenant.
        url_b = await child_url(endpoint, client, owner_b, rows_b[endpoint.resource])
        own = await client.request(endpoint.method, url_b, headers=owner_b, **kwargs)
        assert own.status_code == (204 if endpoint.method == "DELETE" else 200), (str(endpoint), own.text)
        after = await client.get(url_a, headers=owner_a)
        assert (after.content, after.headers["ETag"]) == (before.content, before.headers["ETag"]), str(
            endpoint
        )


async def test_lists_never_contain_the_other_tenants_rows(
    api: Api, owner_a: Headers, owner_b: Headers, rows_a: dict[str, str], rows_b: dict[str, str]
) -> None:
    app, client = api
    ids_a, ids_b = await every_id(app, client, owner_a), await every_id(app, client, owner_b)
    assert set(rows_a.values()) <= ids_a and set(rows_b.values()) <= ids_b
    assert ids_a.isdisjoint(ids_b)
    for endpoint in endpoints_of(app, "list"):
        page = (await client.get(endpoint.path, params={"limit": 200}, headers=owner_b)).json()
        assert page["total"] == len(await list_all(client, owner_b, endpoint.resource)), str(endpoint)


async def test_a_token_works_only_on_the_tenant_that_issued_it(
    api: Api,
    tenant_a: MadeTenant,
    tenant_b: MadeTenant,
    owner_a: Headers,
    owner_b: Headers,
    rows_a: dict[str, str],
    rows_b: dict[str, str],
) -> None:
    app, client = api
    crossings = [
        ({**owner_a, "Host": tenant_b.host}, rows_b, owner_b),  # A's token on B's host
        ({**owner_b, "Host": tenant_a.host}, rows_a, owner_a),  # B's token on A's host
    ]
    for headers, rows, rightful in crossings:
        before = await every_id(app, client, rightful)
        assert_problem(await client.get("/auth/me", headers=headers), 401)
        for endpoint in tenant_endpoints(app):
            kwargs: dict[str, Any] = {}
            if endpoint.op == "create":
                kwargs = await create_request(endpoint.resource, client, rightful)
            elif endpoint.op == "update":
                kwargs = {"json": UPDATES[endpoint.resource]}
            item = rows[endpoint.resource] if endpoint.on_item else None
            response = await client.request(endpoint.method, endpoint.url(item), headers=headers, **kwargs)
            assert_problem(response, 401)
        # Rows made as prerequisites above are the only difference.
        assert before <= await every_id(app, client, rightful)
        assert set(rows.values()) <= await every_id(app, client, rightful)


@pytest.mark.parametrize(
    ("resource", "field", "target"),
    [
        ("user-meta", "owner_id", "users"),
        ("user-meta", "user_groups", "user-groups"),
        ("user-meta", "user_roles", "user-roles"),
        ("user-groups", "owner_id", "users"),
        ("user-roles", "owner_id", "users"),
    ],
)
async def test_references_to_the_other_tenants_rows_are_refused(
    api: Api,
    owner_a: Headers,
    owner_b: Headers,
    rows_a: dict[str, str],
    rows_b: dict[str, str],
    resource: str,
    field: str,
    target: str,
) -> None:
    app, client = api
    before = await snapshot(app, client, owner_a, rows_a), await snapshot(app, client, owner_b, rows_b)
    body = (await create_request(resource, client, owner_b))["json"]
    created = await client.post(f"/{resource}", json={**body, field: rows_a[target]}, headers=owner_b)
    assert field in error_fields(assert_problem(created, 422))
    patched = await client.patch(
        f"/{resource}/{rows_b[resource]}", json={field: rows_a[target]}, headers=owner_b
    )
    assert field in error_fields(assert_problem(patched, 422))
    after = await snapshot(app, client, owner_a, rows_a), await snapshot(app, client, owner_b, rows_b)
    assert after == before


async def test_emails_are_unique_per_tenant_only(api: Api, tenant_a: MadeTenant, owner_b: Headers) -> None:
    _, client = api
    body = {
        "name": "Twin",
        "email": tenant_a.owner_email,
        "phone": "+1 555 0103",
        "password": secret_password(),
    }
    response = await client.post("/users", json=body, headers=owner_b)
    assert response.status_code == 201, response.text
    twice = await client.post("/users", json={**body, "email": tenant_a.owner_email.upper()}, headers=owner_b)
    assert_problem(twice, 409)


async def test_list_filters_with_the_other_tenants_ids_find_nothing(
    api: Api, owner_a: Headers, owner_b: Headers, rows_b: dict[str, str]
) -> None:
    """Every reference filter of every list, given B's ids (rows and B's owner), on A."""
    app, client = api
    document = app.openapi_schema.to_schema()
    b_owner = (await client.get("/auth/me", headers=owner_b)).json()["user"]["id"]
    b_ids = [*rows_b.values(), b_owner]
    checked = 0
    for endpoint in endpoints_of(app, "list"):
        for parameter in document["paths"][endpoint.path]["get"]["parameters"]:
            schema = parameter["schema"]
            if schema.get("type") == "array" and schema["items"].get("format") == "uuid":
                response = await client.get(
                    endpoint.url(), params={parameter["name"]: b_ids}, headers=owner_a
                )
                assert response.status_code == 200, response.text
                assert response.json()["total"] == 0, (str(endpoint), parameter["name"])
                checked += 1
    assert checked >= 5  # owner_id of groups, roles, media; user-meta's three references
