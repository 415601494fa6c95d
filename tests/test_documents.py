"""Documents and their comments (API.md §7): versions, size, attachments, search, archive."""

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
)
from tests.conftest import MadeTenant

pytest_plugins = ["tests.api"]

MIB = 1024 * 1024


@pytest.fixture(scope="module")
async def people(api: Api, owner_a: Headers) -> dict[str, TenantUser]:
    _, client = api
    return {name: await add_user(client, owner_a, role="Member") for name in ("alice", "bob")}


def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: Headers
) -> httpx.Response:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response


async def document(client: httpx.AsyncClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    body = {"title": f"Doc {_tag()}", "body": "first", **fields}
    return (await post(client, "/documents", body, headers)).json()


async def ids(client: httpx.AsyncClient, path: str, headers: Headers, **params: Any) -> list[str]:
    response = await client.get(path, params={"limit": 200, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["items"]]


async def test_every_change_is_a_kept_version_and_restore_makes_a_new_one(api: Api, owner_a: Headers) -> None:
    _, client = api
    doc = await document(client, owner_a, title="Plan")
    assert doc["version"] == 1
    url = f"/documents/{doc['id']}"
    second = (await client.patch(url, json={"body": "second"}, headers=owner_a)).json()
    third = (await client.patch(url, json={"title": "Plan B"}, headers=owner_a)).json()
    assert (second["version"], third["version"]) == (2, 3)
    # A change to nothing keeps the version.
    same = await client.patch(url, json={"title": "Plan B"}, headers=owner_a)
    assert same.json()["version"] == 3

    versions = (await client.get(f"{url}/versions", headers=owner_a)).json()
    assert versions["total"] == 3
    assert [(v["version"], v["title"], v["body"]) for v in versions["items"]] == [
        (3, "Plan B", "second"),
        (2, "Plan", "second"),
        (1, "Plan", "first"),
    ]
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    assert {v["editor_id"] for v in versions["items"]} == {me}
    first_read = await client.get(f"{url}/versions/1", headers=owner_a)
    first = first_read.json()
    assert (first["title"], first["body"]) == ("Plan", "first")
    assert (
        first_read.headers["ETag"] == (await client.get(f"{url}/versions/1", headers=owner_a)).headers["ETag"]
    )
    assert (
        first_read.headers["ETag"] != (await client.get(f"{url}/versions/2", headers=owner_a)).headers["ETag"]
    )
    assert_problem(await client.get(f"{url}/versions/9", headers=owner_a), 404)

    restored = await client.post(f"{url}/versions/1/restore", headers=owner_a)
    assert restored.status_code == 200, restored.text
    row = restored.json()
    assert (row["version"], row["title"], row["body"]) == (4, "Plan", "first")
    assert restored.headers["etag"] == (await client.get(url, headers=owner_a)).headers["etag"]
    assert (await client.get(f"{url}/versions", headers=owner_a)).json()["total"] == 4
    assert_problem(await client.post(f"{url}/versions/9/restore", headers=owner_a), 404)
    # Restoring the content it already has makes no version and keeps the ETag.
    again = await client.post(f"{url}/versions/4/restore", headers=owner_a)
    assert again.status_code == 200 and again.json()["version"] == 4
    assert again.headers["etag"] == restored.headers["etag"]
    assert (await client.get(f"{url}/versions", headers=owner_a)).json()["total"] == 4


async def test_a_stale_if_match_is_412_and_changes_nothing(api: Api, owner_a: Headers) -> None:
    _, client = api
    doc = await document(client, owner_a)
    url = f"/documents/{doc['id']}"
    stale = (await client.get(url, headers=owner_a)).headers["etag"]
    fresh = await client.patch(url, json={"body": "mine"}, headers={**owner_a, "If-Match": stale})
    assert fresh.status_code == 200
    lost = await client.patch(url, json={"body": "theirs"}, headers={**owner_a, "If-Match": stale})
    assert_problem(lost, 412)
    restore = await client.post(f"{url}/versions/1/restore", headers={**owner_a, "If-Match": stale})
    assert_problem(restore, 412)
    assert_problem(await client.delete(url, headers={**owner_a, "If-Match": stale}), 412)
    row = (await client.get(url, headers=owner_a)).json()
    assert (row["body"], row["version"]) == ("mine", 2)


async def test_the_body_holds_at_most_one_mebibyte(api: Api, owner_a: Headers) -> None:
    _, client = api
    await document(client, owner_a, body="a" * MIB)
    # Fewer characters than the limit, more bytes: counted in UTF-8.
    wide = await client.post("/documents", json={"title": "t", "body": "é" * (MIB // 2 + 1)}, headers=owner_a)
    assert error_fields(assert_problem(wide, 422)) == {"body"}
    # Named with the other fields' errors, in one answer.
    twice = [str(uuid.uuid4())] * 2
    wide = {"title": "", "body": "é" * (MIB // 2 + 1), "media_ids": twice}
    both = await client.post("/documents", json=wide, headers=owner_a)
    assert error_fields(assert_problem(both, 422)) == {"title", "body", "media_ids"}
    first = await document(client, owner_a)
    changed = await client.patch(f"/documents/{first['id']}", json={**wide, "title": "ok"}, headers=owner_a)
    assert error_fields(assert_problem(changed, 422)) == {"body", "media_ids"}


async def test_attachments_must_be_media_of_this_tenant(api: Api, owner_a: Headers, owner_b: Headers) -> None:
    _, client = api
    mine, theirs = await create(client, owner_a, "media"), await create(client, owner_b, "media")
    doc = await document(client, owner_a, media_ids=[mine])
    assert doc["media_ids"] == [mine]
    for bad in ([theirs], [str(uuid.uuid4())], [mine, mine]):
        refused = await client.post("/documents", json={"title": "x", "media_ids": bad}, headers=owner_a)
        assert error_fields(assert_problem(refused, 422)) == {"media_ids"}
    # Another tenant's user as the owner, beside the bad attachment: both named in one 422.
    stranger = (await client.get("/auth/me", headers=owner_b)).json()["user"]["id"]
    body = {"title": "x", "media_ids": [theirs], "owner_id": stranger}
    refused = await client.post("/documents", json=body, headers=owner_a)
    assert error_fields(assert_problem(refused, 422)) == {"media_ids", "owner_id"}
    assert stranger not in refused.text
    patched = await client.patch(f"/documents/{doc['id']}", json={"media_ids": [theirs]}, headers=owner_a)
    assert_problem(patched, 422)
    # A deleted file leaves the documents it was attached to (and moves their ETag).
    other = await create(client, owner_a, "media")
    both = await document(client, owner_a, media_ids=[mine, other])
    before = await client.get(f"/documents/{both['id']}", headers=owner_a)
    assert (await client.delete(f"/media/{mine}", headers=owner_a)).status_code == 204
    after = await client.get(f"/documents/{both['id']}", headers=owner_a)
    assert after.json()["media_ids"] == [other] and after.headers["ETag"] != before.headers["ETag"]
    # A change like any other (API.md §7: +1 on every change), written by whoever deleted the file.
    assert after.json()["version"] == before.json()["version"] + 1
    latest = (await client.get(f"/documents/{both['id']}/versions", headers=owner_a)).json()["items"][0]
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    assert (latest["version"], latest["editor_id"], latest["body"]) == (
        after.json()["version"],
        me,
        both["body"],
    )
    assert (await client.get(f"/documents/{doc['id']}", headers=owner_a)).json()["media_ids"] == []


async def test_q_is_ranked_stemmed_and_kept_to_the_tenant(
    api: Api, owner_a: Headers, owner_b: Headers
) -> None:
    _, client = api
    word = f"zebra{_tag()}"
    once = await document(client, owner_a, title="Notes", body=f"{word} running once")
    often = await document(client, owner_a, title=f"{word} runs", body=f"{word} {word} ran and runs")
    await document(client, owner_b, body=f"{word} runs")
    found = await ids(client, "/documents", owner_a, q=f"{word} run")
    assert found == [often["id"], once["id"]]
    assert await ids(client, "/documents", owner_a, q="nothing-like-this-anywhere") == []


async def test_documents_in_an_archived_project_are_read_only(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    body = {"name": f"P {_tag()}", "member_ids": [me, alice.id]}
    project = (await post(client, "/projects", body, owner_a)).json()
    doc = await document(client, alice.headers, project_id=project["id"])
    url = f"/documents/{doc['id']}"
    comment = (
        await post(client, "/document-comments", {"document_id": doc["id"], "body": "c"}, alice.headers)
    ).json()
    comment_url = f"/document-comments/{comment['id']}"
    # Bob is no member: he does not see the document, and cannot file one there.
    assert_problem(await client.get(url, headers=bob.headers), 404)
    assert doc["id"] not in await ids(client, "/documents", bob.headers)
    refused = await client.post(
        "/documents", json={"title": "x", "project_id": project["id"]}, headers=bob.headers
    )
    assert error_fields(assert_problem(refused, 422)) == {"project_id"}

    archived = await client.patch(f"/projects/{project['id']}", json={"status": "archived"}, headers=owner_a)
    assert archived.status_code == 200, archived.text
    assert_problem(await client.patch(url, json={"body": "x"}, headers=alice.headers), 409)
    assert_problem(await client.post(f"{url}/versions/1/restore", headers=alice.headers), 409)
    assert_problem(await client.delete(url, headers=alice.headers), 409)
    moved_in = await client.post(
        "/documents", json={"title": "x", "project_id": project["id"]}, headers=alice.headers
    )
    assert_problem(moved_in, 409)
    assert (await client.get(url, headers=alice.headers)).json()["version"] == 1
    # Its comments are read-only with it.
    commented = await client.post(
        "/document-comments", json={"document_id": doc["id"], "body": "d"}, headers=alice.headers
    )
    assert_problem(commented, 409)
    assert_problem(await client.patch(comment_url, json={"body": "e"}, headers=alice.headers), 409)
    assert_problem(await client.delete(comment_url, headers=alice.headers), 409)
    assert (await client.get(comment_url, headers=alice.headers)).json()["body"] == "c"

    await client.patch(f"/projects/{project['id']}", json={"status": "active"}, headers=owner_a)
    assert (await client.patch(url, json={"body": "x"}, headers=alice.headers)).status_code == 200


async def test_members_change_only_their_own_documents(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice, bob = people["alice"], people["bob"]
    doc = await document(client, alice.headers)
    url = f"/documents/{doc['id']}"
    assert_problem(await client.patch(url, json={"body": "x"}, headers=bob.headers), 403)
    assert_problem(await client.post(f"{url}/versions/1/restore", headers=bob.headers), 403)
    assert (await client.patch(url, json={"body": "by the owner"}, headers=owner_a)).status_code == 200


async def test_comments_record_the_version_list_oldest_first_and_go_with_the_document(
    api: Api, owner_a: Headers, people: dict[str, TenantUser]
) -> None:
    _, client = api
    alice = people["alice"]
    doc = await document(client, owner_a)
    first = (
        await post(client, "/document-comments", {"document_id": doc["id"], "body": "one"}, alice.headers)
    ).json()
    await client.patch(f"/documents/{doc['id']}", json={"body": "changed"}, headers=owner_a)
    second = (
        await post(client, "/document-comments", {"document_id": doc["id"], "body": "two"}, owner_a)
    ).json()
    assert (first["document_version"], second["document_version"]) == (1, 2)
    assert await ids(client, "/document-comments", owner_a, document_id=doc["id"]) == [
        first["id"],
        second["id"],
    ]

    missing = await client.post(
        "/document-comments", json={"document_id": str(uuid.uuid4()), "body": "x"}, headers=owner_a
    )
    assert error_fields(assert_problem(missing, 422)) == {"document_id"}
    late = await client.patch(
        f"/document-comments/{first['id']}", json={"document_version": 9}, headers=alice.headers
    )
    assert_problem(late, 422)

    assert (await client.delete(f"/documents/{doc['id']}", headers=owner_a)).status_code == 204
    assert_problem(await client.get(f"/document-comments/{first['id']}", headers=owner_a), 404)
    assert await ids(client, "/document-comments", owner_a, document_id=doc["id"]) == []


async def test_a_bad_project_and_bad_attachments_are_named_in_one_422(api: Api, owner_a: Headers) -> None:
    _, client = api
    body = {"title": "x", "project_id": str(uuid.uuid4()), "media_ids": [str(uuid.uuid4())]}
    response = await client.post("/documents", json=body, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == {"project_id", "media_ids"}


async def test_a_file_deleted_while_a_document_attaches_it_leaves_that_document_too(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    """The attach checks the file, then the delete runs before the attach commits: without a
    lock on the file, the delete mended the documents it could see and the attach then
    stored the id of a file that no longer exists."""
    _, client = api
    file_id, doc = await create(client, owner_a, "media"), await document(client, owner_a)
    with operator_engine.connect() as hold:
        # Holds the attach after its check, at the version it writes.
        hold.execute(text(f'LOCK TABLE "{tenant_a.tenant.schema}".document_versions IN EXCLUSIVE MODE'))
        change = {"body": "with the file", "media_ids": [file_id]}
        attach = asyncio.create_task(client.patch(f"/documents/{doc['id']}", json=change, headers=owner_a))
        await until_a_lock_is_awaited(operator_engine)
        delete = asyncio.create_task(client.delete(f"/media/{file_id}", headers=owner_a))
        await asyncio.wait({delete}, timeout=1.0)
        hold.commit()
    assert (await attach).status_code == 200 and (await delete).status_code == 204
    after = await client.get(f"/documents/{doc['id']}", headers=owner_a)
    assert after.json()["media_ids"] == []


async def test_versions_refuse_unknown_query_parameters(api: Api, owner_a: Headers) -> None:
    _, client = api
    made = await document(client, owner_a)
    listed = await client.get(f"/documents/{made['id']}/versions", params={"sort": "x"}, headers=owner_a)
    assert error_fields(assert_problem(listed, 422)) == {"sort"}
    fine = await client.get(f"/documents/{made['id']}/versions", params={"limit": 1}, headers=owner_a)
    assert fine.status_code == 200 and len(fine.json()["items"]) == 1


async def test_concurrent_edits_without_if_match_each_make_a_version(api: Api, owner_a: Headers) -> None:
    """Last write wins (API.md §5): twenty edits at once are twenty versions, none refused.
    Two that read the same version number collided on it (409) and one edit was lost."""
    _, client = api
    created = await client.post("/documents", json={"title": "Race", "body": "0"}, headers=owner_a)
    url = f"/documents/{created.json()['id']}"
    edits = await asyncio.gather(
        *(client.patch(url, json={"body": f"edit {n}"}, headers=owner_a) for n in range(20))
    )
    assert [e.status_code for e in edits] == [200] * 20, [e.text for e in edits if e.status_code != 200]
    versions = (await client.get(f"{url}/versions", params={"limit": 50}, headers=owner_a)).json()
    assert sorted(v["version"] for v in versions["items"]) == list(range(1, 22))
    assert {v["body"] for v in versions["items"]} == {"0", *(f"edit {n}" for n in range(20))}
