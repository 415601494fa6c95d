"""Deleting a user (API.md §6): their user-meta links go with them, every other row they own
is handed to the tenant's owner or to ``?transfer_to``, in one transaction; the seed's NOT
NULL links are required on create."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import ARRAY, Engine, Uuid, text

from atrium.tenants.base import tenant_metadata
from atrium.tenants.identity.services import owner_references, user_id_arrays
from tests.api import (
    Api,
    Headers,
    TenantUser,
    add_user,
    assert_problem,
    create_request,
    error_fields,
    list_all,
    until_a_lock_is_awaited,
)
from tests.conftest import MadeTenant

pytest_plugins = ["tests.api"]

OWNED = ("user-groups", "user-roles", "media")


async def _rows_owned_by(client: httpx.AsyncClient, user: TenantUser) -> dict[str, str]:
    """One row of each owned resource, created by ``user`` (an Admin), so owned by them."""
    rows = {}
    for resource in OWNED:
        body = await create_request(resource, client, user.headers)
        response = await client.post(f"/{resource}", headers=user.headers, **body)
        assert response.status_code == 201, response.text
        assert response.json()["owner_id"] == user.id
        rows[resource] = response.json()["id"]
    return rows


async def _row(client: httpx.AsyncClient, headers: Headers, resource: str, row: str) -> dict[str, Any]:
    response = await client.get(f"/{resource}/{row}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _snapshot(client: httpx.AsyncClient, headers: Headers) -> dict[str, list[dict[str, Any]]]:
    return {r: await list_all(client, headers, r) for r in ("users", "user-meta", *OWNED)}


def test_every_reference_to_users_is_covered() -> None:
    found = {(t.name, c.name, theirs) for t, c, theirs in owner_references()}
    # A later area's owner_id is found too; it must be NOT NULL and never SET NULL, so a
    # deleted user's rows are always handed over rather than orphaned. Other references
    # (a ticket's assignee) may be empty, but are handed over too, never set to NULL.
    for table, column, _ in owner_references():
        # Null there is an anonymous response, never an orphan: a user's own are handed over.
        anonymous = (table.name, column.name) == ("form_responses", "owner_id")
        assert column.name != "owner_id" or anonymous or not column.nullable, f"{table.name}.{column.name}"
        assert all((fk.ondelete or "").upper() != "SET NULL" for fk in column.foreign_keys)
    assert found >= {
        ("user_meta", "owner_id", True),
        ("user_groups", "owner_id", False),
        ("user_roles", "owner_id", False),
        ("media", "owner_id", False),
    }
    # Records of who did something, not of who owns it, are cleared rather than handed
    # over: a decision per column, so a new one must be added here.
    users = tenant_metadata.tables["users"]
    cleared = {
        (table.name, fk.parent.name)
        for table in tenant_metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column is users.c.id and (fk.ondelete or "").upper() == "SET NULL"
    }
    assert cleared == {("document_versions", "editor_id")}


async def test_a_deleted_editor_leaves_history_unattributed_not_credited_to_the_heir(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    editor = await add_user(client, owner_a, role="Member")
    made = await client.post("/documents", json={"title": "Handbook", "body": "v1"}, headers=editor.headers)
    assert made.status_code == 201, made.text
    url = f"/documents/{made.json()['id']}"
    assert (await client.patch(url, json={"body": "v2"}, headers=owner_a)).status_code == 200
    assert (await client.delete(f"/users/{editor.id}", headers=owner_a)).status_code == 204
    assert (await _row(client, owner_a, "documents", made.json()["id"]))["owner_id"] == str(
        tenant_a.tenant.owner_id
    )
    versions = (await client.get(f"{url}/versions", headers=owner_a)).json()["items"]
    assert [(v["version"], v["editor_id"]) for v in versions] == [
        (2, str(tenant_a.tenant.owner_id)),
        (1, None),
    ]


async def test_rows_go_to_the_owner_and_links_go_with_the_user(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, owner_b: Headers
) -> None:
    _, client = api
    owner_id = str(tenant_a.tenant.owner_id)
    leaving = await add_user(client, owner_a, role="Admin")
    staying = await add_user(client, owner_a, role="Member")
    rows = await _rows_owned_by(client, leaving)
    before = {r: await _row(client, owner_a, r, rows[r]) for r in OWNED}
    links = [m["id"] for m in await list_all(client, owner_a, "user-meta") if m["owner_id"] == leaving.id]
    assert links
    others = [m for m in await list_all(client, owner_a, "user-meta") if m["owner_id"] != leaving.id]
    other_tenant = await _snapshot(client, owner_b)

    assert (await client.delete(f"/users/{leaving.id}", headers=owner_a)).status_code == 204

    for resource in OWNED:
        after = await _row(client, owner_a, resource, rows[resource])
        assert after["owner_id"] == owner_id
        assert after["updated_at"] > before[resource]["updated_at"]
        assert {k: v for k, v in after.items() if k not in ("owner_id", "updated_at")} == {
            k: v for k, v in before[resource].items() if k not in ("owner_id", "updated_at")
        }
    for link in links:
        assert_problem(await client.get(f"/user-meta/{link}", headers=owner_a), 404)
    assert [m for m in await list_all(client, owner_a, "user-meta") if m["owner_id"] != leaving.id] == others
    assert_problem(await client.get(f"/users/{leaving.id}", headers=owner_a), 404)
    assert (await client.get("/auth/me", headers=staying.headers)).status_code == 200
    assert await _snapshot(client, owner_b) == other_tenant


async def test_rows_go_to_transfer_to(api: Api, owner_a: Headers) -> None:
    _, client = api
    leaving = await add_user(client, owner_a, role="Admin")
    heir = await add_user(client, owner_a, role="Member")
    rows = await _rows_owned_by(client, leaving)
    response = await client.delete(f"/users/{leaving.id}", params={"transfer_to": heir.id}, headers=owner_a)
    assert response.status_code == 204, response.text
    for resource in OWNED:
        assert (await _row(client, owner_a, resource, rows[resource]))["owner_id"] == heir.id


async def test_a_bad_transfer_to_is_422_and_changes_nothing(
    api: Api, owner_a: Headers, owner_b: Headers
) -> None:
    _, client = api
    leaving = await add_user(client, owner_a, role="Admin")
    rows = await _rows_owned_by(client, leaving)
    other_tenant_user = (await client.get("/users", headers=owner_b)).json()["items"][0]["id"]
    for bad in (str(uuid.uuid4()), "not-a-uuid", "", leaving.id, other_tenant_user):
        response = await client.delete(f"/users/{leaving.id}", params={"transfer_to": bad}, headers=owner_a)
        assert "transfer_to" in error_fields(assert_problem(response, 422)), bad
    assert (await _row(client, owner_a, "users", leaving.id))["id"] == leaving.id
    for resource in OWNED:
        assert (await _row(client, owner_a, resource, rows[resource]))["owner_id"] == leaving.id
    assert (await client.get("/auth/me", headers=leaving.headers)).status_code == 200


async def test_the_owner_cannot_be_deleted_even_with_transfer_to(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    owner_id = str(tenant_a.tenant.owner_id)
    admin = await add_user(client, owner_a, role="Admin")
    for params in ({}, {"transfer_to": admin.id}):
        response = await client.delete(f"/users/{owner_id}", params=params, headers=admin.headers)
        assert_problem(response, 409)
    assert (await _row(client, owner_a, "users", owner_id))["id"] == owner_id


async def test_user_meta_needs_a_group_and_a_role(api: Api, owner_a: Headers) -> None:
    _, client = api
    valid = (await create_request("user-meta", client, owner_a))["json"]
    for missing in ({"user_groups"}, {"user_roles"}, {"user_groups", "user_roles"}):
        body = {k: v for k, v in valid.items() if k not in missing}
        response = await client.post("/user-meta", json=body, headers=owner_a)
        assert set(error_fields(assert_problem(response, 422))) & missing, response.text
        nulls = await client.post("/user-meta", json={**valid, **dict.fromkeys(missing)}, headers=owner_a)
        assert set(error_fields(assert_problem(nulls, 422))) & missing
    created = await client.post("/user-meta", json={**valid, "owner_id": None}, headers=owner_a)
    assert created.status_code == 201, created.text
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    assert created.json()["owner_id"] == me
    row = created.json()["id"]
    for field in ("user_groups", "user_roles", "owner_id"):
        patched = await client.patch(f"/user-meta/{row}", json={field: None}, headers=owner_a)
        assert field in error_fields(assert_problem(patched, 422))


def test_every_array_of_user_ids_is_cleaned_on_deletion() -> None:
    """An array column of uuids holds user ids (marked, and cleaned when a user is deleted)
    or says what else it holds: a new area's member list cannot be forgotten."""
    marked = {(t.name, c.name) for t, c in user_id_arrays()}
    arrays = {
        (table.name, column.name)
        for table in tenant_metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, ARRAY) and isinstance(column.type.item_type, Uuid)
    }
    not_users = {
        ("documents", "media_ids"),  # media rows, not users
        # A room keeps who was in it (a direct room stays the pair's); a deleted user's
        # token no longer opens it (API.md §9).
        ("chats", "member_ids"),
    }
    assert marked >= {("projects", "member_ids"), ("events", "attendee_ids")}
    assert arrays - not_users == marked


async def test_a_deleted_user_leaves_member_and_attendee_lists(api: Api, owner_a: Headers) -> None:
    _, client = api
    leaving = await add_user(client, owner_a, role="Member")
    staying = await add_user(client, owner_a, role="Member")
    owner = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    project = await client.post(
        "/projects",
        json={"name": f"Team {uuid.uuid4().hex[:8]}", "member_ids": [owner, leaving.id, staying.id]},
        headers=owner_a,
    )
    event = await client.post(
        "/events",
        json={
            "title": "Planning",
            "starts_at": "2026-03-02T09:00:00Z",
            "ends_at": "2026-03-02T10:00:00Z",
            "attendee_ids": [leaving.id, staying.id],
        },
        headers=owner_a,
    )
    assert project.status_code == 201 and event.status_code == 201, (project.text, event.text)

    assert (await client.delete(f"/users/{leaving.id}", headers=owner_a)).status_code == 204

    after = await _row(client, owner_a, "projects", project.json()["id"])
    assert after["member_ids"] == [owner, staying.id]
    assert after["updated_at"] > project.json()["updated_at"]
    attended = await _row(client, owner_a, "events", event.json()["id"])
    assert attended["attendee_ids"] == [staying.id]
    assert attended["updated_at"] > event.json()["updated_at"]


async def test_the_heir_of_a_project_joins_its_members(api: Api, owner_a: Headers) -> None:
    """The owner is always a member (API.md §8): a project handed over keeps that true."""
    _, client = api
    leaving = await add_user(client, owner_a, role="Member")
    heir = await add_user(client, owner_a, role="Member")
    body = {"name": f"Handed {uuid.uuid4().hex[:8]}", "owner_id": leaving.id, "member_ids": [leaving.id]}
    project = await client.post("/projects", json=body, headers=owner_a)
    assert project.status_code == 201, project.text
    gone = await client.delete(f"/users/{leaving.id}", params={"transfer_to": heir.id}, headers=owner_a)
    assert gone.status_code == 204, gone.text
    after = await _row(client, owner_a, "projects", project.json()["id"])
    assert (after["owner_id"], after["member_ids"]) == (heir.id, [heir.id])
    listed = await client.get("/projects", params={"member_id": heir.id}, headers=heir.headers)
    assert [row["id"] for row in listed.json()["items"]] == [project.json()["id"]]


async def test_a_write_of_theirs_in_flight_is_waited_for_and_handed_over(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    _, client = api
    leaving = await add_user(client, owner_a, role="Admin")
    group_id = uuid.uuid4()
    schema = tenant_a.tenant.schema
    with operator_engine.connect() as theirs:
        # As their own create would: the row, holding their user row FOR KEY SHARE until it commits.
        theirs.execute(
            text(
                f'INSERT INTO "{schema}".user_groups (id, name, owner_id, created_at, updated_at)'
                " VALUES (:id, 'In flight', :owner, now(), now())"
            ),
            {"id": group_id, "owner": leaving.id},
        )
        deleting = asyncio.create_task(client.delete(f"/users/{leaving.id}", headers=owner_a))
        await until_a_lock_is_awaited(operator_engine)
        theirs.commit()
    assert (await deleting).status_code == 204
    assert (await _row(client, owner_a, "user-groups", str(group_id)))["owner_id"] == str(
        tenant_a.tenant.owner_id
    )


async def test_a_group_room_handed_over_gains_its_heir_and_keeps_who_was_in_it(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    leaving = await add_user(client, owner_a, role="Member")
    heir = await add_user(client, owner_a, role="Member")
    other = await add_user(client, owner_a, role="Member")
    room = await client.post(
        "/chats", json={"name": "Handed", "member_ids": [other.id]}, headers=leaving.headers
    )
    direct = await client.post(
        "/chats", json={"kind": "direct", "member_ids": [other.id]}, headers=leaving.headers
    )
    assert room.status_code == 201 and direct.status_code == 201, (room.text, direct.text)
    gone = await client.delete(f"/users/{leaving.id}", params={"transfer_to": heir.id}, headers=owner_a)
    assert gone.status_code == 204, gone.text
    handed = await client.get(f"/chats/{room.json()['id']}", headers=heir.headers)
    assert handed.status_code == 200, handed.text
    assert handed.json()["member_ids"] == [leaving.id, other.id, heir.id]
    # A direct room stays the pair's.
    pair = await client.get(f"/chats/{direct.json()['id']}", headers=other.headers)
    assert sorted(pair.json()["member_ids"]) == sorted([leaving.id, other.id])
    # The list as read goes back as it is: members the room already had stay valid.
    same = await client.patch(
        f"/chats/{room.json()['id']}", json={"member_ids": handed.json()["member_ids"]}, headers=heir.headers
    )
    assert same.status_code == 200, same.text
