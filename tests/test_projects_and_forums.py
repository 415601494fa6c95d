"""Projects and forums (API.md §8): membership, archiving, threads, pinning and locking."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.api import (
    Api,
    Headers,
    TenantUser,
    add_user,
    assert_problem,
    create,
    error_fields,
    until_a_lock_is_awaited,
    user_with,
)
from tests.conftest import MadeTenant

pytest_plugins = ["tests.api"]


@pytest.fixture(scope="module")
async def people(api: Api, owner_a: Headers) -> dict[str, TenantUser]:
    _, client = api
    return {name: await add_user(client, owner_a, role="Member") for name in ("alice", "bob", "carol")}


def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: Headers
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def ids(client: httpx.AsyncClient, path: str, headers: Headers, **params: Any) -> list[str]:
    response = await client.get(path, params={"limit": 200, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["items"]]


async def project_of(
    client: httpx.AsyncClient, owner: Headers, members: list[TenantUser], owner_id: str | None = None
) -> dict[str, Any]:
    me = (await client.get("/auth/me", headers=owner)).json()["user"]["id"]
    body = {"name": f"Project {_tag()}", "member_ids": [owner_id or me, *(m.id for m in members)]}
    if owner_id:
        body["owner_id"] = owner_id
    return await post(client, "/projects", body, owner)


# --- projects ------------------------------------------------------------------------------


async def test_project_names_are_unique_in_any_case(api: Api, owner_a: Headers) -> None:
    _, client = api
    name = f"Roadmap {_tag()}"
    first = await post(client, "/projects", {"name": name}, owner_a)
    assert first["status"] == "active" and first["member_ids"] == [first["owner_id"]]
    taken = assert_problem(await client.post("/projects", json={"name": name.upper()}, headers=owner_a), 409)
    # Says what exists already, and names the field.
    assert taken["detail"] == "A project with this name already exists."
    assert error_fields(taken) == {"name"}
    other = await post(client, "/projects", {"name": f"Other {_tag()}"}, owner_a)
    renamed = await client.patch(f"/projects/{other['id']}", json={"name": name.lower()}, headers=owner_a)
    assert_problem(renamed, 409)


async def test_members_decide_who_sees_a_project(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    project = await project_of(client, owner_a, [alice])
    assert project["id"] in await ids(client, "/projects", alice.headers)
    assert project["id"] in await ids(client, "/projects", alice.headers, member_id=alice.id)
    assert project["id"] not in await ids(client, "/projects", bob.headers)
    assert project["id"] not in await ids(client, "/projects", owner_a, member_id=bob.id)
    assert (await client.get(f"/projects/{project['id']}", headers=alice.headers)).status_code == 200
    assert_problem(await client.get(f"/projects/{project['id']}", headers=bob.headers), 404)
    # The owner (manage) sees every project, member or not.
    assert project["id"] in await ids(client, "/projects", owner_a, member_id=alice.id)

    # Adding bob shows it to him; removing alice hides it from her.
    changed = await client.patch(
        f"/projects/{project['id']}", json={"member_ids": [project["owner_id"], bob.id]}, headers=owner_a
    )
    assert changed.status_code == 200, changed.text
    assert (await client.get(f"/projects/{project['id']}", headers=bob.headers)).status_code == 200
    assert_problem(await client.get(f"/projects/{project['id']}", headers=alice.headers), 404)


async def test_the_owner_is_always_a_member(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    without_owner = await client.post(
        "/projects", json={"name": f"P {_tag()}", "member_ids": [alice.id]}, headers=owner_a
    )
    assert "member_ids" in error_fields(assert_problem(without_owner, 422))
    project = await project_of(client, owner_a, [alice])
    dropped = await client.patch(
        f"/projects/{project['id']}", json={"member_ids": [alice.id]}, headers=owner_a
    )
    assert "member_ids" in error_fields(assert_problem(dropped, 422))
    unknown = await client.post(
        "/projects",
        json={"name": f"P {_tag()}", "member_ids": [project["owner_id"], str(uuid.uuid4())]},
        headers=owner_a,
    )
    assert "member_ids" in error_fields(assert_problem(unknown, 422))
    # A user listed twice, named with a field that fails its type, in one answer.
    twice = await client.post(
        "/projects", json={"name": " P", "member_ids": [project["owner_id"]] * 2}, headers=owner_a
    )
    assert error_fields(assert_problem(twice, 422)) == {"name", "member_ids"}
    # A new owner joins the members.
    handed = await client.patch(
        f"/projects/{project['id']}", json={"owner_id": people["bob"].id}, headers=owner_a
    )
    assert handed.status_code == 200, handed.text
    assert people["bob"].id in handed.json()["member_ids"]


async def test_archived_projects_and_their_discussions_are_read_only(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    project = await project_of(client, owner_a, [alice])
    topic = await post(
        client,
        "/project-discussions",
        {"project_id": project["id"], "title": "T", "body": "b"},
        alice.headers,
    )
    archived = await client.patch(f"/projects/{project['id']}", json={"status": "archived"}, headers=owner_a)
    assert archived.status_code == 200 and archived.json()["status"] == "archived"

    problem = assert_problem(
        await client.patch(f"/projects/{project['id']}", json={"name": "New"}, headers=owner_a), 409
    )
    assert "archived" in problem["detail"]
    assert_problem(await client.delete(f"/projects/{project['id']}", headers=owner_a), 409)
    reply = {"project_id": project["id"], "parent_id": topic["id"], "body": "r"}
    assert_problem(await client.post("/project-discussions", json=reply, headers=alice.headers), 409)
    new_topic = {"project_id": project["id"], "title": "T2", "body": "b"}
    assert_problem(await client.post("/project-discussions", json=new_topic, headers=alice.headers), 409)
    assert_problem(
        await client.patch(f"/project-discussions/{topic['id']}", json={"body": "x"}, headers=alice.headers),
        409,
    )
    assert_problem(await client.delete(f"/project-discussions/{topic['id']}", headers=alice.headers), 409)
    # Still readable.
    assert (await client.get(f"/project-discussions/{topic['id']}", headers=alice.headers)).status_code == 200

    active = await client.patch(f"/projects/{project['id']}", json={"status": "active"}, headers=owner_a)
    assert active.status_code == 200, active.text
    assert (await client.post("/project-discussions", json=reply, headers=alice.headers)).status_code == 201


async def test_discussions_are_seen_exactly_by_those_who_see_the_project(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    # Bob sees discussions elsewhere: that shows him none of this project's.
    bobs = await project_of(client, owner_a, [bob])
    await post(
        client, "/project-discussions", {"project_id": bobs["id"], "title": "T", "body": "b"}, bob.headers
    )
    project = await project_of(client, owner_a, [alice])
    topic = await post(
        client,
        "/project-discussions",
        {"project_id": project["id"], "title": "T", "body": "b"},
        alice.headers,
    )
    assert topic["id"] in await ids(client, "/project-discussions", alice.headers, project_id=project["id"])
    assert topic["id"] not in await ids(client, "/project-discussions", bob.headers)
    assert await ids(client, "/project-discussions", bob.headers, project_id=project["id"]) == []
    assert_problem(await client.get(f"/project-discussions/{topic['id']}", headers=bob.headers), 404)
    assert_problem(
        await client.patch(f"/project-discussions/{topic['id']}", json={"body": "x"}, headers=bob.headers),
        404,
    )
    # A project one cannot see is no reference at all (API.md §5).
    refused = await client.post(
        "/project-discussions",
        json={"project_id": project["id"], "title": "T", "body": "b"},
        headers=bob.headers,
    )
    assert "project_id" in error_fields(assert_problem(refused, 422))


async def test_members_edit_and_delete_only_their_own_discussions(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    project = await project_of(client, owner_a, [alice, bob])
    topic = await post(
        client,
        "/project-discussions",
        {"project_id": project["id"], "title": "T", "body": "b"},
        alice.headers,
    )
    assert_problem(
        await client.patch(f"/project-discussions/{topic['id']}", json={"body": "x"}, headers=bob.headers),
        403,
    )
    assert_problem(await client.delete(f"/project-discussions/{topic['id']}", headers=bob.headers), 403)
    edited = await client.patch(
        f"/project-discussions/{topic['id']}", json={"body": "x"}, headers=alice.headers
    )
    assert edited.status_code == 200 and edited.json()["body"] == "x"
    assert (
        await client.delete(f"/project-discussions/{topic['id']}", headers=alice.headers)
    ).status_code == 204


# --- threads (both kinds) ------------------------------------------------------------------


async def container(client: httpx.AsyncClient, owner: Headers, kind: str, members: list[TenantUser]) -> str:
    if kind == "project":
        return str((await project_of(client, owner, members))["id"])
    return await create(client, owner, "forums")


async def board(
    client: httpx.AsyncClient, owner: Headers, kind: str, members: list[TenantUser] | None = None
) -> tuple[str, str, str]:
    """The discussions' path, their container field, and a new container of ``kind``."""
    return f"/{kind}-discussions", f"{kind}_id", await container(client, owner, kind, members or [])


@pytest.mark.parametrize("kind", ["project", "forum"])
async def test_thread_shape_rules(
    api: Api, owner_a: Headers, people: dict[str, TenantUser], kind: str
) -> None:
    _, client = api
    path, field, here = await board(client, owner_a, kind)
    elsewhere = await container(client, owner_a, kind, [])
    untitled = await client.post(path, json={field: here, "body": "b"}, headers=owner_a)
    assert "title" in error_fields(assert_problem(untitled, 422))
    topic = await post(client, path, {field: here, "title": "T", "body": "b"}, owner_a)
    other_topic = await post(client, path, {field: elsewhere, "title": "T", "body": "b"}, owner_a)
    reply = await post(client, path, {field: here, "parent_id": topic["id"], "body": "r"}, owner_a)
    assert reply["title"] is None and reply["parent_id"] == topic["id"]

    cases = [
        ({field: here, "parent_id": topic["id"], "title": "No", "body": "r"}, "title"),
        ({field: here, "parent_id": reply["id"], "body": "r"}, "parent_id"),
        ({field: here, "parent_id": other_topic["id"], "body": "r"}, "parent_id"),
        ({field: here, "parent_id": str(uuid.uuid4()), "body": "r"}, "parent_id"),
        ({field: here, "title": "T", "body": ""}, "body"),
        ({field: here, "title": "T" * 201, "body": "b"}, "title"),
    ]
    if kind == "forum":
        cases.append(({field: here, "parent_id": topic["id"], "pinned": True, "body": "r"}, "pinned"))
        # Even false: a reply has neither, on create as on PATCH.
        cases.append(({field: here, "parent_id": topic["id"], "locked": False, "body": "r"}, "locked"))
    for body, bad in cases:
        assert bad in error_fields(
            assert_problem(await client.post(path, json=body, headers=owner_a), 422)
        ), body
    titled = await client.patch(f"{path}/{reply['id']}", json={"title": "No"}, headers=owner_a)
    assert "title" in error_fields(assert_problem(titled, 422))
    # The shape named with a field that fails its type, and with a missing container.
    mixed = [
        ({field: here, "body": ""}, {"body", "title"}),
        ({field: here, "parent_id": topic["id"], "title": "No", "body": 5}, {"body", "title"}),
        ({field: str(uuid.uuid4()), "body": "b"}, {field, "title"}),
        # A reply's shape and its parent's: both named (a reply to a reply, with a title).
        ({field: here, "parent_id": reply["id"], "title": "No", "body": "b"}, {"parent_id", "title"}),
        # A missing container hides no bad parent: both named, whatever is wrong with it.
        ({field: str(uuid.uuid4()), "parent_id": str(uuid.uuid4()), "body": "b"}, {field, "parent_id"}),
        ({field: str(uuid.uuid4()), "parent_id": reply["id"], "body": "b"}, {field, "parent_id"}),
        (
            {field: str(uuid.uuid4()), "parent_id": topic["id"], "title": "No", "body": "b"},
            {field, "parent_id", "title"},
        ),
    ]
    for body, named in mixed:
        assert error_fields(assert_problem(await client.post(path, json=body, headers=owner_a), 422)) == named
    assert (await client.get(f"{path}/{topic['id']}", headers=owner_a)).json()["reply_count"] == 1


@pytest.mark.parametrize("kind", ["project", "forum"])
async def test_replies_are_counted_listed_oldest_first_and_go_with_their_topic(
    api: Api, owner_a: Headers, people: dict[str, TenantUser], kind: str
) -> None:
    _, client = api
    alice = people["alice"]
    path, field, here = await board(client, owner_a, kind, [alice])
    topic = await post(client, path, {field: here, "title": "T", "body": "b"}, owner_a)
    replies = [
        await post(client, path, {field: here, "parent_id": topic["id"], "body": f"r{i}"}, alice.headers)
        for i in range(3)
    ]
    listed = await ids(client, path, owner_a, parent_id=topic["id"])
    assert listed == [r["id"] for r in replies]
    assert await ids(client, path, owner_a, **{field: here, "parent_id": "null"}) == [topic["id"]]
    both = await ids(client, path, owner_a, **{field: here, "parent_id": ["null", topic["id"]]})
    assert set(both) == {topic["id"], *(r["id"] for r in replies)}
    row = (await client.get(f"{path}/{topic['id']}", headers=owner_a)).json()
    assert row["reply_count"] == 3 and row["last_reply_at"] == replies[-1]["created_at"]

    # Deleting the latest reply: counted down, and the latest activity is the one before.
    assert (await client.delete(f"{path}/{replies[-1]['id']}", headers=alice.headers)).status_code == 204
    row = (await client.get(f"{path}/{topic['id']}", headers=owner_a)).json()
    assert row["reply_count"] == 2 and row["last_reply_at"] == replies[-2]["created_at"]
    assert_problem(await client.delete(f"{path}/{replies[-1]['id']}", headers=alice.headers), 404)

    assert (await client.delete(f"{path}/{topic['id']}", headers=owner_a)).status_code == 204
    for reply in replies[:2]:
        assert_problem(await client.get(f"{path}/{reply['id']}", headers=owner_a), 404)


@pytest.mark.parametrize("kind", ["project", "forum"])
async def test_concurrent_replies_are_all_counted(
    api: Api, owner_a: Headers, people: dict[str, TenantUser], kind: str
) -> None:
    _, client = api
    path, field, here = await board(client, owner_a, kind)
    topic = await post(client, path, {field: here, "title": "Busy", "body": "b"}, owner_a)
    body = {field: here, "parent_id": topic["id"], "body": "me too"}
    answers = await asyncio.gather(*(client.post(path, json=body, headers=owner_a) for _ in range(20)))
    assert [a.status_code for a in answers] == [201] * 20
    row = (await client.get(f"{path}/{topic['id']}", headers=owner_a)).json()
    assert row["reply_count"] == 20
    assert row["last_reply_at"] == max(a.json()["created_at"] for a in answers)


@pytest.mark.parametrize("kind", ["project", "forum"])
async def test_q_searches_titles_and_bodies(api: Api, owner_a: Headers, kind: str) -> None:
    _, client = api
    path, field, here = await board(client, owner_a, kind)
    word = f"zq{_tag()}"
    titled = await post(client, path, {field: here, "title": f"About {word}", "body": "b"}, owner_a)
    bodied = await post(
        client, path, {field: here, "title": "Other", "body": f"mentions {word} here"}, owner_a
    )
    await post(client, path, {field: here, "title": "Unrelated", "body": "nothing"}, owner_a)
    assert set(await ids(client, path, owner_a, q=word)) == {titled["id"], bodied["id"]}


# --- forums --------------------------------------------------------------------------------


async def test_forum_names_are_unique_in_any_case(api: Api, owner_a: Headers) -> None:
    _, client = api
    name = f"General {_tag()}"
    await post(client, "/forums", {"name": name}, owner_a)
    assert_problem(await client.post("/forums", json={"name": name.swapcase()}, headers=owner_a), 409)


async def test_pinning_and_locking_need_manage_and_locked_topics_take_no_replies(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    forum = await create(client, owner_a, "forums")
    pinned = {"forum_id": forum, "title": "Pinned", "body": "b", "pinned": True}
    assert_problem(await client.post("/forum-discussions", json=pinned, headers=alice.headers), 403)
    own = await post(
        client, "/forum-discussions", {"forum_id": forum, "title": "Mine", "body": "b"}, alice.headers
    )
    for change in ({"pinned": True}, {"locked": True}):
        assert_problem(
            await client.patch(f"/forum-discussions/{own['id']}", json=change, headers=alice.headers), 403
        )
    locked = await client.patch(f"/forum-discussions/{own['id']}", json={"locked": True}, headers=owner_a)
    assert locked.status_code == 200 and locked.json()["locked"] is True
    reply = {"forum_id": forum, "parent_id": own["id"], "body": "r"}
    for who in (alice.headers, owner_a):
        assert_problem(await client.post("/forum-discussions", json=reply, headers=who), 409)
    assert (await client.get(f"/forum-discussions/{own['id']}", headers=owner_a)).json()["reply_count"] == 0
    await client.patch(f"/forum-discussions/{own['id']}", json={"locked": False}, headers=owner_a)
    assert (await client.post("/forum-discussions", json=reply, headers=alice.headers)).status_code == 201


async def test_a_lock_answers_the_topic_as_written_and_refuses_every_later_reply(
    api: Api, owner_a: Headers
) -> None:
    """Replies in flight when a moderator locks a topic either count before the lock (in its
    answer) or are refused after it; the lock's answer showed a count read before it waited."""
    _, client = api
    forum = await create(client, owner_a, "forums")
    topic = await post(
        client, "/forum-discussions", {"forum_id": forum, "title": "Busy", "body": "b"}, owner_a
    )
    reply = {"forum_id": forum, "parent_id": topic["id"], "body": "r"}

    async def lock_soon() -> httpx.Response:
        await asyncio.sleep(0.02)
        return await client.patch(f"/forum-discussions/{topic['id']}", json={"locked": True}, headers=owner_a)

    *replies, locked = await asyncio.gather(
        *(client.post("/forum-discussions", json=reply, headers=owner_a) for _ in range(40)), lock_soon()
    )
    assert locked.status_code == 200, locked.text
    accepted = [r for r in replies if r.status_code == 201]
    assert all(r.status_code in (201, 409) for r in replies)
    assert locked.json()["reply_count"] == len(accepted)
    final = (await client.get(f"/forum-discussions/{topic['id']}", headers=owner_a)).json()
    assert final["reply_count"] == len(accepted) and final["updated_at"] == locked.json()["updated_at"]
    assert all(r.json()["created_at"] <= locked.json()["updated_at"] for r in accepted)


async def test_a_write_undone_by_a_deadlock_is_a_409_to_send_again(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    _, client = api
    forum = await create(client, owner_a, "forums")
    topic = await post(client, "/forum-discussions", {"forum_id": forum, "title": "T", "body": "b"}, owner_a)
    schema = tenant_a.tenant.schema
    with operator_engine.connect() as hold:
        # The other side of the cycle: it holds the topic, then wants the forum the reply holds.
        hold.execute(text("SET LOCAL deadlock_timeout = '30s'"))
        hold.execute(
            text(f'SELECT 1 FROM "{schema}".forum_discussions WHERE id = :id FOR UPDATE'), {"id": topic["id"]}
        )
        reply = {"forum_id": forum, "parent_id": topic["id"], "body": "r"}
        answer = asyncio.create_task(client.post("/forum-discussions", json=reply, headers=owner_a))
        await until_a_lock_is_awaited(operator_engine)
        hold.execute(text(f'SELECT 1 FROM "{schema}".forums WHERE id = :id FOR UPDATE'), {"id": forum})
        hold.rollback()
    refused = assert_problem(await answer, 409)
    assert refused["type"] == "conflict" and "Send it again" in refused["detail"]
    again = await client.post("/forum-discussions", json=reply, headers=owner_a)
    assert again.status_code == 201, again.text


async def test_topics_list_pinned_first_then_by_latest_activity(api: Api, owner_a: Headers) -> None:
    _, client = api
    forum = await create(client, owner_a, "forums")
    topics = [
        await post(client, "/forum-discussions", {"forum_id": forum, "title": f"T{i}", "body": "b"}, owner_a)
        for i in range(4)
    ]
    pinned = await post(
        client, "/forum-discussions", {"forum_id": forum, "title": "P", "body": "b", "pinned": True}, owner_a
    )
    # A reply makes the oldest topic the most recently active.
    reply = {"forum_id": forum, "parent_id": topics[0]["id"], "body": "bump"}
    await post(client, "/forum-discussions", reply, owner_a)
    listed = await ids(client, "/forum-discussions", owner_a, forum_id=forum, parent_id="null")
    assert listed == [pinned["id"], topics[0]["id"], topics[3]["id"], topics[2]["id"], topics[1]["id"]]


async def test_projects_manage_not_discussions_manage_sees_every_discussion(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    """Discussions are seen exactly by those who see the project: ``projects:manage``
    lifts the rule, ``project-discussions:manage`` alone does not."""
    _, client = api
    project = await project_of(client, owner_a, [people["alice"]])
    topic = await post(
        client, "/project-discussions", {"project_id": project["id"], "title": "T", "body": "b"}, owner_a
    )
    moderator = await user_with(client, owner_a, ["project-discussions:manage"])
    manager = await user_with(client, owner_a, ["projects:manage", "project-discussions:read"])
    assert_problem(await client.get(f"/project-discussions/{topic['id']}", headers=moderator.headers), 404)
    assert topic["id"] not in await ids(client, "/project-discussions", moderator.headers)
    assert (
        await client.get(f"/project-discussions/{topic['id']}", headers=manager.headers)
    ).status_code == 200
    assert topic["id"] in await ids(client, "/project-discussions", manager.headers)


async def test_project_search_and_status_filter(api: Api, owner_a: Headers) -> None:
    _, client = api
    word = f"zq{_tag()}"
    found = await post(client, "/projects", {"name": f"P {_tag()}", "description": f"about {word}"}, owner_a)
    await client.patch(f"/projects/{found['id']}", json={"status": "archived"}, headers=owner_a)
    assert await ids(client, "/projects", owner_a, q=word) == [found["id"]]
    assert await ids(client, "/projects", owner_a, q=word, status="active") == []
    assert await ids(client, "/projects", owner_a, q=word, status="archived") == [found["id"]]
    bad = await client.get("/projects", params={"member_id": "nobody"}, headers=owner_a)
    assert "member_id" in error_fields(assert_problem(bad, 422))
    bad = await client.get("/project-discussions", params={"parent_id": "none"}, headers=owner_a)
    assert "parent_id" in error_fields(assert_problem(bad, 422))


async def test_a_missing_container_and_a_missing_title_are_named_in_one_422(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    for path, container in (("/project-discussions", "project_id"), ("/forum-discussions", "forum_id")):
        response = await client.post(path, json={container: str(uuid.uuid4()), "body": "b"}, headers=owner_a)
        assert error_fields(assert_problem(response, 422)) == {container, "title"}, path


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/forum-discussions", {"title": "Blank", "body": " \n\t "}),
        ("/project-discussions", {"title": "Blank", "body": "   "}),
    ],
)
async def test_a_post_of_spaces_alone_is_refused(
    api: Api, owner_a: Headers, path: str, body: dict[str, Any]
) -> None:
    _, client = api
    container = (
        {"forum_id": await create(client, owner_a, "forums")}
        if path.startswith("/forum")
        else {"project_id": (await project_of(client, owner_a, []))["id"]}
    )
    refused = assert_problem(await client.post(path, json={**container, **body}, headers=owner_a), 422)
    assert refused["errors"] == [
        {"field": "body", "message": "must contain more than spaces", "source": "body"}
    ]
