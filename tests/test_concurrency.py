"""Optimistic concurrency (API.md §5) on every resource of the route table.

Every single-row response carries a strong ``ETag``; ``PATCH`` and ``DELETE`` with an
``If-Match`` that no longer matches answer 412 and leave the row as it was; ``*`` matches
any row, a list matches if any member does, a weak tag never does; concurrent writes with
the same tag: exactly one wins.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from tests.api import (
    UPDATES,
    Api,
    Headers,
    add_user,
    assert_problem,
    create,
    create_request,
    endpoints_of,
    route_resources,
    unserved_app,
    user_with,
)

pytest_plugins = ["tests.api"]

RESOURCES = route_resources()
UPDATED = sorted({e.resource for e in endpoints_of(unserved_app(), "update")})
DELETED = sorted({e.resource for e in endpoints_of(unserved_app(), "delete")})
STRONG_TAG = re.compile(r'^"[\x21\x23-\x7e]+"$')


def etag(response: httpx.Response) -> str:
    tag = response.headers.get("etag")
    assert tag is not None, f"no ETag on {response.request.method} {response.request.url.path}"
    assert STRONG_TAG.match(tag), f"not a strong entity tag: {tag!r}"
    return tag


def variant(change: dict[str, Any], n: int) -> dict[str, Any]:
    """``change`` made distinct for writer ``n``, so the winner can be told from the row."""
    out: dict[str, Any] = {}
    for key, value in change.items():
        if isinstance(value, str):
            out[key] = f"{n}-{value}"
        elif isinstance(value, dict):
            out[key] = {**value, "writer": n}
        else:
            raise AssertionError(f"no variant of {key}={value!r}: extend tests/test_concurrency.py")
    return out


async def read(client: httpx.AsyncClient, headers: Headers, url: str) -> tuple[dict[str, Any], str]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.json(), etag(response)


async def stale_row(client: httpx.AsyncClient, headers: Headers, resource: str) -> tuple[str, str]:
    """A new row's URL and an ETag it had before a change (without If-Match) moved it."""
    url = f"/{resource}/{await create(client, headers, resource)}"
    _, before = await read(client, headers, url)
    # A resource without PATCH needs another way to move its version: fail, never skip.
    assert resource in UPDATED, f"{resource} has no PATCH to make a tag stale with"
    changed = await client.patch(url, json=UPDATES[resource], headers=headers)
    assert changed.status_code == 200, changed.text
    assert etag(changed) != before
    return url, before


def assert_precondition_failed(response: httpx.Response) -> None:
    assert assert_problem(response, 412)["type"] == "precondition-failed"


# --- the tag ------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
async def test_every_single_row_response_carries_a_stable_etag(
    api: Api, owner_a: Headers, resource: str
) -> None:
    _, client = api
    row_id = await create(client, owner_a, resource)
    url = f"/{resource}/{row_id}"
    first, tag = await read(client, owner_a, url)
    again, same = await read(client, owner_a, url)
    assert (again, same) == (first, tag), "the ETag of an unchanged row changed between GETs"
    # Another row of the same resource never shares it.
    _, other = await read(client, owner_a, f"/{resource}/{await create(client, owner_a, resource)}")
    assert other != tag
    if resource in UPDATED:
        patched = await client.patch(url, json=UPDATES[resource], headers=owner_a)
        assert patched.status_code == 200, patched.text
        assert etag(patched) != tag, "a change kept the ETag"
        assert await read(client, owner_a, url) == (patched.json(), etag(patched))


@pytest.mark.parametrize("resource", RESOURCES)
async def test_a_created_row_answers_with_the_etag_a_get_then_shows(
    api: Api, owner_a: Headers, resource: str
) -> None:
    _, client = api
    sent = await create_request(resource, client, owner_a)
    created = await client.post(f"/{resource}", headers=owner_a, **sent)
    assert created.status_code == 201, created.text
    assert await read(client, owner_a, created.headers["location"]) == (created.json(), etag(created))


@pytest.mark.parametrize("resource", UPDATED)
async def test_an_empty_patch_changes_nothing_and_keeps_the_etag(
    api: Api, owner_a: Headers, resource: str
) -> None:
    _, client = api
    url = f"/{resource}/{await create(client, owner_a, resource)}"
    row, tag = await read(client, owner_a, url)
    patched = await client.patch(url, json={}, headers={**owner_a, "If-Match": tag})
    assert patched.status_code == 200, patched.text
    assert (patched.json(), etag(patched)) == (row, tag)


# --- If-Match on PATCH --------------------------------------------------------------------------


@pytest.mark.parametrize("resource", UPDATED)
async def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(
    api: Api, owner_a: Headers, resource: str
) -> None:
    _, client = api
    url, stale = await stale_row(client, owner_a, resource)
    row, current = await read(client, owner_a, url)
    for if_match in (stale, f'"nothing", {stale}', f"W/{current}", f"W/{current}, W/{stale}", "", "junk"):
        headers = {**owner_a, "If-Match": if_match}
        change = variant(UPDATES[resource], 9)
        refused = await client.patch(url, json=change, headers=headers)
        assert_precondition_failed(refused)
        assert await read(client, owner_a, url) == (row, current), f"If-Match {if_match!r} changed the row"
        # The current tag sent weak: the answer says why, not that the row changed.
        assert ("weak tag" in refused.json()["detail"]) == if_match.startswith(f"W/{current}"), if_match


@pytest.mark.parametrize("resource", UPDATED)
async def test_patch_with_a_matching_if_match_succeeds(api: Api, owner_a: Headers, resource: str) -> None:
    _, client = api
    url, stale = await stale_row(client, owner_a, resource)
    _, current = await read(client, owner_a, url)
    # Templates: each write moves the current tag.
    for n, template in enumerate(("{current}", "*", '{stale}, "other", {current}', "W/{stale},{current}")):
        if_match = template.format(stale=stale, current=current)
        change = variant(UPDATES[resource], n)
        patched = await client.patch(url, json=change, headers={**owner_a, "If-Match": if_match})
        assert patched.status_code == 200, f"If-Match {if_match!r}: {patched.text}"
        assert {k: patched.json()[k] for k in change} == change
        assert etag(patched) != current
        row, current = await read(client, owner_a, url)
        assert (row, current) == (patched.json(), etag(patched))


@pytest.mark.parametrize("resource", UPDATED)
async def test_without_if_match_the_last_write_wins(api: Api, owner_a: Headers, resource: str) -> None:
    _, client = api
    url, _ = await stale_row(client, owner_a, resource)
    change = variant(UPDATES[resource], 7)
    patched = await client.patch(url, json=change, headers=owner_a)
    assert patched.status_code == 200, patched.text
    assert {k: patched.json()[k] for k in change} == change


@pytest.mark.parametrize("resource", UPDATED)
async def test_concurrent_patches_with_one_tag_exactly_one_wins(
    api: Api, owner_a: Headers, resource: str
) -> None:
    _, client = api
    url = f"/{resource}/{await create(client, owner_a, resource)}"
    _, tag = await read(client, owner_a, url)
    changes = [variant(UPDATES[resource], n) for n in range(6)]
    responses = await asyncio.gather(
        *(client.patch(url, json=change, headers={**owner_a, "If-Match": tag}) for change in changes)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 412, 412, 412, 412, 412], [r.text for r in responses]
    (winner,) = [(r, c) for r, c in zip(responses, changes, strict=True) if r.status_code == 200]
    for response in responses:
        if response.status_code != 200:
            assert_precondition_failed(response)
    row, current = await read(client, owner_a, url)
    assert {k: row[k] for k in winner[1]} == winner[1], "the row is not the winner's"
    assert current == etag(winner[0])


# --- If-Match on DELETE -------------------------------------------------------------------------


@pytest.mark.parametrize("resource", DELETED)
async def test_delete_with_a_stale_or_weak_if_match_is_412_and_keeps_the_row(
    api: Api, owner_a: Headers, resource: str
) -> None:
    _, client = api
    url, stale = await stale_row(client, owner_a, resource)
    row, current = await read(client, owner_a, url)
    for if_match in (stale, f"W/{current}", f'"a", "b", {stale}', "junk"):
        assert_precondition_failed(await client.delete(url, headers={**owner_a, "If-Match": if_match}))
        assert await read(client, owner_a, url) == (row, current), f"If-Match {if_match!r} changed the row"


@pytest.mark.parametrize("if_match", ["current", "star", "list"])
@pytest.mark.parametrize("resource", DELETED)
async def test_delete_with_a_matching_if_match_deletes(
    api: Api, owner_a: Headers, resource: str, if_match: str
) -> None:
    _, client = api
    url, stale = await stale_row(client, owner_a, resource)
    _, current = await read(client, owner_a, url)
    header = {"current": current, "star": "*", "list": f"{stale}, {current}"}[if_match]
    deleted = await client.delete(url, headers={**owner_a, "If-Match": header})
    assert deleted.status_code == 204, deleted.text
    assert_problem(await client.get(url, headers=owner_a), 404)
    # ``*`` matches an existing row only: there is none left.
    assert_problem(await client.delete(url, headers={**owner_a, "If-Match": "*"}), 404)


# --- writes that move a row without a PATCH -----------------------------------------------------


async def test_rows_handed_over_by_a_user_deletion_get_a_new_etag(api: Api, owner_a: Headers) -> None:
    """The rows of a deleted user change owner: their ETags must move with them."""
    _, client = api
    leaver = await add_user(client, owner_a, role="Admin")
    owned = []
    for resource in ("user-groups", "user-roles", "media"):
        url = f"/{resource}/{await create(client, leaver.headers, resource)}"
        owned.append((url, *(await read(client, owner_a, url))))
    assert (await client.delete(f"/users/{leaver.id}", headers=owner_a)).status_code == 204
    for url, row, tag in owned:
        now, moved = await read(client, owner_a, url)
        assert now["owner_id"] != row["owner_id"]
        assert moved != tag, f"{url} changed owner and kept its ETag"
        assert_precondition_failed(await client.patch(url, json={}, headers={**owner_a, "If-Match": tag}))


async def test_a_change_beyond_the_callers_powers_is_403_whatever_its_if_match(
    api: Api, owner_a: Headers
) -> None:
    """403 before 412: a fresh ETag could never make the write allowed."""
    _, client = api
    clerk = await user_with(client, owner_a, ["users:manage"])
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    stale = {**clerk.headers, "If-Match": '"stale"'}
    assert_problem(await client.patch(f"/users/{me}", json={"name": "x"}, headers=stale), 403)
    admin = await add_user(client, owner_a, role="Admin")
    assert_problem(await client.delete(f"/users/{admin.id}", headers=stale), 403)
    roles_listed = (await client.get("/user-roles", params={"limit": 200}, headers=owner_a)).json()["items"]
    owner_role = next(r for r in roles_listed if r["name"] == "Owner")
    roles = await user_with(client, owner_a, ["user-roles:manage"])
    refused = await client.patch(
        f"/user-roles/{owner_role['id']}",
        json={"name": "x"},
        headers={**roles.headers, "If-Match": '"stale"'},
    )
    assert_problem(refused, 403)
