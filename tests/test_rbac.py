"""Authorization: the built-in roles on every route, and the limits on handing out permissions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar import get
from litestar.params import FromPath
from sqlalchemy import Engine

from atrium.platform.security.permissions import MEMBER_ROLE, builtin_roles, grants, manage, read, write
from atrium.platform.settings import Settings
from tests.api import (
    EXPORTED_BY,
    READS,
    UPDATES,
    Api,
    Endpoint,
    Headers,
    TenantUser,
    action_request,
    add_user,
    assert_problem,
    create,
    create_request,
    error_fields,
    everyone_group_id,
    new_tenant,
    remember_password,
    resources,
    restricted_resources,
    role_id,
    route_resources,
    success_status,
    tenant_endpoints,
    uncovered,
    user_with,
)
from tests.conftest import login, serve

pytest_plugins = ["tests.api"]

# API.md §6: the resources of the identity layer, each with the five CRUD operations.
IDENTITY_RESOURCES = {"users", "user-groups", "user-roles", "user-meta", "customize"}


@pytest.fixture(scope="module")
async def staff(api: Api, owner_a: Headers) -> dict[str, TenantUser]:
    _, client = api
    return {role: await add_user(client, owner_a, role=role) for role in ("Admin", "Member")}


async def aim(
    client: httpx.AsyncClient, endpoint: Endpoint, owner: Headers, rows: dict[str, str]
) -> tuple[str | None, dict[str, Any]]:
    """The row (made by the owner) and the request's keyword arguments for ``endpoint``."""
    item_id, kwargs = None, {}
    if endpoint.on_item:
        if endpoint.op in {"delete", "action"}:
            item_id = await create(client, owner, endpoint.resource)
        else:
            if endpoint.resource not in rows:
                rows[endpoint.resource] = await create(client, owner, endpoint.resource)
            item_id = rows[endpoint.resource]
    if endpoint.op == "create":
        kwargs = await create_request(endpoint.resource, client, owner)
    elif endpoint.op == "update":
        kwargs = {"json": UPDATES[endpoint.resource]}
    elif endpoint.op == "action":
        assert item_id is not None
        kwargs = await action_request(endpoint, client, owner, item_id)
    return item_id, kwargs


async def call(
    client: httpx.AsyncClient, endpoint: Endpoint, actor: Headers, owner: Headers, rows: dict[str, str]
) -> tuple[httpx.Response, str | None]:
    """Run ``endpoint`` as ``actor`` on rows the owner made; returns the response and the row id."""
    item_id, kwargs = await aim(client, endpoint, owner, rows)
    return await client.request(endpoint.method, endpoint.url(item_id), headers=actor, **kwargs), item_id


# --- the route table --------------------------------------------------------------------------


async def test_every_route_is_covered(api: Api) -> None:
    app, _ = api
    assert uncovered(app) == []
    assert set(resources(app)) >= IDENTITY_RESOURCES
    for resource in IDENTITY_RESOURCES:
        ops = {e.op for e in tenant_endpoints(app) if e.resource == resource}
        assert ops == {"list", "create", "get", "update", "delete"}, (resource, ops)


async def test_a_route_without_a_factory_is_reported(settings: Settings) -> None:
    @get("/widgets/{item_id:uuid}")
    async def widget(item_id: FromPath[str]) -> None:
        return None

    @get("/users/{item_id:uuid}/avatar")
    async def avatar(item_id: FromPath[str]) -> None:
        return None

    async with serve(settings, [widget, avatar]) as (app, _):
        assert uncovered(app) == [
            "GET /users/{item_id:uuid}/avatar: a route shape no matrix knows",
            "GET /widgets/{item_id:uuid}: no factory for 'widgets' in tests/api.py",
        ]


# --- the built-in roles on every route ----------------------------------------------------------


async def test_owner_and_admin_may_do_everything(
    api: Api, owner_a: Headers, staff: dict[str, TenantUser]
) -> None:
    app, client = api
    rows: dict[str, str] = {}
    for endpoint in tenant_endpoints(app):
        for who, headers in (("Owner", owner_a), ("Admin", staff["Admin"].headers)):
            response, _ = await call(client, endpoint, headers, owner_a, rows)
            assert response.status_code == success_status(endpoint), (who, str(endpoint), response.text)


def expected_success(permissions: frozenset[str], endpoint: Endpoint, owned: bool) -> bool:
    """Whether ``permissions`` allow ``endpoint`` on a row another user owns (API.md §4)."""
    resource = endpoint.resource
    if endpoint.op == "export":
        return grants(permissions, manage(EXPORTED_BY[resource]))
    if endpoint.op in READS:
        return grants(permissions, read(resource))
    if endpoint.op == "create":
        return grants(permissions, write(resource))
    # Changing or deleting another's row: manage, or write where rows have no owner.
    return grants(permissions, manage(resource)) or (not owned and grants(permissions, write(resource)))


async def test_member_does_what_the_built_in_role_grants_and_no_more(
    api: Api, owner_a: Headers, staff: dict[str, TenantUser]
) -> None:
    """Member reads everything and writes media (API.md §4), but only their own."""
    app, client = api
    member = staff["Member"].headers
    member_permissions = frozenset(builtin_roles()[MEMBER_ROLE])
    rows = {resource: await create(client, owner_a, resource) for resource in resources(app)}
    owned = {
        resource: "owner_id" in (await client.get(f"/{resource}/{row}", headers=owner_a)).json()
        for resource, row in rows.items()
    }
    assert owned["media"] and not owned["users"]

    async def state(resource: str, aimed: str | None) -> tuple[int, bytes, bytes]:
        listed = await client.get(f"/{resource}", headers=owner_a)
        row = await client.get(f"/{resource}/{rows[resource]}", headers=owner_a)
        target = b"" if aimed is None else (await client.get(f"/{resource}/{aimed}", headers=owner_a)).content
        return listed.json()["total"], row.content, target

    restricted = restricted_resources()
    for endpoint in tenant_endpoints(app):
        resource = endpoint.resource
        # An action's row is made (and readied) first: what must not change is after that.
        item_id, kwargs = await aim(client, endpoint, owner_a, rows)
        aimed = item_id if endpoint.op == "action" else None
        before = await state(resource, aimed)
        response = await client.request(endpoint.method, endpoint.url(item_id), headers=member, **kwargs)
        if (
            endpoint.on_item
            and resource in restricted
            and grants(member_permissions, read(resource))
            and not grants(member_permissions, manage(resource))
            # A rule may still show the member this row (a project they are a member of).
            and (await client.get(f"/{resource}/{item_id}", headers=member)).status_code == 404
        ):
            # The owner's row is outside what the member may see: not there at all.
            assert_problem(response, 404)
            assert await state(resource, aimed) == before, str(endpoint)
            continue
        if expected_success(member_permissions, endpoint, owned[endpoint.resource]):
            assert response.status_code == success_status(endpoint), (str(endpoint), response.text)
            continue
        assert_problem(response, 403)
        # Refused means nothing happened.
        if endpoint.op == "delete":
            assert (await client.get(f"/{endpoint.resource}/{item_id}", headers=owner_a)).status_code == 200
        else:
            assert await state(resource, aimed) == before, str(endpoint)


async def test_a_user_without_roles_may_do_nothing_but_see_themself(api: Api, owner_a: Headers) -> None:
    app, client = api
    nobody, rows = (await add_user(client, owner_a)).headers, {}
    me = await client.get("/auth/me", headers=nobody)
    assert me.status_code == 200 and me.json()["roles"] == [] and me.json()["permissions"] == []
    for endpoint in tenant_endpoints(app):
        response, _ = await call(client, endpoint, nobody, owner_a, rows)
        assert_problem(response, 403)


async def test_permissions_are_the_union_of_linked_roles_and_follow_changes(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    user = await add_user(client, owner_a, role="Member")
    assert_problem(await client.post("/customize", json={"data": {}}, headers=user.headers), 403)

    role = await client.post(
        "/user-roles", json={"name": "Designer", "permissions": ["customize:write"]}, headers=owner_a
    )
    assert role.status_code == 201, role.text
    everyone = await everyone_group_id(client, owner_a)
    link = await client.post(
        "/user-meta",
        json={"owner_id": user.id, "user_groups": everyone, "user_roles": role.json()["id"]},
        headers=owner_a,
    )
    assert link.status_code == 201, link.text
    me = (await client.get("/auth/me", headers=user.headers)).json()
    assert sorted(me["roles"]) == ["Designer", "Member"]
    assert "customize:write" in me["permissions"] and "customize:read" in me["permissions"]
    assert (await client.post("/customize", json={"data": {}}, headers=user.headers)).status_code == 201
    assert_problem(await client.post("/user-groups", json={"name": "G"}, headers=user.headers), 403)

    # Taking the role away (or narrowing it) applies to the very next request.
    narrowed = await client.patch(
        f"/user-roles/{role.json()['id']}", json={"permissions": ["customize:read"]}, headers=owner_a
    )
    assert narrowed.status_code == 200, narrowed.text
    assert_problem(await client.post("/customize", json={"data": {}}, headers=user.headers), 403)
    await client.patch(
        f"/user-roles/{role.json()['id']}", json={"permissions": ["customize:write"]}, headers=owner_a
    )
    assert (await client.post("/customize", json={"data": {}}, headers=user.headers)).status_code == 201
    assert (await client.delete(f"/user-meta/{link.json()['id']}", headers=owner_a)).status_code == 204
    assert_problem(await client.post("/customize", json={"data": {}}, headers=user.headers), 403)


# --- nobody hands out more than they hold -------------------------------------------------------


async def test_admin_cannot_mint_the_wildcard(
    api: Api, owner_a: Headers, staff: dict[str, TenantUser]
) -> None:
    _, client = api
    admin = staff["Admin"].headers
    for permissions in (["*"], ["users:read", "*"]):
        refused = await client.post(
            "/user-roles", json={"name": "Root", "permissions": permissions}, headers=admin
        )
        assert_problem(refused, 403)
    role = await create(client, admin, "user-roles")
    assert_problem(await client.patch(f"/user-roles/{role}", json={"permissions": ["*"]}, headers=admin), 403)
    assert (await client.get(f"/user-roles/{role}", headers=admin)).json()["permissions"] != ["*"]
    assert "Root" not in {
        r["name"]
        for r in (await client.get("/user-roles", params={"limit": 200}, headers=owner_a)).json()["items"]
    }
    # The owner holds "*" and may hand it out.
    allowed = await client.post("/user-roles", json={"name": "Root", "permissions": ["*"]}, headers=owner_a)
    assert allowed.status_code == 201, allowed.text


async def test_admin_cannot_link_themself_to_the_owner_role(
    api: Api, owner_a: Headers, staff: dict[str, TenantUser]
) -> None:
    _, client = api
    admin = staff["Admin"]
    owner_role = await role_id(client, owner_a, "Owner")
    everyone = await everyone_group_id(client, owner_a)
    refused = await client.post(
        "/user-meta",
        json={"owner_id": admin.id, "user_groups": everyone, "user_roles": owner_role},
        headers=admin.headers,
    )
    assert_problem(refused, 403)
    default_owner = await client.post(
        "/user-meta", json={"user_groups": everyone, "user_roles": owner_role}, headers=admin.headers
    )
    assert_problem(default_owner, 403)
    # Nor by re-pointing an existing link, theirs or a fresh one.
    links = (await client.get("/user-meta", params={"limit": 200}, headers=admin.headers)).json()["items"]
    own_link = next(m for m in links if m["owner_id"] == admin.id)
    assert_problem(
        await client.patch(
            f"/user-meta/{own_link['id']}", json={"user_roles": owner_role}, headers=admin.headers
        ),
        403,
    )
    fresh = await create(client, admin.headers, "user-meta")
    assert_problem(
        await client.patch(
            f"/user-meta/{fresh}",
            json={"owner_id": admin.id, "user_roles": owner_role},
            headers=admin.headers,
        ),
        403,
    )
    me = (await client.get("/auth/me", headers=admin.headers)).json()
    assert me["roles"] == ["Admin"] and "*" not in me["permissions"]


@pytest.mark.parametrize(
    "permissions",
    [["users:delete"], ["nothing:read"], ["USERS:READ"], ["users"], ["users:read", "bogus"], ["**"]],
)
async def test_unknown_permissions_are_refused(
    api: Api, owner_a: Headers, staff: dict[str, TenantUser], permissions: list[str]
) -> None:
    _, client = api
    role = await create(client, owner_a, "user-roles")
    for headers in (owner_a, staff["Admin"].headers):
        created = await client.post(
            "/user-roles", json={"name": "Odd", "permissions": permissions}, headers=headers
        )
        # The list, or the malformed item by its place.
        assert {f.partition("[")[0] for f in error_fields(assert_problem(created, 422))} == {"permissions"}
        patched = await client.patch(
            f"/user-roles/{role}", json={"permissions": permissions}, headers=headers
        )
        assert {f.partition("[")[0] for f in error_fields(assert_problem(patched, 422))} == {"permissions"}


TAKEOVER_PASSWORD = remember_password("taken-over-by-admin")
OWNER_DEMOTIONS = {
    "narrow the Owner role": ("PATCH", "/user-roles/{owner_role}", {"permissions": ["users:read"]}),
    "unlink the owner from the Owner role": ("DELETE", "/user-meta/{owner_link}", None),
    "re-point the owner's link to Member": (
        "PATCH",
        "/user-meta/{owner_link}",
        {"user_roles": "{member_role}"},
    ),
    "move the owner's link to the admin": ("PATCH", "/user-meta/{owner_link}", {"owner_id": "{admin_id}"}),
    "reset the owner's password": ("PATCH", "/users/{owner_id}", {"password": TAKEOVER_PASSWORD}),
}


@pytest.mark.parametrize("case", sorted(OWNER_DEMOTIONS))
async def test_admin_cannot_demote_or_take_over_the_owner(
    api: Api, operator_engine: Engine, case: str
) -> None:
    """Nobody acts on more than they hold: an Admin can neither strip the owner's ``*`` nor take the account.

    (Each case on a fresh tenant: if the product lets it through, the owner is gone.)
    """
    _, client = api
    made = new_tenant(operator_engine, "own")
    owner = await login(client, made.host, made.owner_email, made.owner_password)
    admin = await add_user(client, owner, role="Admin")
    owner_id = str(made.tenant.owner_id)
    names = {
        "owner_id": owner_id,
        "admin_id": admin.id,
        "owner_role": await role_id(client, owner, "Owner"),
        "member_role": await role_id(client, owner, "Member"),
    }
    links = (await client.get("/user-meta", params={"limit": 200}, headers=owner)).json()["items"]
    names["owner_link"] = next(
        m["id"] for m in links if m["owner_id"] == owner_id and m["user_roles"] == names["owner_role"]
    )
    method, template, body = OWNER_DEMOTIONS[case]
    if body is not None:
        body = {k: v.format(**names) if isinstance(v, str) else v for k, v in body.items()}
    response = await client.request(method, template.format(**names), json=body, headers=admin.headers)
    assert_problem(response, 403)
    me = await client.get(
        "/auth/me", headers=await login(client, made.host, made.owner_email, made.owner_password)
    )
    assert me.json()["permissions"] == ["*"]
    assert "*" not in (await client.get("/auth/me", headers=admin.headers)).json()["permissions"]


# --- ownership: write changes one's own rows, manage any row (API.md §4) -------------------------


async def _row(client: httpx.AsyncClient, owner: Headers, resource: str, row: str) -> dict[str, Any]:
    response = await client.get(f"/{resource}/{row}", headers=owner)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("resource", route_resources())
async def test_write_changes_own_rows_and_manage_any_row_on_every_write_route(
    api: Api, owner_a: Headers, resource: str
) -> None:
    app, client = api
    ops = {e.op for e in tenant_endpoints(app) if e.resource == resource}
    reads = [read(r) for r in resources(app)]
    writer = await user_with(client, owner_a, [*reads, write(resource)])
    manager = await user_with(client, owner_a, [*reads, manage(resource)])
    theirs = await create(client, owner_a, resource)
    other = await _row(client, owner_a, resource, theirs)
    owned = "owner_id" in other
    assert owned == (resource not in {"users", "customize"})

    async def create_as(actor: TenantUser, owner_id: str | None = None) -> httpx.Response:
        kwargs = await create_request(resource, client, owner_a)
        if "json" in kwargs and owned:
            kwargs["json"].pop("owner_id", None)
            if owner_id is not None:
                kwargs["json"]["owner_id"] = owner_id
        return await client.post(f"/{resource}", headers=actor.headers, **kwargs)

    assert "create" in ops, "ownership needs rows of the writer's own"
    mine = await create_as(writer)
    assert mine.status_code == 201, mine.text
    own = mine.json()["id"]
    if owned:
        # Created rows belong to their creator; another owner needs manage.
        assert mine.json()["owner_id"] == writer.id
        # (Uploads take no owner_id: a file is its uploader's.)
        if "json" in await create_request(resource, client, owner_a):
            total = (await client.get(f"/{resource}", headers=owner_a)).json()["total"]
            assert_problem(await create_as(writer, owner_id=other["owner_id"]), 403)
            assert (await client.get(f"/{resource}", headers=owner_a)).json()["total"] == total
            given = await create_as(manager, owner_id=other["owner_id"])
            assert given.status_code == 201 and given.json()["owner_id"] == other["owner_id"], given.text

    # Where rows are visible to some only, another's row is not there for the writer.
    hidden = (await client.get(f"/{resource}/{theirs}", headers=writer.headers)).status_code == 404
    refused = 404 if resource in restricted_resources() and hidden else 403
    if "update" in ops:
        change = UPDATES[resource]
        on_theirs = await client.patch(f"/{resource}/{theirs}", json=change, headers=writer.headers)
        if owned:
            assert_problem(on_theirs, refused)
            assert await _row(client, owner_a, resource, theirs) == other
        else:
            assert on_theirs.status_code == 200, on_theirs.text
        on_own = await client.patch(f"/{resource}/{own}", json=change, headers=writer.headers)
        assert on_own.status_code == 200, on_own.text
        managed = await client.patch(f"/{resource}/{theirs}", json=change, headers=manager.headers)
        assert managed.status_code == 200, managed.text
        if owned:
            # Handing one's own row to another user needs manage; keeping it does not.
            kept = await client.patch(
                f"/{resource}/{own}", json={"owner_id": writer.id}, headers=writer.headers
            )
            assert kept.status_code == 200, kept.text
            given_away = await client.patch(
                f"/{resource}/{own}", json={"owner_id": other["owner_id"]}, headers=writer.headers
            )
            assert_problem(given_away, 403)
            assert (await _row(client, owner_a, resource, own))["owner_id"] == writer.id
            taken = await client.patch(
                f"/{resource}/{theirs}", json={"owner_id": manager.id}, headers=manager.headers
            )
            assert taken.status_code == 200 and taken.json()["owner_id"] == manager.id, taken.text

    if "delete" in ops:
        victim = await create(client, owner_a, resource)
        before = await _row(client, owner_a, resource, victim)
        on_theirs = await client.delete(f"/{resource}/{victim}", headers=writer.headers)
        if owned:
            assert_problem(on_theirs, refused)
            assert await _row(client, owner_a, resource, victim) == before
            assert (await client.delete(f"/{resource}/{victim}", headers=manager.headers)).status_code == 204
        else:
            assert on_theirs.status_code == 204, on_theirs.text
        assert (await client.delete(f"/{resource}/{own}", headers=writer.headers)).status_code == 204
        assert_problem(await client.get(f"/{resource}/{own}", headers=owner_a), 404)


async def test_nobody_grants_manage_they_do_not_hold(api: Api, owner_a: Headers) -> None:
    _, client = api
    reads = [read(r) for r in resources(api[0])]
    writer = await user_with(client, owner_a, [*reads, "media:write", "user-roles:write", "user-meta:write"])
    for permissions in (["media:manage"], ["media:write", "media:manage"], ["users:write"]):
        created = await client.post(
            "/user-roles", json={"name": "Mod", "permissions": permissions}, headers=writer.headers
        )
        assert_problem(created, 403)
    role = await client.post(
        "/user-roles", json={"name": "Uploader", "permissions": ["media:write"]}, headers=writer.headers
    )
    assert role.status_code == 201, role.text
    widened = await client.patch(
        f"/user-roles/{role.json()['id']}", json={"permissions": ["media:manage"]}, headers=writer.headers
    )
    assert_problem(widened, 403)
    assert (await _row(client, owner_a, "user-roles", role.json()["id"]))["permissions"] == ["media:write"]

    # Nor through a link to a role that holds it.
    moderator = await client.post(
        "/user-roles", json={"name": "Moderator", "permissions": ["media:manage"]}, headers=owner_a
    )
    assert moderator.status_code == 201, moderator.text
    everyone = await everyone_group_id(client, owner_a)
    link = await client.post(
        "/user-meta",
        json={"user_groups": everyone, "user_roles": moderator.json()["id"]},
        headers=writer.headers,
    )
    assert_problem(link, 403)
    assert "media:manage" not in (await client.get("/auth/me", headers=writer.headers)).json()["permissions"]

    # Holding manage, one may grant it and what it includes, and nothing beyond.
    manager = await user_with(client, owner_a, [*reads, "media:manage", "user-roles:write"])
    for permissions in (["media:manage"], ["media:write"], ["media:read"]):
        granted = await client.post(
            "/user-roles", json={"name": "Granted", "permissions": permissions}, headers=manager.headers
        )
        assert granted.status_code == 201, granted.text
    assert_problem(
        await client.post(
            "/user-roles", json={"name": "Beyond", "permissions": ["users:manage"]}, headers=manager.headers
        ),
        403,
    )
