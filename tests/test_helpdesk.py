"""/help-desk (API.md §10): the ticket workflow, who sees and changes what, and replies
whose internal ones never reach a requester, in lists, counts or search."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api import Api, Headers, TenantUser, add_user, assert_problem, error_fields

pytest_plugins = ["tests.api"]


@pytest.fixture(scope="module")
async def people(api: Api, owner_a: Headers) -> dict[str, TenantUser]:
    _, client = api
    return {
        "agent": await add_user(client, owner_a, role="Admin"),
        "requester": await add_user(client, owner_a, role="Member"),
        "stranger": await add_user(client, owner_a, role="Member"),
    }


async def ticket(client: httpx.AsyncClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    body = {"subject": "Printer on fire", "body": "It is smoking.", **fields}
    response = await client.post("/help-desk", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def patch(
    client: httpx.AsyncClient, headers: Headers, row: dict[str, Any], **change: Any
) -> httpx.Response:
    return await client.patch(f"/help-desk/{row['id']}", json=change, headers=headers)


async def test_status_workflow_and_server_set_times(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    agent = people["agent"]
    row = await ticket(client, owner_a)
    assert row["status"] == "new" and row["solved_at"] is None and row["closed_at"] is None
    assert row["requester_id"] == row["owner_id"]
    # Only solved closes.
    problem = assert_problem(await patch(client, owner_a, row, status="closed"), 409)
    assert problem["detail"] == "This ticket is new: becoming closed needs it to be solved."
    # Solving needs an assignee.
    assert error_fields(assert_problem(await patch(client, owner_a, row, status="solved"), 422)) == {"status"}
    for status in ("open", "pending", "on_hold", "open"):
        moved = await patch(client, owner_a, row, status=status)
        assert moved.status_code == 200 and moved.json()["status"] == status, moved.text
    # Nothing moves back to new: said as such, with the current state.
    back = assert_problem(await patch(client, owner_a, row, status="new"), 409)
    assert back["detail"] == "This ticket is open: becoming new is never allowed." and back["state"] == "open"
    solved = (await patch(client, owner_a, row, status="solved", assignee_id=agent.id)).json()
    assert solved["status"] == "solved" and solved["solved_at"] is not None
    closed = (await patch(client, owner_a, row, status="closed")).json()
    assert closed["closed_at"] is not None and closed["solved_at"] == solved["solved_at"]
    # A closed ticket never changes again, in any way.
    for change in ({"status": "open"}, {"subject": "again"}, {"tags": ["x"]}):
        refused = assert_problem(await patch(client, owner_a, row, **change), 409)
        # It says the one way on: a follow-up.
        assert refused["state"] == "closed" and "follow_up_of" in refused["detail"], refused
    reply = {"body": "hello?", "visibility": "public"}
    assert_problem(await client.post(f"/help-desk/{row['id']}/replies", json=reply, headers=owner_a), 409)
    assert_problem(await client.delete(f"/help-desk/{row['id']}", headers=owner_a), 409)
    # The server sets the times: a client cannot.
    forged = await client.post(
        "/help-desk", json={"subject": "x", "solved_at": "2026-01-01T00:00:00Z"}, headers=owner_a
    )
    assert error_fields(assert_problem(forged, 422)) == {"solved_at"}
    # A follow-up links to the closed ticket; only a closed one.
    follow = await ticket(client, owner_a, follow_up_of=row["id"])
    assert follow["follow_up_of"] == row["id"] and follow["status"] == "new"
    refused = await client.post(
        "/help-desk", json={"subject": "x", "follow_up_of": follow["id"]}, headers=owner_a
    )
    assert error_fields(assert_problem(refused, 422)) == {"follow_up_of"}


async def test_an_agent_files_a_ticket_in_a_status_of_their_choice(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    agent, requester = people["agent"], await add_user(client, owner_a, role="Member")
    filed = await ticket(client, agent.headers, status="open")
    assert filed["status"] == "open" and filed["solved_at"] is None
    solved = await ticket(client, agent.headers, status="solved", assignee_id=agent.id)
    assert solved["status"] == "solved" and solved["solved_at"] is not None
    unassigned = await client.post(
        "/help-desk", json={"subject": "x", "status": "solved"}, headers=agent.headers
    )
    assert error_fields(assert_problem(unassigned, 422)) == {"status"}
    closed = await client.post("/help-desk", json={"subject": "x", "status": "closed"}, headers=agent.headers)
    assert error_fields(assert_problem(closed, 422)) == {"status"}
    # A requester files new tickets only.
    assert (await ticket(client, requester.headers, status="new"))["status"] == "new"
    refused = await client.post(
        "/help-desk", json={"subject": "x", "status": "open"}, headers=requester.headers
    )
    assert_problem(refused, 403)


async def test_a_reopened_ticket_loses_its_solved_time(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    row = await ticket(client, owner_a, assignee_id=people["agent"].id)
    assert (await patch(client, owner_a, row, status="solved")).json()["solved_at"] is not None
    reopened = (await patch(client, owner_a, row, status="open")).json()
    assert reopened["solved_at"] is None


async def test_visibility_requester_assignee_and_manage(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    requester, stranger, agent = people["requester"], people["stranger"], people["agent"]
    mine = await ticket(client, requester.headers)
    assigned = await ticket(client, owner_a, assignee_id=agent.id)
    assert mine["owner_id"] == requester.id
    for who, headers, visible in (
        ("requester", requester.headers, {mine["id"]}),
        ("stranger", stranger.headers, set()),
    ):
        listed = (await client.get("/help-desk", params={"limit": 200}, headers=headers)).json()
        ids = {t["id"] for t in listed["items"]}
        assert ids == visible and listed["total"] == len(visible), who
        assert_problem(await client.get(f"/help-desk/{assigned['id']}", headers=headers), 404)
        assert_problem(await client.get(f"/help-desk/{assigned['id']}/replies", headers=headers), 404)
    assert_problem(await client.get(f"/help-desk/{mine['id']}", headers=stranger.headers), 404)
    assert_problem(await patch(client, stranger.headers, mine, subject="mine now"), 404)
    # The agent (manage) sees both; the owner too.
    for headers in (agent.headers, owner_a):
        assert (await client.get(f"/help-desk/{mine['id']}", headers=headers)).status_code == 200
        assert (await client.get(f"/help-desk/{assigned['id']}", headers=headers)).status_code == 200


async def test_assignee_without_manage_sees_their_ticket(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    """An assignee who later loses manage still sees the ticket assigned to them."""
    _, client = api
    requester = people["requester"]
    # Assigned by SQL-free means: an agent is assigned, then the requester sees it as theirs.
    row = await ticket(client, owner_a, assignee_id=people["agent"].id)
    assert_problem(await client.get(f"/help-desk/{row['id']}", headers=requester.headers), 404)
    assert (await client.get(f"/help-desk/{row['id']}", headers=people["agent"].headers)).status_code == 200


async def test_requesters_change_only_subject_and_body_and_may_solve(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    requester = people["requester"]
    row = await ticket(client, requester.headers)
    renamed = await patch(client, requester.headers, row, subject="Printer fixed?", body="Still smoking")
    assert renamed.status_code == 200 and renamed.json()["subject"] == "Printer fixed?"
    for change in (
        {"priority": "urgent"},
        {"tags": ["vip"]},
        {"status": "open"},
        {"assignee_id": requester.id},
    ):
        assert_problem(await patch(client, requester.headers, row, **change), 403)
    for filed in ({"assignee_id": people["agent"].id}, {"priority": "urgent"}, {"tags": ["vip"]}):
        assert_problem(
            await client.post("/help-desk", json={"subject": "x", **filed}, headers=requester.headers), 403
        )
    # The defaults, sent as such, are no triage.
    defaults = {"subject": "x", "priority": "normal", "tags": []}
    assert (await client.post("/help-desk", json=defaults, headers=requester.headers)).status_code == 201
    # Solving needs an assignee; once an agent has one, the requester may solve.
    assert_problem(await patch(client, requester.headers, row, status="solved"), 422)
    assert (await patch(client, owner_a, row, assignee_id=people["agent"].id)).status_code == 200
    solved = await patch(client, requester.headers, row, status="solved")
    assert solved.status_code == 200 and solved.json()["status"] == "solved"
    # Closing is the agents'.
    assert_problem(await patch(client, requester.headers, row, status="closed"), 403)


async def test_the_assignee_must_hold_manage(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    refused = await client.post(
        "/help-desk", json={"subject": "x", "assignee_id": people["stranger"].id}, headers=owner_a
    )
    assert error_fields(assert_problem(refused, 422)) == {"assignee_id"}
    row = await ticket(client, owner_a)
    assert error_fields(
        assert_problem(await patch(client, owner_a, row, assignee_id=people["requester"].id), 422)
    ) == {"assignee_id"}
    assert (await patch(client, owner_a, row, assignee_id=people["agent"].id)).json()[
        "assignee_id"
    ] == people["agent"].id


async def test_tags_are_lower_cased_deduplicated_and_filtered(api: Api, owner_a: Headers) -> None:
    _, client = api
    row = await ticket(client, owner_a, tags=["Billing", "billing", " VIP ", "vip"])
    assert row["tags"] == ["billing", "vip"]
    changed = (await patch(client, owner_a, row, tags=["URGENT", "Urgent"])).json()
    assert changed["tags"] == ["urgent"]
    found = (await client.get("/help-desk", params={"tag": "Urgent"}, headers=owner_a)).json()
    assert row["id"] in {t["id"] for t in found["items"]}
    too_many = await client.post(
        "/help-desk", json={"subject": "x", "tags": [f"t{i}" for i in range(21)]}, headers=owner_a
    )
    assert error_fields(assert_problem(too_many, 422)) == {"tags"}
    # Twenty distinct ones, one of them twice in another case: twenty tags.
    twenty = await ticket(client, owner_a, tags=[*(f"t{i}" for i in range(20)), "T1"])
    assert len(twenty["tags"]) == 20


async def test_filters_and_priority_sort(api: Api, owner_a: Headers, people: dict[str, TenantUser]) -> None:
    _, client = api
    marker = "zanzibarquux"
    rows = {
        p: await ticket(client, owner_a, priority=p, subject=f"{marker} {p}")
        for p in ("high", "low", "urgent", "normal")
    }
    listed = (
        await client.get("/help-desk", params={"q": marker, "sort": "-priority"}, headers=owner_a)
    ).json()
    assert [t["priority"] for t in listed["items"]] == ["urgent", "high", "normal", "low"]
    assigned = await ticket(client, owner_a, assignee_id=people["agent"].id, subject=marker)
    by_agent = (
        await client.get(
            "/help-desk",
            params={"assignee_id": people["agent"].id, "status": "new", "q": marker},
            headers=owner_a,
        )
    ).json()
    assert [t["id"] for t in by_agent["items"]] == [assigned["id"]]
    by_priority = (
        await client.get(
            "/help-desk", params=[("priority", "low"), ("priority", "high"), ("q", marker)], headers=owner_a
        )
    ).json()
    assert {t["id"] for t in by_priority["items"]} == {rows["low"]["id"], rows["high"]["id"]}
    by_requester = (
        await client.get("/help-desk", params={"requester_id": people["requester"].id}, headers=owner_a)
    ).json()
    assert all(t["requester_id"] == people["requester"].id for t in by_requester["items"])
    bad = await client.get(
        "/help-desk", params={"status": "x", "sort": "subject", "priority_rank": "1"}, headers=owner_a
    )
    assert {"sort", "priority_rank"} <= error_fields(assert_problem(bad, 422))


async def test_internal_replies_reach_only_manage_in_lists_counts_and_search(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    requester, agent = people["requester"], people["agent"]
    row = await ticket(client, requester.headers)
    url = f"/help-desk/{row['id']}/replies"
    public = await client.post(
        url, json={"body": "We are on it", "visibility": "public"}, headers=agent.headers
    )
    assert public.status_code == 201, public.text
    secret = "kumquatsecret"
    internal = await client.post(
        url, json={"body": f"Customer is {secret}", "visibility": "internal"}, headers=agent.headers
    )
    assert internal.status_code == 201 and internal.json()["visibility"] == "internal"
    # Requesters write no internal notes, and visibility is required.
    assert_problem(
        await client.post(url, json={"body": "x", "visibility": "internal"}, headers=requester.headers), 403
    )
    nul = await client.post(url, json={"body": "a\x00b", "visibility": "public"}, headers=requester.headers)
    assert error_fields(assert_problem(nul, 422)) == {"body"}
    assert error_fields(
        assert_problem(await client.post(url, json={"body": "x"}, headers=requester.headers), 422)
    ) == {"visibility"}

    seen = (await client.get(url, headers=requester.headers)).json()
    assert [r["visibility"] for r in seen["items"]] == ["public"] and seen["total"] == 1
    assert secret.encode() not in (await client.get(url, headers=requester.headers)).content
    searched = (await client.get(url, params={"q": secret}, headers=requester.headers)).json()
    assert searched == {"items": [], "total": 0, "limit": 50, "offset": 0}
    past = (await client.get(url, params={"offset": 5}, headers=requester.headers)).json()
    assert past["total"] == 1
    agents_view = (await client.get(url, headers=agent.headers)).json()
    assert agents_view["total"] == 2
    assert (await client.get(url, params={"q": secret}, headers=agent.headers)).json()["total"] == 1

    # Each reply has its own URL (the 201's Location) and ETag; an internal one is the agents'.
    for created in (public, internal):
        assert created.headers["Location"] == f"{url}/{created.json()['id']}"
        by_agent = await client.get(created.headers["Location"], headers=agent.headers)
        assert by_agent.status_code == 200 and by_agent.json() == created.json()
        assert by_agent.headers["ETag"] == created.headers["ETag"]
    assert (await client.get(public.headers["Location"], headers=requester.headers)).json() == public.json()
    hidden = await client.get(internal.headers["Location"], headers=requester.headers)
    assert_problem(hidden, 404)
    assert secret.encode() not in hidden.content
    other = await ticket(client, requester.headers)
    assert_problem(
        await client.get(f"/help-desk/{other['id']}/replies/{public.json()['id']}", headers=agent.headers),
        404,
    )


async def test_a_public_reply_by_the_requester_reopens(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    requester, agent = people["requester"], people["agent"]
    for status in ("pending", "solved"):
        row = await ticket(client, requester.headers)
        assert (
            await patch(client, agent.headers, row, assignee_id=agent.id, status=status)
        ).status_code == 200
        url = f"/help-desk/{row['id']}/replies"
        # The agent's reply leaves the status alone.
        await client.post(url, json={"body": "Any news?", "visibility": "public"}, headers=agent.headers)
        assert (await client.get(f"/help-desk/{row['id']}", headers=agent.headers)).json()["status"] == status
        before = (await client.get(f"/help-desk/{row['id']}", headers=requester.headers)).headers["etag"]
        await client.post(url, json={"body": "internal", "visibility": "internal"}, headers=agent.headers)
        # An internal note does not even move the requester's ETag.
        assert (await client.get(f"/help-desk/{row['id']}", headers=requester.headers)).headers[
            "etag"
        ] == before
        answered = await client.post(
            url, json={"body": "Still broken", "visibility": "public"}, headers=requester.headers
        )
        assert answered.status_code == 201, answered.text
        after = (await client.get(f"/help-desk/{row['id']}", headers=requester.headers)).json()
        assert after["status"] == "open" and after["solved_at"] is None


async def test_requester_id_names_the_owner(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    requester = people["requester"]
    row = await ticket(client, owner_a, requester_id=requester.id)
    assert row["owner_id"] == row["requester_id"] == requester.id
    both = await client.post(
        "/help-desk",
        json={"subject": "x", "requester_id": requester.id, "owner_id": people["agent"].id},
        headers=owner_a,
    )
    assert error_fields(assert_problem(both, 422)) == {"requester_id"}
    # The rules across fields, named with a field that fails its type, in one answer.
    tags = [f"t{n}" for n in range(21)]
    body = {"subject": "", "requester_id": requester.id, "owner_id": people["agent"].id, "tags": tags}
    mixed = await client.post("/help-desk", json={**body, "status": "solved"}, headers=owner_a)
    assert error_fields(assert_problem(mixed, 422)) == {"subject", "requester_id", "tags", "status"}
    # A requester no user is: named as sent, alone or beside another bad reference.
    nobody = str(uuid.uuid4())
    for sent, named in (
        ({"requester_id": nobody}, {"requester_id"}),
        ({"requester_id": nobody, "follow_up_of": nobody}, {"requester_id", "follow_up_of"}),
        ({"owner_id": nobody}, {"owner_id"}),
    ):
        refused = await client.post("/help-desk", json={"subject": "x", **sent}, headers=owner_a)
        assert error_fields(assert_problem(refused, 422)) == named, sent
    # Filing for someone else needs manage.
    assert_problem(
        await client.post(
            "/help-desk",
            json={"subject": "x", "requester_id": people["stranger"].id},
            headers=requester.headers,
        ),
        403,
    )
