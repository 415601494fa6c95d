"""Passwords: at most 72 bytes of UTF-8 (never truncated), bcrypt-hashed, never shown."""

from __future__ import annotations

import bcrypt
import httpx
import pytest
from sqlalchemy import Engine, text

from atrium.platform.db.binding import set_transaction_search_path
from atrium.platform.settings import Settings
from tests.api import (
    BCRYPT_MARKER,
    Api,
    Headers,
    add_user,
    assert_problem,
    check_response,
    create_request,
    error_fields,
    remember_password,
)
from tests.conftest import MadeTenant, login

pytest_plugins = ["tests.api"]


def padded(prefix: str, size: int) -> str:
    """``prefix`` padded with ASCII to exactly ``size`` bytes of UTF-8."""
    password = prefix + "k" * (size - len(prefix.encode()))
    assert len(password.encode()) == size
    return remember_password(password)


# Multi-byte characters count as bytes: 18 characters of 4 bytes, 2-byte and 3-byte mixes.
AT_LIMIT = [padded("😀" * 18, 72), padded("Pässwörd-€-ß-", 72), padded("ascii-", 72)]
OVER_LIMIT = [
    padded("😀" * 18 + "!", 73),  # 19 characters
    padded("€" * 25, 75),  # 25 characters: under 72 characters, over 72 bytes
    padded("ascii-", 73),
    remember_password("short7!"),  # too short (8 characters at least)
]


def stored_hash(engine: Engine, made: MadeTenant, user_id: str) -> str:
    with engine.begin() as conn:
        set_transaction_search_path(conn, made.tenant.schema)
        return conn.execute(text("SELECT password FROM users WHERE id = :id"), {"id": user_id}).scalar_one()


async def login_status(client: httpx.AsyncClient, host: str, email: str, password: str) -> int:
    response = await client.post(
        "/auth/login", json={"email": email, "password": password}, headers={"Host": host}
    )
    return response.status_code


@pytest.mark.parametrize("password", AT_LIMIT)
async def test_a_72_byte_password_is_accepted_and_logs_in(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, password: str
) -> None:
    _, client = api
    body = {**(await create_request("users", client, owner_a))["json"], "password": password}
    created = await client.post("/users", json=body, headers=owner_a)
    assert created.status_code == 201, created.text
    me = await login(client, tenant_a.host, body["email"], password)
    assert (await client.get("/auth/me", headers=me)).json()["user"]["id"] == created.json()["id"]
    # Nothing past byte 72 is ignored: one more character is another password.
    assert await login_status(client, tenant_a.host, body["email"], password + "k") == 401


@pytest.mark.parametrize("password", OVER_LIMIT)
async def test_a_password_outside_the_limits_is_refused_on_create_and_update(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, password: str
) -> None:
    _, client = api
    body = {**(await create_request("users", client, owner_a))["json"], "password": password}
    created = await client.post("/users", json=body, headers=owner_a)
    assert "password" in error_fields(assert_problem(created, 422))
    assert body["email"] not in {
        u["email"] for u in (await client.get("/users", headers=owner_a)).json()["items"]
    }

    user = await add_user(client, owner_a)
    patched = await client.patch(f"/users/{user.id}", json={"password": password}, headers=owner_a)
    assert "password" in error_fields(assert_problem(patched, 422))
    assert await login_status(client, tenant_a.host, user.email, user.password) == 200


async def test_logging_in_with_an_overlong_password_is_refused(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    user = await add_user(client, owner_a, password=AT_LIMIT[1])
    for attempt in (AT_LIMIT[1] + "k", AT_LIMIT[1] + "€" * 100, "x" * 500):
        assert await login_status(client, tenant_a.host, user.email, attempt) == 401
    assert await login_status(client, tenant_a.host, user.email, AT_LIMIT[1]) == 200


async def test_passwords_are_stored_as_bcrypt_hashes(
    api: Api, settings: Settings, operator_engine: Engine, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    user = await add_user(client, owner_a, password=AT_LIMIT[0])
    first = stored_hash(operator_engine, tenant_a, user.id)
    assert first.startswith(BCRYPT_MARKER) and AT_LIMIT[0] not in first
    assert first.startswith(f"{BCRYPT_MARKER}{settings.bcrypt_rounds:02d}$")
    assert bcrypt.checkpw(AT_LIMIT[0].encode(), first.encode())

    changed = await client.patch(f"/users/{user.id}", json={"password": AT_LIMIT[2]}, headers=owner_a)
    assert changed.status_code == 200, changed.text
    second = stored_hash(operator_engine, tenant_a, user.id)
    assert second.startswith(BCRYPT_MARKER) and second != first
    assert bcrypt.checkpw(AT_LIMIT[2].encode(), second.encode())
    assert await login_status(client, tenant_a.host, user.email, AT_LIMIT[0]) == 401
    assert await login_status(client, tenant_a.host, user.email, AT_LIMIT[2]) == 200

    # A change of anything else keeps the hash.
    renamed = await client.patch(f"/users/{user.id}", json={"name": "Renamed"}, headers=owner_a)
    assert renamed.status_code == 200 and stored_hash(operator_engine, tenant_a, user.id) == second
    owner_hash = stored_hash(operator_engine, tenant_a, str(tenant_a.tenant.owner_id))
    assert bcrypt.checkpw(tenant_a.owner_password.encode(), owner_hash.encode())


async def test_passwords_are_never_shown(api: Api, tenant_a: MadeTenant, owner_a: Headers) -> None:
    _, client = api
    user = await add_user(client, owner_a)
    responses = [
        await client.get(f"/users/{user.id}", headers=owner_a),
        await client.get("/users", params={"limit": 200}, headers=owner_a),
        await client.get("/auth/me", headers=user.headers),
        await client.patch(f"/users/{user.id}", json={"phone": "+1 555 0199"}, headers=owner_a),
        await client.post(
            "/auth/login",
            json={"email": user.email, "password": user.password},
            headers={"Host": tenant_a.host},
        ),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        assert "password" not in response.text  # no such key anywhere (the scan checks the values)


async def test_the_response_scan_catches_a_leak(api: Api) -> None:
    """Every client of these tests carries the scan, and the scan bites."""
    _, client = api
    assert check_response in client.event_hooks["response"]
    request = httpx.Request("GET", "http://x.localhost/users")
    for leak in (AT_LIMIT[1], BCRYPT_MARKER + "04$abcdefghijklmnopqrstuv"):
        response = httpx.Response(200, json={"value": leak}, request=request)
        with pytest.raises(AssertionError):
            await check_response(response)
    for status, body in ((500, {"detail": "boom"}), (422, {"detail": 'relation "tenant_acme.users"'})):
        response = httpx.Response(status, json=body, request=request)
        with pytest.raises(AssertionError):
            await check_response(response)
