"""Error texts a person can act on: what was wrong, in words, not the machinery behind it."""

from __future__ import annotations

import pytest

from atrium.platform.web.validation import readable
from tests.api import Api, Headers, assert_problem
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
    assert readable("Expected `int`, got `str`") == "Expected `int`, got `str`"


@pytest.mark.parametrize("path", ["/users/123", "/user-roles/abc", "/media/not-a-uuid/content"])
async def test_an_id_that_is_not_a_uuid_is_a_404_saying_ids_are_uuids(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, path: str
) -> None:
    _, client = api
    response = await client.get(path, headers=owner_a)
    problem = assert_problem(response, 404)
    assert "ids in paths are UUIDs" in problem["detail"], problem
