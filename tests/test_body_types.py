"""A JSON body's values must have the types its schema says (API.md §5: a bad value is 422
naming it): no string read as a number or a boolean, no number read as a time."""

from __future__ import annotations

from typing import Any

import pytest

from atrium.platform.web.validation import has_nul
from tests.api import Api, Headers, assert_problem, error_fields

pytest_plugins = ["tests.api"]

EVENT = {"title": "Standup", "starts_at": "2031-03-03T09:00:00Z", "ends_at": "2031-03-03T09:15:00Z"}


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        # A number of seconds was read as a Unix time (1970 for 5).
        ("/events", {**EVENT, "starts_at": 1940823200, "ends_at": 5.5}, {"starts_at", "ends_at"}),
        ("/events", {**EVENT, "all_day": "true"}, {"all_day"}),
        ("/events", {**EVENT, "all_day": 1}, {"all_day"}),
        (
            "/forms",
            {"title": "T", "public": "false", "fields": [{"key": "a", "label": "A", "type": "text"}]},
            {"public"},
        ),
        # Every loosely typed field named together, with the other bad ones.
        ("/events", {"title": 5, "starts_at": 1, "ends_at": "x", "all_day": "no", "nope": 1}, None),
    ],
)
async def test_values_of_another_type_are_422_each_named(
    api: Api, owner_a: Headers, path: str, body: dict[str, Any], fields: set[str] | None
) -> None:
    _, client = api
    response = await client.post(path, json=body, headers=owner_a)
    named = error_fields(assert_problem(response, 422))
    assert named == (fields if fields is not None else {"title", "starts_at", "ends_at", "all_day", "nope"})
    assert all(e["source"] == "body" for e in response.json()["errors"])


async def test_a_patch_is_held_to_the_same_types(api: Api, owner_a: Headers) -> None:
    _, client = api
    created = await client.post("/events", json=EVENT, headers=owner_a)
    assert created.status_code == 201, created.text
    changed = await client.patch(
        f"/events/{created.json()['id']}", json={"all_day": "false"}, headers=owner_a
    )
    assert error_fields(assert_problem(changed, 422)) == {"all_day"}


async def test_well_typed_bodies_and_the_400s_are_as_before(api: Api, owner_a: Headers) -> None:
    _, client = api
    assert (await client.post("/events", json=EVENT, headers=owner_a)).status_code == 201
    # The last: typed decoding stops at the bad value before the trailing text (a 500 once).
    for raw in (b"", b"[]", b"not json", b"5", b'{"title": 5} trailing'):
        response = await client.post(
            "/events", content=raw, headers={**owner_a, "Content-Type": "application/json"}
        )
        assert_problem(response, 400)
    # msgspec's words, said so that a client can act on them.
    for raw, said in (
        (b'{"title": "\\ud800"}', "a \\u escape is not a character"),
        (b'{"title": "x', "ends too early"),
        (b'{"title": 1e400}', "beyond the range of a 64-bit float"),
    ):
        response = await client.post(
            "/events", content=raw, headers={**owner_a, "Content-Type": "application/json"}
        )
        assert said in assert_problem(response, 400)["detail"], raw


async def test_a_route_that_reads_no_body_takes_none(api: Api, owner_a: Headers) -> None:
    # An action with nothing to say, and a restore: their bodies were read by nobody and
    # answered 200, so a client believed what it sent had been applied.
    _, client = api
    made = await client.post("/documents", json={"title": "Notes", "body": "one"}, headers=owner_a)
    assert made.status_code == 201, made.text
    restore = f"/documents/{made.json()['id']}/versions/1/restore"
    refused = await client.post(restore, json={"title": "other", "x": 1}, headers=owner_a)
    assert error_fields(assert_problem(refused, 422)) == {"title", "x"}
    assert_problem(await client.post(restore, content=b"[1]", headers=owner_a), 400)
    for empty in ({"json": {}}, {}):
        assert (await client.post(restore, headers=owner_a, **empty)).status_code == 200
    feed = await client.post("/events/feed-token", json={"x": 1}, headers=owner_a)
    assert error_fields(assert_problem(feed, 422)) == {"x"}


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        # A NUL character and a value of another type: both in the first 422.
        ("/documents", {"title": "a\x00b", "body": 5}, {"title", "body"}),
        ("/user-groups", {"name": "a\x00b", "nope": 1}, {"name", "nope"}),
        # A NUL character deep in a list, beside an unknown field.
        (
            "/user-roles",
            {"name": "R", "permissions": ["users:read", "x\x00"], "nope": 1},
            {"permissions[1]", "nope"},
        ),
        # Well typed, but a NUL character and a password over bcrypt's 72 bytes (40 of 2 bytes each).
        (
            "/users",
            {"name": "N\x00", "email": "n@example.com", "phone": "+1 555 0100", "password": "é" * 40},
            {"name", "password"},
        ),
        # Every bad item of a list, and every bad field of an object in it, by its own path.
        (
            "/invoices",
            {
                "customer_name": "x",
                "currency": "USD",
                "items": [
                    {"description": "a", "quantity": "1", "unit_price": -1},
                    {"description": "b", "quantity": "1", "unit_price": -2},
                    {"description": "c"},
                ],
            },
            {"items[0].unit_price", "items[1].unit_price", "items[2].quantity", "items[2].unit_price"},
        ),
        ("/help-desk", {"subject": "x", "tags": ["", "ok", "x" * 60]}, {"tags[0]", "tags[2]"}),
        (
            "/user-roles",
            {"name": "R", "permissions": [5, "users:read", 6]},
            {"permissions[0]", "permissions[2]"},
        ),
        # The byte limit named with a type error elsewhere.
        (
            "/users",
            {"name": "N", "email": "m@example.com", "phone": 5, "password": "é" * 40},
            {"phone", "password"},
        ),
    ],
)
async def test_every_bad_field_is_named_with_the_others(
    api: Api, owner_a: Headers, path: str, body: dict[str, Any], fields: set[str]
) -> None:
    _, client = api
    response = await client.post(path, json=body, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == fields
    messages = {e["field"]: e["message"] for e in response.json()["errors"]}
    if "password" in fields:
        assert messages["password"] == "at most 72 bytes in UTF-8"
    assert any(m == "contains a NUL character" for m in messages.values()) == has_nul(body)


async def test_a_patch_names_the_byte_limit_with_the_other_bad_fields(api: Api, owner_a: Headers) -> None:
    _, client = api
    user = (await client.get("/auth/me", headers=owner_a)).json()["user"]
    body = {"name": "N\x00", "phone": 5, "password": "é" * 40}
    response = await client.patch(f"/users/{user['id']}", json=body, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == {"name", "phone", "password"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # Would look the same as "Apollo" in every list (and passed its unique name).
        ("/projects", {"name": "Apollo "}, "name"),
        ("/user-groups", {"name": "   "}, "name"),
        ("/user-roles", {"name": " Admin", "permissions": []}, "name"),
        ("/forums", {"name": "\tGeneral"}, "name"),
        ("/documents", {"title": "Two\nlines"}, "title"),
        ("/help-desk", {"subject": "Printer "}, "subject"),
        # A right-to-left override shows "Apollo\u202egpj.exe" as "Apolloexe.jpg".
        ("/projects", {"name": "Apollo\u202egpj.exe"}, "name"),
        ("/user-groups", {"name": "\u2067Ops"}, "name"),
    ],
)
async def test_names_and_titles_have_no_space_at_either_end(
    api: Api, owner_a: Headers, path: str, body: dict[str, Any], field: str
) -> None:
    _, client = api
    response = await client.post(path, json=body, headers=owner_a)
    problem = assert_problem(response, 422)
    assert error_fields(problem) == {field}
    assert (
        problem["errors"][0]["message"] == "one line, without spaces at either end or text-direction controls"
    )
