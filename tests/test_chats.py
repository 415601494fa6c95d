"""Chats (API.md §9), over HTTP: rooms, direct rooms, messages, threads, read state."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from atrium.tenants.chats import events
from atrium.tenants.chats.live import _Order, forget_idle
from tests.api import Api, Headers, TenantUser, add_user, assert_problem, error_fields, user_with

pytest_plugins = ["tests.api"]


@pytest.fixture(scope="module")
async def people(api: Api, owner_a: Headers) -> dict[str, TenantUser]:
    _, client = api
    return {name: await add_user(client, owner_a, role="Member") for name in ("alice", "bob", "carol")}


def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: Headers, status: int = 201
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


async def room(client: httpx.AsyncClient, headers: Headers, members: list[TenantUser]) -> dict[str, Any]:
    body = {"name": f"Room {_tag()}", "member_ids": [m.id for m in members]}
    return await post(client, "/chats", body, headers)


async def say(client: httpx.AsyncClient, chat: str, headers: Headers, body: str = "hi", **extra: Any) -> dict:
    return await post(client, f"/chats/{chat}/messages", {"body": body, **extra}, headers)


async def room_ids(client: httpx.AsyncClient, headers: Headers) -> list[str]:
    response = await client.get("/chats", params={"limit": 200}, headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["items"]]


# --- rooms -------------------------------------------------------------------------------------


async def test_only_members_see_a_room_and_the_creator_is_one(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    # Alice leaves herself out of the list: she is added, as the creator always is.
    chat = await post(client, "/chats", {"name": "Lunch", "member_ids": [bob.id]}, alice.headers)
    assert set(chat["member_ids"]) == {alice.id, bob.id} and chat["owner_id"] == alice.id
    assert chat["kind"] == "group" and chat["unread_count"] == 0
    assert chat["id"] in await room_ids(client, bob.headers)
    assert chat["id"] not in await room_ids(client, people["carol"].headers)
    assert_problem(await client.get(f"/chats/{chat['id']}", headers=people["carol"].headers), 404)
    assert_problem(
        await client.post(
            f"/chats/{chat['id']}/messages", json={"body": "x"}, headers=people["carol"].headers
        ),
        404,
    )
    # chats:manage (the owner) sees every room.
    assert chat["id"] in await room_ids(client, owner_a)
    # The owner stays a member.
    dropped = await client.patch(f"/chats/{chat['id']}", json={"member_ids": [bob.id]}, headers=alice.headers)
    assert "member_ids" in error_fields(assert_problem(dropped, 422))


async def test_a_group_room_needs_a_name_and_real_members(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    assert "name" in error_fields(
        assert_problem(await client.post("/chats", json={}, headers=alice.headers), 422)
    )
    stranger = await client.post(
        "/chats", json={"name": "x", "member_ids": [str(uuid.uuid4())]}, headers=alice.headers
    )
    assert "member_ids" in error_fields(assert_problem(stranger, 422))
    twice = await client.post(
        "/chats", json={"name": "x", "member_ids": [alice.id, alice.id]}, headers=alice.headers
    )
    assert "member_ids" in error_fields(assert_problem(twice, 422))
    # No name for a group, named with a member id that is not one.
    unnamed = await client.post("/chats", json={"member_ids": ["nobody"]}, headers=alice.headers)
    assert error_fields(assert_problem(unnamed, 422)) == {"name", "member_ids[0]"}


async def test_one_direct_room_per_pair(api: Api, owner_a: Headers) -> None:
    _, client = api
    dana, eve = await add_user(client, owner_a, role="Member"), await add_user(client, owner_a, role="Member")
    first = await post(client, "/chats", {"kind": "direct", "member_ids": [eve.id]}, dana.headers)
    assert first["name"] is None and set(first["member_ids"]) == {dana.id, eve.id}
    # Either side creating it again gets the same room, with 200.
    again = await post(client, "/chats", {"kind": "direct", "member_ids": [dana.id]}, eve.headers, status=200)
    assert again["id"] == first["id"]
    both = await post(
        client, "/chats", {"kind": "direct", "member_ids": [dana.id, eve.id]}, dana.headers, 200
    )
    assert both["id"] == first["id"]
    # Concurrent creates of a new pair make one room.
    frank = await add_user(client, owner_a, role="Member")
    answers = await asyncio.gather(
        *(
            client.post("/chats", json={"kind": "direct", "member_ids": [frank.id]}, headers=dana.headers)
            for _ in range(5)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    # Exactly two members, no name, and they never change.
    three = await client.post(
        "/chats", json={"kind": "direct", "member_ids": [eve.id, frank.id]}, headers=dana.headers
    )
    assert "member_ids" in error_fields(assert_problem(three, 422))
    alone = await client.post("/chats", json={"kind": "direct", "member_ids": []}, headers=dana.headers)
    assert "member_ids" in error_fields(assert_problem(alone, 422))
    named = await client.post(
        "/chats", json={"kind": "direct", "name": "x", "member_ids": [eve.id]}, headers=dana.headers
    )
    assert "name" in error_fields(assert_problem(named, 422))
    moved = await client.patch(
        f"/chats/{first['id']}", json={"member_ids": [dana.id, frank.id]}, headers=dana.headers
    )
    assert "member_ids" in error_fields(assert_problem(moved, 422))


# --- messages ----------------------------------------------------------------------------------


async def test_seq_is_strictly_increasing_under_concurrent_posts(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    chat = await room(client, alice.headers, [bob])
    posts = [
        client.post(
            f"/chats/{chat['id']}/messages", json={"body": f"m{i}"}, headers=(alice, bob)[i % 2].headers
        )
        for i in range(30)
    ]
    answers = await asyncio.gather(*posts)
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers if a.status_code != 201]
    assert sorted(a.json()["seq"] for a in answers) == list(range(1, 31))
    listed = (
        await client.get(f"/chats/{chat['id']}/messages", params={"limit": 200}, headers=bob.headers)
    ).json()
    assert [m["seq"] for m in listed["items"]] == list(range(30, 0, -1)) and listed["limit"] == 200
    after = (
        await client.get(
            f"/chats/{chat['id']}/messages", params={"after": 10, "limit": 5}, headers=bob.headers
        )
    ).json()
    assert [m["seq"] for m in after["items"]] == [11, 12, 13, 14, 15]
    before = (
        await client.get(
            f"/chats/{chat['id']}/messages", params={"before": 10, "limit": 3}, headers=bob.headers
        )
    ).json()
    assert [m["seq"] for m in before["items"]] == [9, 8, 7]
    default = (await client.get(f"/chats/{chat['id']}/messages", headers=bob.headers)).json()
    assert default["limit"] == 50
    refreshed = (await client.get(f"/chats/{chat['id']}", headers=bob.headers)).json()
    assert refreshed["last_seq"] == 30 and refreshed["last_message_at"] is not None


async def test_bad_list_parameters_and_bodies_are_422(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    chat = await room(client, alice.headers, [])
    bad = await client.get(
        f"/chats/{chat['id']}/messages", params={"limit": 0, "before": "x", "what": 1}, headers=alice.headers
    )
    assert error_fields(assert_problem(bad, 422)) == {"limit", "before", "what"}
    too_long = await client.post(
        f"/chats/{chat['id']}/messages", json={"body": "x" * 4001}, headers=alice.headers
    )
    assert "body" in error_fields(assert_problem(too_long, 422))
    assert (
        await client.post(f"/chats/{chat['id']}/messages", json={"body": "x" * 4000}, headers=alice.headers)
    ).status_code == 201
    empty = await client.post(f"/chats/{chat['id']}/messages", json={"body": ""}, headers=alice.headers)
    assert "body" in error_fields(assert_problem(empty, 422))
    nul = await client.post(f"/chats/{chat['id']}/messages", json={"body": "a\u0000b"}, headers=alice.headers)
    assert "body" in error_fields(assert_problem(nul, 422))
    # A refused post takes no seq.
    assert (await say(client, chat["id"], alice.headers))["seq"] == 2


async def test_threads_are_one_level_deep(api: Api, owner_a: Headers, people: dict[str, TenantUser]) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    chat = await room(client, alice.headers, [bob])
    top = await say(client, chat["id"], alice.headers, "question")
    reply = await say(client, chat["id"], bob.headers, "answer", parent_id=top["id"])
    assert reply["parent_id"] == top["id"]
    deeper = await client.post(
        f"/chats/{chat['id']}/messages", json={"body": "x", "parent_id": reply["id"]}, headers=alice.headers
    )
    assert "parent_id" in error_fields(assert_problem(deeper, 422))
    other = await room(client, alice.headers, [])
    elsewhere = await client.post(
        f"/chats/{other['id']}/messages", json={"body": "x", "parent_id": top["id"]}, headers=alice.headers
    )
    assert "parent_id" in error_fields(assert_problem(elsewhere, 422))


async def test_authors_edit_and_delete_their_own_and_manage_anyones(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    chat = await room(client, alice.headers, [bob])
    mine = await say(client, chat["id"], bob.headers, "tpyo")
    path = f"/chats/{chat['id']}/messages/{mine['id']}"
    assert_problem(await client.patch(path, json={"body": "x"}, headers=alice.headers), 403)
    assert_problem(await client.delete(path, headers=alice.headers), 403)
    # Not a member of the room: not there.
    assert_problem(await client.patch(path, json={"body": "x"}, headers=people["carol"].headers), 404)
    edited = await client.patch(path, json={"body": "typo"}, headers=bob.headers)
    assert edited.status_code == 200 and edited.json()["body"] == "typo" and edited.json()["edited_at"]
    too_long = await client.patch(path, json={"body": "x" * 4001}, headers=bob.headers)
    assert "body" in error_fields(assert_problem(too_long, 422))
    moderated = await client.patch(path, json={"body": "moderated"}, headers=owner_a)
    assert moderated.status_code == 200
    later = await say(client, chat["id"], alice.headers, "later")
    assert (await client.delete(path, headers=bob.headers)).status_code == 204
    listed = (await client.get(f"/chats/{chat['id']}/messages", headers=alice.headers)).json()["items"]
    gone = next(m for m in listed if m["id"] == mine["id"])
    assert gone["deleted"] and gone["body"] == "" and gone["seq"] == mine["seq"] < later["seq"]
    assert_problem(await client.patch(path, json={"body": "back"}, headers=bob.headers), 409)
    # Another room's message id under this room: not there.
    other = await room(client, alice.headers, [])
    assert_problem(await client.delete(f"/chats/{other['id']}/messages/{mine['id']}", headers=owner_a), 404)
    manager = await user_with(client, owner_a, ["chats:manage"])
    assert (
        await client.delete(f"/chats/{chat['id']}/messages/{later['id']}", headers=manager.headers)
    ).status_code == 204


async def test_a_retried_post_with_an_idempotency_key_posts_once(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    chat = await room(client, alice.headers, [])
    headers = {**alice.headers, "Idempotency-Key": f"post-{_tag()}"}
    first = await client.post(f"/chats/{chat['id']}/messages", json={"body": "once"}, headers=headers)
    again = await client.post(f"/chats/{chat['id']}/messages", json={"body": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    listed = (await client.get(f"/chats/{chat['id']}/messages", headers=alice.headers)).json()["items"]
    assert [m["seq"] for m in listed] == [1]


# --- read state --------------------------------------------------------------------------------


async def test_the_read_marker_moves_forward_only_and_counts_unread(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    chat = await room(client, alice.headers, [bob])
    for i in range(5):
        await say(client, chat["id"], alice.headers, f"m{i}")

    async def unread(user: TenantUser) -> int:
        row = (await client.get(f"/chats/{chat['id']}", headers=user.headers)).json()
        listed = (await client.get("/chats", params={"limit": 200}, headers=user.headers)).json()["items"]
        assert next(r for r in listed if r["id"] == chat["id"])["unread_count"] == row["unread_count"]
        return row["unread_count"]

    # What one writes, one has read.
    assert await unread(alice) == 0 and await unread(bob) == 5
    marked = await post(client, f"/chats/{chat['id']}/read", {"seq": 3}, bob.headers, status=200)
    assert marked["unread_count"] == 2
    back = await post(client, f"/chats/{chat['id']}/read", {"seq": 1}, bob.headers, status=200)
    assert back["unread_count"] == 2 and await unread(bob) == 2
    # Past the last message, the marker stops at it.
    ahead = await post(client, f"/chats/{chat['id']}/read", {"seq": 99}, bob.headers, status=200)
    assert ahead["unread_count"] == 0
    await say(client, chat["id"], alice.headers, "new")
    assert await unread(bob) == 1
    bad = await client.post(f"/chats/{chat['id']}/read", json={"seq": -1}, headers=bob.headers)
    assert "seq" in error_fields(assert_problem(bad, 422))
    assert_problem(
        await client.post(f"/chats/{chat['id']}/read", json={"seq": 1}, headers=people["carol"].headers), 404
    )


async def test_rooms_of_one_tenant_are_not_another_tenants(
    api: Api, owner_a: Headers, owner_b: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    chat = await room(client, people["alice"].headers, [])
    message = await say(client, chat["id"], people["alice"].headers)
    b = {**owner_b}
    assert_problem(await client.get(f"/chats/{chat['id']}/messages", headers=b), 404)
    assert_problem(await client.post(f"/chats/{chat['id']}/messages", json={"body": "x"}, headers=b), 404)
    assert_problem(await client.post(f"/chats/{chat['id']}/read", json={"seq": 1}, headers=b), 404)
    assert_problem(await client.delete(f"/chats/{chat['id']}/messages/{message['id']}", headers=b), 404)


async def test_a_direct_room_found_again_is_200_with_an_idempotency_key_too(
    api: Api, owner_a: Headers
) -> None:
    """A create that finds its row already there writes no room, answers with the status
    the service gives (200), and is remembered like any answer: the key then means that
    room, and another body with it is 422."""
    _, client = api
    gail, hal = await add_user(client, owner_a, role="Member"), await add_user(client, owner_a, role="Member")
    body = {"kind": "direct", "member_ids": [hal.id]}
    first = await client.post("/chats", json=body, headers={**gail.headers, "Idempotency-Key": f"d-{_tag()}"})
    assert first.status_code == 201, first.text
    keyed = {**hal.headers, "Idempotency-Key": f"d-{_tag()}"}
    for n in range(2):
        again = await client.post("/chats", json={"kind": "direct", "member_ids": [gail.id]}, headers=keyed)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
        assert again.headers.get("Idempotent-Replayed") == (None if n == 0 else "true")
    other = await client.post("/chats", json={"kind": "group", "name": "Other"}, headers=keyed)
    assert_problem(other, 422)


async def test_moving_the_read_marker_is_answered_once_per_idempotency_key(
    api: Api, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    chat = await room(client, alice.headers, [])
    for _ in range(3):
        await say(client, chat["id"], alice.headers)
    keyed = {**alice.headers, "Idempotency-Key": f"r-{_tag()}"}
    url = f"/chats/{chat['id']}/read"
    first = await client.post(url, json={"seq": 1}, headers=keyed)
    again = await client.post(url, json={"seq": 1}, headers=keyed)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_problem(await client.post(url, json={"seq": 2}, headers=keyed), 422)


def test_a_subscription_forgets_idle_rooms_but_not_held_events() -> None:
    """The per-room order a subscription keeps stays bounded: idle rooms are forgotten,
    a room with an event held for an earlier one is kept."""

    def head(room: str, seq: int) -> events.Header:
        return events.Header(members=[], type=events.CREATED, chat_id=room, seq=seq)

    rooms = {f"room-{i}": _Order() for i in range(3)}
    for name, order in rooms.items():
        assert [h.seq for h, _ in order.arrive(head(name, 1), "{}")] == [1]
    # Seq 3 before seq 2: held until 2 arrives (or the hold ends).
    assert rooms["room-0"].arrive(head("room-0", 3), "{}") == []
    forget_idle(rooms)
    assert list(rooms) == ["room-0"]
    assert [h.seq for h, _ in rooms["room-0"].arrive(head("room-0", 2), "{}")] == [2, 3]


async def test_a_missing_name_and_bad_members_are_named_in_one_422(api: Api, owner_a: Headers) -> None:
    _, client = api
    response = await client.post("/chats", json={"member_ids": [str(uuid.uuid4())]}, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == {"name", "member_ids"}
    direct = {"kind": "direct", "name": "x", "member_ids": []}
    response = await client.post("/chats", json=direct, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == {"name", "member_ids"}


async def test_a_message_moves_the_rooms_updated_at_and_etag(api: Api, owner_a: Headers) -> None:
    # The room's last_seq and last_message_at change with every message: its updated_at and
    # ETag follow (API.md §5), so an If-Match taken before the message no longer matches.
    _, client = api
    chat = await room(client, owner_a, [])
    before = await client.get(f"/chats/{chat['id']}", headers=owner_a)
    await say(client, chat["id"], owner_a)
    after = await client.get(f"/chats/{chat['id']}", headers=owner_a)
    assert after.json()["last_seq"] == before.json()["last_seq"] + 1
    assert after.json()["updated_at"] > before.json()["updated_at"]
    assert after.headers["etag"] != before.headers["etag"]
    stale = await client.patch(
        f"/chats/{chat['id']}",
        json={"name": "Renamed"},
        headers={**owner_a, "If-Match": before.headers["etag"]},
    )
    assert_problem(stale, 412)


async def test_a_posted_message_has_its_own_url_and_etag_and_if_match_guards_its_changes(
    api: Api, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    chat = await room(client, alice.headers, [bob])
    posted = await client.post(f"/chats/{chat['id']}/messages", json={"body": "hello"}, headers=alice.headers)
    assert posted.status_code == 201, posted.text
    location = posted.headers["Location"]
    assert location == f"/chats/{chat['id']}/messages/{posted.json()['id']}"
    read = await client.get(location, headers=bob.headers)
    assert read.status_code == 200 and read.json() == posted.json()
    assert read.headers["ETag"] == posted.headers["ETag"]
    # Outside the room (not a member, or another room's path): not there.
    assert_problem(await client.get(location, headers=people["carol"].headers), 404)
    other = await room(client, alice.headers, [])
    assert_problem(
        await client.get(f"/chats/{other['id']}/messages/{posted.json()['id']}", headers=alice.headers), 404
    )

    stale = posted.headers["ETag"]
    edited = await client.patch(
        location, json={"body": "hello!"}, headers={**alice.headers, "If-Match": stale}
    )
    assert edited.status_code == 200 and edited.headers["ETag"] != stale
    assert (await client.get(location, headers=alice.headers)).headers["ETag"] == edited.headers["ETag"]
    refused = await client.patch(
        location, json={"body": "lost"}, headers={**alice.headers, "If-Match": stale}
    )
    assert_problem(refused, 412)
    assert_problem(await client.delete(location, headers={**alice.headers, "If-Match": stale}), 412)
    assert (await client.get(location, headers=alice.headers)).json()["body"] == "hello!"
    current = edited.headers["ETag"]
    assert (await client.delete(location, headers={**alice.headers, "If-Match": current})).status_code == 204
    assert (await client.get(location, headers=alice.headers)).json()["deleted"] is True


async def test_rooms_without_a_message_sort_last_either_way(api: Api, owner_a: Headers) -> None:
    _, client = api
    member = await add_user(client, owner_a, role="Member")
    quiet, busy = await room(client, member.headers, []), await room(client, member.headers, [])
    await say(client, busy["id"], member.headers)
    for sort in ("-last_message_at", "last_message_at"):
        response = await client.get("/chats", params={"sort": sort}, headers=member.headers)
        assert [r["id"] for r in response.json()["items"]] == [busy["id"], quiet["id"]], sort
