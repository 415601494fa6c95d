"""Error texts a person can act on: what was wrong, in words, not the machinery behind it."""

from __future__ import annotations

import uuid

import pytest

from atrium.platform.web.validation import readable
from tests.api import Api, Headers, assert_problem, error_fields
from tests.conftest import MadeTenant

pytest_plugins = ["tests.api"]


async def test_a_bad_email_says_so_instead_of_showing_the_regex(api: Api, owner_a: Headers) -> None:
    _, client = api
    body = {"name": "Bea", "email": "not-an-email", "phone": "+1 555 0101", "password": "a long passphrase"}
    created = await client.post("/users", json=body, headers=owner_a)
    problem = assert_problem(created, 422)
    assert {"field": "email", "message": "not a valid email address", "source": "body"} in problem["errors"]
    assert "regex" not in created.text
    changed = await client.patch("/auth/me", json={"email": "x@y", "current_password": "x"}, headers=owner_a)
    assert "regex" not in changed.text


def test_an_unknown_pattern_is_described_without_its_regex() -> None:
    assert readable("Expected `str` matching regex '^[a-z]+$'") == "does not have the expected format"
    assert readable("Expected `str` matching regex '^[a-z]+$' - at `$[0]`") == (
        "does not have the expected format - at `$[0]`"
    )
    assert readable("Expected `int`, got `str`") == "must be an integer, not a string"


@pytest.mark.parametrize(
    ("msgspec_says", "client_reads"),
    [
        ("Expected `int | null`, got `str`", "must be an integer or null, not a string"),
        ("Expected `object`, got `array`", "must be an object, not an array"),
        ("Expected `str` of length >= 1", "must not be empty"),
        ("Expected `array` of length >= 1", "at least 1 item"),
        ("Expected `str` of length <= 200 - at `$[2]`", "at most 200 characters - at `$[2]`"),
        ("Expected `array` of length <= 20", "at most 20 items"),
        ("Expected `int` >= 0", "at least 0"),
        ("Expected `int` <= 200", "at most 200"),
        ("Invalid UUID", "not a valid UUID"),
        ("Invalid RFC3339 encoded datetime", "not an RFC 3339 date-time, e.g. 2026-03-16T08:00:00Z"),
        ("Something msgspec says one day", "Something msgspec says one day"),
    ],
)
def test_msgspec_refusals_read_in_plain_words(msgspec_says: str, client_reads: str) -> None:
    assert readable(msgspec_says) == client_reads


@pytest.mark.parametrize("path", ["/users/123", "/user-roles/abc", "/media/not-a-uuid/content"])
async def test_an_id_that_is_not_a_uuid_is_a_404_saying_ids_are_uuids(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, path: str
) -> None:
    _, client = api
    response = await client.get(path, headers=owner_a)
    problem = assert_problem(response, 404)
    assert "ids in paths are UUIDs" in problem["detail"], problem


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [("/users", "email", "bea@example.com\n"), ("/invoices", "currency", "USD\n")],
)
async def test_a_pattern_holds_to_the_end_of_the_value(
    api: Api, owner_a: Headers, path: str, field: str, value: str
) -> None:
    # msgspec checks patterns with re.search, where $ also matches before a final newline.
    _, client = api
    body = {
        "/users": {"name": "Bea", "email": value, "phone": "+1 555 0101", "password": "a long passphrase"},
        "/invoices": {
            "customer_name": "C",
            "currency": value,
            "items": [{"description": "d", "quantity": "1", "unit_price": 1, "tax_rate": "0"}],
        },
    }[path]
    response = await client.post(path, json=body, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == {field}
    assert "regex" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "body", "server_set"),
    [
        ("POST", "/documents", {"title": "x", "version": 5, "id": str(uuid.uuid4())}, {"version", "id"}),
        (
            "POST",
            "/forums",
            {"name": f"F {uuid.uuid4().hex[:6]}", "created_at": "2026-01-01T00:00:00Z"},
            {"created_at"},
        ),
        ("POST", "/customize", {"data": {}, "tenant_id": str(uuid.uuid4())}, {"tenant_id"}),
    ],
)
async def test_a_field_the_server_sets_is_named_as_its_not_unknown(
    api: Api, owner_a: Headers, method: str, path: str, body: dict[str, object], server_set: set[str]
) -> None:
    _, client = api
    refused = await client.request(method, path, json={**body, "bogus": 1}, headers=owner_a)
    problem = assert_problem(refused, 422)
    messages = {error["field"]: error["message"] for error in problem["errors"]}
    assert messages == {
        **dict.fromkeys(server_set, "set by the server; leave it out"),
        "bogus": "unknown field",
    }


async def test_a_bad_choice_names_the_choices_and_emails_follow_one_rule(api: Api, owner_a: Headers) -> None:
    _, client = api
    refused = await client.post("/help-desk", json={"subject": "s", "priority": "whenever"}, headers=owner_a)
    messages = {error["field"]: error["message"] for error in assert_problem(refused, 422)["errors"]}
    assert messages == {"priority": "must be one of low, normal, high, urgent"}
    # An invoice's customer is mailed as a user would be: the same address rule.
    line = {"description": "d", "quantity": "1", "unit_price": 1}
    body = {"customer_name": "c", "currency": "USD", "customer_email": "a@b", "items": [line]}
    refused = await client.post("/invoices", json=body, headers=owner_a)
    messages = {error["field"]: error["message"] for error in assert_problem(refused, 422)["errors"]}
    assert messages == {"customer_email": "not a valid email address"}


async def test_a_field_fixed_since_creation_is_named_so_on_a_change(api: Api, owner_a: Headers) -> None:
    """A comment's document, like its id, was set when it was made: a PATCH naming either
    is told it cannot change them, not that the server sets them or that they are unknown."""
    _, client = api
    document = await client.post("/documents", json={"title": "Fixed"}, headers=owner_a)
    comment = await client.post(
        "/document-comments", json={"document_id": document.json()["id"], "body": "c"}, headers=owner_a
    )
    assert comment.status_code == 201, comment.text
    body = {"body": "d", "document_id": str(uuid.uuid4()), "id": str(uuid.uuid4()), "bogus": 1}
    refused = await client.patch(f"/document-comments/{comment.json()['id']}", json=body, headers=owner_a)
    messages = {error["field"]: error["message"] for error in assert_problem(refused, 422)["errors"]}
    assert messages == {
        "document_id": "cannot be changed; leave it out",
        "id": "cannot be changed; leave it out",
        "bogus": "unknown field",
    }


async def test_every_malformed_permission_is_named_by_its_place(api: Api, owner_a: Headers) -> None:
    _, client = api
    permissions = ["users:read", "users:destroy", "", "*:*", "users:*", "foo:read"]
    refused = await client.post(
        "/user-roles", json={"name": "Bad", "permissions": permissions}, headers=owner_a
    )
    named = error_fields(assert_problem(refused, 422))
    assert named == {"permissions[1]", "permissions[2]", "permissions[3]", "permissions[4]"}
    # Well formed, but no such resource: named once the shapes are right.
    unknown = await client.post(
        "/user-roles", json={"name": "Bad", "permissions": ["foo:read"]}, headers=owner_a
    )
    assert error_fields(assert_problem(unknown, 422)) == {"permissions"}
