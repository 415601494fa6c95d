"""Authentication: login, logout, /auth/me, and every way a bearer token can be refused."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar
from litestar.security.jwt import Token
from sqlalchemy import Engine

from atrium.platform.security import tokens as token_module
from atrium.platform.security.permissions import effective
from atrium.platform.security.tokens import TokenAuth, VerifiedToken
from atrium.platform.settings import Settings
from atrium.platform.web.errors import Refusal
from atrium.tenants.identity import auth_routes
from tests.api import (
    UPDATES,
    Api,
    Headers,
    add_user,
    assert_problem,
    create,
    create_request,
    error_fields,
    new_tenant,
    remember_password,
    serve_api,
    tenant_endpoints,
)
from tests.conftest import TEST_SECRET, MadeTenant, login

pytest_plugins = ["tests.api"]


def bearer(host: str, token: str) -> Headers:
    return {"Host": host, "Authorization": f"Bearer {token}"}


def forge(app: Litestar, claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    """A token with exactly ``claims``, signed like the app signs its own."""
    return jwt.encode(claims, secret, algorithm=app.state.token_auth.jwt.algorithm)


def _without(claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k != name}


def claims(user_id: str, tenant_id: uuid.UUID, expires_in: datetime.timedelta) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    return {
        "sub": user_id,
        "jti": uuid.uuid4().hex,
        "iat": int((now - datetime.timedelta(hours=2)).timestamp()),
        "exp": int((now + expires_in).timestamp()),
        "extras": {"tid": str(tenant_id)},
    }


async def requests_for_every_route(
    app: Litestar, client: httpx.AsyncClient, owner: Headers
) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url, request kwargs) for every route but login, aimed at real rows with valid bodies.

    If a refused token were accepted after all, these requests would succeed: the
    refusal is what the assertions see, not an accident of the input.
    """
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/auth/me", {}),
        ("PATCH", "/auth/me", {"json": {"name": "Refused", "current_password": "whatever-it-is"}}),
        ("POST", "/auth/logout", {}),
    ]
    rows: dict[str, str] = {}
    for endpoint in tenant_endpoints(app):
        kwargs: dict[str, Any] = {}
        item_id = None
        if endpoint.on_item:
            if endpoint.op == "delete" or endpoint.resource not in rows:
                item_id = await create(client, owner, endpoint.resource)
                rows.setdefault(endpoint.resource, item_id)
            item_id = item_id or rows[endpoint.resource]
        if endpoint.op == "create":
            kwargs = await create_request(endpoint.resource, client, owner)
        elif endpoint.op == "update":
            kwargs = {"json": UPDATES[endpoint.resource]}
        calls.append((endpoint.method, endpoint.url(item_id), kwargs))
    return calls


async def assert_refused_everywhere(
    client: httpx.AsyncClient,
    calls: list[tuple[str, str, dict[str, Any]]],
    headers: Headers,
    why: str,
    detail: Refusal,
) -> None:
    """Refused on every route, with the reason (and nothing more) in the problem's detail."""
    for method, url, kwargs in calls:
        response = await client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == 401, (why, method, url, response.status_code, response.text)
        assert_problem(response, 401)
        assert response.json()["detail"] == detail, (why, method, url, response.text)


# --- login ------------------------------------------------------------------------------------


async def test_login_matches_the_email_in_any_case(api: Api, tenant_a: MadeTenant) -> None:
    app, client = api
    local, domain = tenant_a.owner_email.split("@")
    for email in (tenant_a.owner_email, tenant_a.owner_email.upper(), f"{local.title()}@{domain.upper()}"):
        response = await client.post(
            "/auth/login",
            json={"email": email, "password": tenant_a.owner_password},
            headers={"Host": tenant_a.host},
        )
        assert response.status_code == 200, (email, response.text)
        body = response.json()
        assert body["token_type"] == "bearer"
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
        assert body["user"]["id"] == str(tenant_a.tenant.owner_id)
        assert body["user"]["email"] == tenant_a.owner_email
        assert "password" not in body["user"]
        token = jwt.decode(body["access_token"], TEST_SECRET, algorithms=[app.state.token_auth.jwt.algorithm])
        assert token["sub"] == str(tenant_a.tenant.owner_id)
        assert token["extras"]["tid"] == str(tenant_a.tenant.id) and token["jti"]
        assert token["exp"] - token["iat"] == body["expires_in"] == app.state.settings.token_ttl_seconds
        me = await client.get("/auth/me", headers=bearer(tenant_a.host, body["access_token"]))
        assert me.status_code == 200 and me.json()["user"]["id"] == str(tenant_a.tenant.owner_id)


async def test_login_matches_a_mixed_case_stored_email(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    user = await add_user(client, owner_a)
    mixed = "MiXeD." + user.email.upper()
    assert (
        await client.patch(f"/users/{user.id}", json={"email": mixed}, headers=owner_a)
    ).status_code == 200
    for email in (mixed, mixed.lower(), mixed.swapcase()):
        headers = await login(client, tenant_a.host, email, user.password)
        assert (await client.get("/auth/me", headers=headers)).json()["user"]["email"] == mixed


async def test_wrong_password_and_unknown_email_are_indistinguishable(api: Api, tenant_a: MadeTenant) -> None:
    _, client = api
    host = {"Host": tenant_a.host}
    wrong_password = await client.post(
        "/auth/login", json={"email": tenant_a.owner_email, "password": "not-the-password"}, headers=host
    )
    unknown_email = await client.post(
        "/auth/login",
        json={"email": f"nobody-{uuid.uuid4().hex[:6]}@x.example", "password": "x" * 12},
        headers=host,
    )
    assert_problem(wrong_password, 401)
    assert_problem(unknown_email, 401)
    assert wrong_password.content == unknown_email.content
    assert wrong_password.headers["content-type"] == unknown_email.headers["content-type"]


async def test_login_refuses_bad_bodies(api: Api, tenant_a: MadeTenant) -> None:
    _, client = api
    host = {"Host": tenant_a.host}
    malformed = await client.post(
        "/auth/login", content=b'{"email": ', headers={**host, "content-type": "application/json"}
    )
    assert_problem(malformed, 400)
    missing = await client.post("/auth/login", json={"email": tenant_a.owner_email}, headers=host)
    assert "password" in error_fields(assert_problem(missing, 422))
    unknown = await client.post(
        "/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password, "tenant": "other"},
        headers=host,
    )
    assert "tenant" in error_fields(assert_problem(unknown, 422))
    wrong_type = await client.post("/auth/login", json={"email": 5, "password": ["x"]}, headers=host)
    assert error_fields(assert_problem(wrong_type, 422)) & {"email", "password"}
    oversize = await client.post(
        "/auth/login",
        content=json.dumps({"email": "a@b.example", "password": "x" * (1024 * 1024)}).encode(),
        headers={**host, "content-type": "application/json"},
    )
    assert_problem(oversize, 413)


async def test_login_with_text_the_database_cannot_hold_is_refused(api: Api, tenant_a: MadeTenant) -> None:
    """A NUL character cannot be in any stored email: no such user (or invalid), never a 500."""
    _, client = api
    host = {"Host": tenant_a.host}
    for email in ("nul\u0000@example.test", tenant_a.owner_email + "\u0000"):
        nul = await client.post("/auth/login", json={"email": email, "password": "x" * 10}, headers=host)
        assert nul.status_code in {401, 422}, nul.text
        assert_problem(nul, nul.status_code)


# --- /auth/me ---------------------------------------------------------------------------------


async def test_me_returns_the_user_roles_and_permissions(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    _, client = api
    owner_me = await client.get("/auth/me", headers=owner_a)
    assert owner_me.status_code == 200, owner_me.text
    body = owner_me.json()
    assert set(body) == {"user", "roles", "permissions"}
    assert body["user"]["id"] == str(tenant_a.tenant.owner_id)
    assert body["user"]["email"] == tenant_a.owner_email
    assert set(body["user"]) == {"id", "name", "email", "phone", "created_at", "updated_at"}
    assert "Owner" in body["roles"] and body["permissions"] == ["*"]

    roles = (await client.get("/user-roles", params={"limit": 200}, headers=owner_a)).json()["items"]
    member_role = next(r for r in roles if r["name"] == "Member")
    member = await add_user(client, owner_a, role="Member")
    me = (await client.get("/auth/me", headers=member.headers)).json()
    assert me["user"]["id"] == member.id and me["user"]["email"] == member.email
    assert me["roles"] == ["Member"]
    # Effective: what the role's permissions include is spelled out (media:write reads too).
    assert me["permissions"] == effective(frozenset(member_role["permissions"]))
    assert {"media:read", "media:write"} <= set(me["permissions"])
    assert "password" not in owner_me.text and "password" not in str(me)


# --- PATCH /auth/me ---------------------------------------------------------------------------


async def test_every_user_changes_their_own_name_phone_and_password(
    api: Api, owner_a: Headers, tenant_a: MadeTenant
) -> None:
    _, client = api
    # No role at all: changing oneself needs no permission.
    user = await add_user(client, owner_a)
    before = (await client.get("/auth/me", headers=user.headers)).json()["user"]
    new_password = remember_password(f"new-{uuid.uuid4().hex[:12]}")
    changed = await client.patch(
        "/auth/me",
        json={
            "name": "Self Renamed",
            "phone": "+1 555 0199",
            "password": new_password,
            "current_password": user.password,
        },
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert set(body) == {"id", "name", "email", "phone", "created_at", "updated_at"}
    assert (body["id"], body["name"], body["phone"], body["email"]) == (
        user.id,
        "Self Renamed",
        "+1 555 0199",
        user.email,
    )
    assert body["updated_at"] > before["updated_at"]
    assert (await client.get(f"/users/{user.id}", headers=owner_a)).json() == body
    # A new password signs the user out everywhere, the token that changed it included.
    assert_problem(await client.get("/auth/me", headers=user.headers), 401)
    # The new password logs in, the old one no longer does.
    fresh = await login(client, tenant_a.host, user.email, new_password)
    assert (await client.get("/auth/me", headers=fresh)).json()["user"] == body
    refused = await client.post(
        "/auth/login", json={"email": user.email, "password": user.password}, headers={"Host": tenant_a.host}
    )
    assert_problem(refused, 401)
    # A partial change leaves the rest as it is, and signs no one out.
    renamed = await client.patch(
        "/auth/me", json={"name": "Only Name", "current_password": new_password}, headers=fresh
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["phone"]) == ("Only Name", "+1 555 0199")
    assert (await client.get("/auth/me", headers=fresh)).status_code == 200


async def test_me_carries_the_user_rows_etag_and_its_patch_honours_if_match(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    user = await add_user(client, owner_a)
    me = await client.get("/auth/me", headers=user.headers)
    tag = me.headers["ETag"]
    assert tag == (await client.get(f"/users/{user.id}", headers=owner_a)).headers["ETag"]
    proof = {"current_password": user.password}
    renamed = await client.patch(
        "/auth/me", json={"name": "Tagged", **proof}, headers={**user.headers, "If-Match": tag}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.headers["ETag"] != tag
    assert renamed.headers["ETag"] == (await client.get("/auth/me", headers=user.headers)).headers["ETag"]
    # The old tag no longer matches: 412, and the row is as it was.
    stale = await client.patch(
        "/auth/me", json={"name": "Lost", **proof}, headers={**user.headers, "If-Match": tag}
    )
    assert_problem(stale, 412)
    assert (await client.get("/auth/me", headers=user.headers)).json()["user"]["name"] == "Tagged"
    # A wrong password is 403 before a stale tag is 412.
    wrong = {"name": "Lost", "current_password": "not-the-password"}
    assert_problem(await client.patch("/auth/me", json=wrong, headers={**user.headers, "If-Match": tag}), 403)


async def test_changing_oneself_needs_the_current_password(api: Api, owner_a: Headers) -> None:
    _, client = api
    user = await add_user(client, owner_a, role="Member")
    before = (await client.get("/auth/me", headers=user.headers)).json()
    missing = await client.patch("/auth/me", json={"name": "No Proof"}, headers=user.headers)
    assert error_fields(assert_problem(missing, 422)) == {"current_password"}
    for wrong in ("not-the-password", "", user.password + "x", "é" * 80):
        refused = await client.patch(
            "/auth/me",
            json={"name": "Wrong Proof", "password": "another-password-1", "current_password": wrong},
            headers=user.headers,
        )
        assert_problem(refused, 403)
    assert (await client.get("/auth/me", headers=user.headers)).json() == before
    # The password was not changed either.
    await login(client, owner_a["Host"], user.email, user.password)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"password": "é" * 40}, {"password"}),  # 40 characters, 80 bytes: never truncated
        ({"password": "short"}, {"password"}),
        ({"name": ""}, {"name"}),
        ({"phone": "9" * 51}, {"phone"}),
        ({"email": "me@example.test"}, {"email"}),  # not changed here: an admin's job
        ({"name": "", "password": "short", "id": "x"}, {"name", "password", "id"}),
    ],
)
async def test_changing_oneself_follows_the_rules_for_users(
    api: Api, owner_a: Headers, body: dict[str, Any], fields: set[str]
) -> None:
    _, client = api
    user = await add_user(client, owner_a)
    before = (await client.get("/auth/me", headers=user.headers)).json()
    response = await client.patch(
        "/auth/me", json={**body, "current_password": user.password}, headers=user.headers
    )
    assert error_fields(assert_problem(response, 422)) == fields
    assert (await client.get("/auth/me", headers=user.headers)).json() == before


async def test_wrong_current_passwords_count_as_failed_logins(api: Api, owner_a: Headers) -> None:
    _, client = api
    user = await add_user(client, owner_a)
    statuses = []
    for _ in range(7):
        response = await client.patch(
            "/auth/me", json={"name": "Guess", "current_password": "a-wrong-guess"}, headers=user.headers
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [403] * 5 and set(statuses[5:]) == {429}, statuses
    assert "Retry-After" in response.headers


# --- every way a token is refused, on every route -----------------------------------------------


async def test_missing_garbage_and_foreign_tokens_are_refused_on_every_route(
    api: Api, tenant_a: MadeTenant, tenant_b: MadeTenant, owner_a: Headers, owner_b: Headers
) -> None:
    app, client = api
    calls = await requests_for_every_route(app, client, owner_a)
    owner_id, host = str(tenant_a.tenant.owner_id), tenant_a.host
    hour = datetime.timedelta(hours=1)

    # The forging is right: the same claims, correctly signed and unexpired, are accepted.
    valid = claims(owner_id, tenant_a.tenant.id, hour)
    control = forge(app, valid)
    assert (await client.get("/auth/me", headers=bearer(host, control))).status_code == 200

    expired = claims(owner_id, tenant_a.tenant.id, -datetime.timedelta(minutes=5))
    refused = {
        "no token": ({"Host": host}, Refusal.MISSING),
        "garbage": (bearer(host, "not-a-jwt"), Refusal.MALFORMED),
        "another secret": (
            bearer(host, forge(app, claims(owner_id, tenant_a.tenant.id, hour), "x" * 48)),
            Refusal.MALFORMED,
        ),
        "expired": (bearer(host, forge(app, expired)), Refusal.EXPIRED),
        # Only a token this deployment signed is called expired.
        "expired, another secret": (bearer(host, forge(app, expired, "x" * 48)), Refusal.MALFORMED),
        "unknown user": (
            bearer(host, forge(app, claims(str(uuid.uuid4()), tenant_a.tenant.id, hour))),
            Refusal.REVOKED,
        ),
        "other tenant's id in the token": (
            bearer(host, forge(app, claims(owner_id, tenant_b.tenant.id, hour))),
            Refusal.OTHER_TENANT,
        ),
        "other tenant's token": ({**owner_b, "Host": host}, Refusal.OTHER_TENANT),
        "no tenant id": (bearer(host, forge(app, {**valid, "extras": {}})), Refusal.MALFORMED),
        "no jti": (bearer(host, forge(app, _without(valid, "jti"))), Refusal.MALFORMED),
        "no exp": (bearer(host, forge(app, _without(valid, "exp"))), Refusal.MALFORMED),
        "subject not a uuid": (bearer(host, forge(app, {**valid, "sub": "owner"})), Refusal.MALFORMED),
        "unsigned (alg none)": (bearer(host, jwt.encode(valid, None, algorithm="none")), Refusal.MALFORMED),
        # A valid token under another scheme (RFC 6750: Bearer, in any case).
        "basic scheme": ({"Host": host, "Authorization": f"Basic {control}"}, Refusal.NOT_BEARER),
        "no scheme": ({"Host": host, "Authorization": f" {control}"}, Refusal.NOT_BEARER),
        # Another scheme whatever follows it: not read as a token at all ("malformed" before).
        "basic credentials": ({"Host": host, "Authorization": "Basic YWRhOnNlY3JldA=="}, Refusal.NOT_BEARER),
        "token scheme": ({"Host": host, "Authorization": "Token abc"}, Refusal.NOT_BEARER),
    }
    for why, (headers, detail) in refused.items():
        await assert_refused_everywhere(client, calls, headers, why, detail)
    lower = await client.get("/auth/me", headers={"Host": host, "Authorization": f"bearer {control}"})
    assert lower.status_code == 200, lower.text
    # Two Authorization lines, even the same valid token twice: served as neither.
    for second in (control, owner_b["Authorization"].removeprefix("Bearer ")):
        lines = [
            ("Host", host),
            ("Authorization", f"Bearer {control}"),
            ("Authorization", f"Bearer {second}"),
        ]
        twice = await client.get("/auth/me", headers=lines)
        assert twice.status_code == 401 and twice.json()["detail"] == Refusal.REPEATED, twice.text
    # Nothing above changed anything: the owner's own token still works.
    assert (await client.get("/auth/me", headers=owner_a)).status_code == 200


async def test_a_token_that_verified_before_is_refused_once_it_expires(
    api: Api, tenant_a: MadeTenant
) -> None:
    # Verified tokens are remembered per process (tokens.VerifiedToken); expiry must still
    # be checked on every use.
    app, client = api
    soon = claims(str(tenant_a.tenant.owner_id), tenant_a.tenant.id, datetime.timedelta(seconds=2))
    headers = bearer(tenant_a.host, forge(app, soon))
    assert (await client.get("/auth/me", headers=headers)).status_code == 200
    assert (await client.get("/users", headers=headers)).status_code == 200
    await asyncio.sleep(max(0.0, soon["exp"] - time.time()) + 0.2)
    for path in ("/auth/me", "/users"):
        response = await client.get(path, headers=headers)
        assert_problem(response, 401)
        assert response.json()["detail"] == Refusal.EXPIRED


def test_a_full_verified_token_cache_forgets_its_oldest_token_only(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 48
    issuer = TokenAuth(secret, 3600, None, 0)  # type: ignore[arg-type]  # issues tokens only
    tokens = [issuer.issue(uuid.uuid4(), uuid.uuid4()) for _ in range(5)]
    verified: list[str] = []
    original = Token.decode.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Token], encoded_token: str, *args: Any, **kwargs: Any) -> Token:
        verified.append(encoded_token)
        return original(cls, encoded_token, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Token, "decode", classmethod(counting))
    monkeypatch.setattr(token_module, "VERIFIED_TOKENS_MAX", 4)
    monkeypatch.setattr(token_module, "_verified", {})

    def decode(token: str) -> None:
        VerifiedToken.decode(token, secret, "HS256", require_claims=["exp", "sub", "jti"])

    for token in tokens:  # the fifth pushes the first out
        decode(token)
    assert verified == tokens
    for token in tokens[1:]:
        decode(token)
    assert verified == tokens  # the four newest were remembered
    decode(tokens[0])
    assert verified == [*tokens, tokens[0]]


async def test_a_logged_out_token_is_refused_on_every_route(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    app, client = api
    calls = await requests_for_every_route(app, client, owner_a)
    session = await login(client, tenant_a.host, tenant_a.owner_email, tenant_a.owner_password)
    other_session = await login(client, tenant_a.host, tenant_a.owner_email, tenant_a.owner_password)
    assert (await client.get("/auth/me", headers=session)).status_code == 200

    logout = await client.post("/auth/logout", headers=session)
    assert logout.status_code == 204 and logout.content == b""
    await assert_refused_everywhere(client, calls, session, "logged out", Refusal.REVOKED)
    # Only that token: another session of the same user is untouched.
    assert (await client.get("/auth/me", headers=other_session)).status_code == 200


async def test_logout_reaches_every_app_process_even_without_redis(
    settings: Settings, operator_engine: Engine
) -> None:
    # Revocations live in the tenant's own table: two processes that share nothing but
    # the database agree at once, with no Redis at all.
    alone = settings.with_overrides(redis_url=None)
    made = new_tenant(operator_engine, "out")
    async with serve_api(alone) as (_, first), serve_api(alone) as (_, second):
        session = await login(first, made.host, made.owner_email, made.owner_password)
        assert (await second.get("/auth/me", headers=session)).status_code == 200
        assert (await first.post("/auth/logout", headers=session)).status_code == 204
        assert_problem(await second.get("/auth/me", headers=session), 401)
        assert_problem(await second.get("/users", headers=session), 401)
        assert_problem(await second.post("/auth/logout", headers=session), 401)


def revoked_token_ids(engine: Engine, schema: str, user_id: uuid.UUID) -> dict[str, int]:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            f'SELECT revoked_token_ids FROM "{schema}".users WHERE id = %(u)s', {"u": user_id}
        ).scalar_one()


async def test_logout_is_kept_on_the_users_row_and_sweeps_their_expired_revocations(
    api: Api, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    _, client = api
    schema, owner_id = tenant_a.tenant.schema, tenant_a.tenant.owner_id
    now = int(time.time())
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(
            f'UPDATE "{schema}".users SET revoked_token_ids = %(r)s::jsonb WHERE id = %(u)s',
            {"r": json.dumps({"long-expired": now - 3600, "still-valid": now + 3600}), "u": owner_id},
        )
    session = await login(client, tenant_a.host, tenant_a.owner_email, tenant_a.owner_password)
    token = jwt.decode(session["Authorization"].split()[1], options={"verify_signature": False})
    assert (await client.post("/auth/logout", headers=session)).status_code == 204
    # Kept exactly as long as the token itself would have been accepted.
    assert revoked_token_ids(operator_engine, schema, owner_id) == {
        "still-valid": now + 3600,
        token["jti"]: token["exp"],
    }


async def test_concurrent_logouts_of_one_user_are_all_kept(
    api: Api, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    # Each logout rewrites the user's revocations: none may overwrite another's.
    _, client = api
    sessions = [
        await login(client, tenant_a.host, tenant_a.owner_email, tenant_a.owner_password) for _ in range(6)
    ]
    answers = await asyncio.gather(*(client.post("/auth/logout", headers=s) for s in sessions))
    assert [a.status_code for a in answers] == [204] * len(sessions)
    kept = revoked_token_ids(operator_engine, tenant_a.tenant.schema, tenant_a.tenant.owner_id)
    for session in sessions:
        jti = jwt.decode(session["Authorization"].split()[1], options={"verify_signature": False})["jti"]
        assert jti in kept
        assert_problem(await client.get("/auth/me", headers=session), 401)


async def test_a_deleted_users_token_is_refused_on_every_route(
    api: Api, tenant_a: MadeTenant, owner_a: Headers
) -> None:
    app, client = api
    calls = await requests_for_every_route(app, client, owner_a)
    admin = await add_user(client, owner_a, role="Admin")
    assert (await client.get("/users", headers=admin.headers)).status_code == 200
    deleted = await client.delete(f"/users/{admin.id}", headers=owner_a)
    assert deleted.status_code == 204, deleted.text
    await assert_refused_everywhere(client, calls, admin.headers, "deleted user", Refusal.REVOKED)


# --- login throttle ---------------------------------------------------------------------------


async def fail_logins(client: httpx.AsyncClient, host: str, emails: list[str]) -> None:
    for email in emails:
        response = await client.post(
            "/auth/login", json={"email": email, "password": "wrong-password"}, headers={"Host": host}
        )
        assert_problem(response, 401)


def assert_throttled(response: httpx.Response) -> None:
    assert_problem(response, 429)
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= 15 * 60, retry_after


async def attempt(client: httpx.AsyncClient, made: MadeTenant, host: str | None = None) -> httpx.Response:
    """A login with ``made``'s owner's right email and password (on ``host``, default theirs)."""
    return await client.post(
        "/auth/login",
        json={"email": made.owner_email, "password": made.owner_password},
        headers={"Host": host or made.host},
    )


async def test_login_throttle_per_email_in_redis_is_shared_and_per_tenant(
    settings: Settings, real_redis_url: str, operator_engine: Engine
) -> None:
    shared = settings.with_overrides(redis_url=real_redis_url)
    victim, other = new_tenant(operator_engine, "thr"), new_tenant(operator_engine, "thr")
    async with serve_api(shared) as (_, client), serve_api(shared) as (_, second_process):
        # The same email (in another case) and password also exist on the other tenant.
        other_owner = await login(client, other.host, other.owner_email, other.owner_password)
        twin = {"name": "Twin", "email": victim.owner_email.upper(), "phone": "+1 555 0102"}
        created = await client.post(
            "/users", json={**twin, "password": victim.owner_password}, headers=other_owner
        )
        assert created.status_code == 201, created.text

        # Four failures (in mixed case): still below the limit, the right password works.
        await fail_logins(client, victim.host, [victim.owner_email.upper()] * 4)
        assert (await attempt(client, victim)).status_code == 200
        # A success resets the count; five failures then lock the email out, even with
        # the right password, and in every app process sharing the Redis store.
        await fail_logins(client, victim.host, [victim.owner_email] * 3 + [victim.owner_email.upper()] * 2)
        assert_throttled(await attempt(client, victim))
        assert_throttled(await attempt(second_process, victim))
        # Keyed by tenant: the same email on the other tenant logs in.
        assert (await attempt(client, victim, other.host)).status_code == 200


async def test_login_throttle_per_client_in_memory(settings: Settings, operator_engine: Engine) -> None:
    assert settings.redis_url is None
    made = new_tenant(operator_engine, "thr")
    async with serve_api(settings) as (_, client):
        # Twenty failures from one client, each for a different email, stay under the
        # per-email limit; the client is then refused, even for a correct login.
        await fail_logins(client, made.host, [f"guess-{i}@nowhere.example" for i in range(20)])
        assert_throttled(await attempt(client, made))
    # The memory store belongs to that app: a new one starts counting afresh.
    async with serve_api(settings) as (_, client):
        assert (await attempt(client, made)).status_code == 200


async def test_others_failures_at_one_address_do_not_block_a_profile_change(
    settings: Settings, operator_engine: Engine
) -> None:
    """PATCH /auth/me proves one account's password: its guesses count per email only, so a
    stranger's failed logins behind the same address leave a signed-in user's change alone."""
    made = new_tenant(operator_engine, "thr")
    async with serve_api(settings) as (_, client):
        owner = await login(client, made.host, made.owner_email, made.owner_password)
        await fail_logins(client, made.host, [f"guess-{i}@nowhere.example" for i in range(20)])
        assert_throttled(await attempt(client, made))
        change = {"name": "Still Me", "current_password": made.owner_password}
        changed = await client.patch("/auth/me", json=change, headers=owner)
        assert changed.status_code == 200, changed.text
        # Their own wrong guesses still count: five, then 429 even with the right password.
        for _ in range(5):
            wrong = {"name": "x", "current_password": "not-the-password"}
            assert_problem(await client.patch("/auth/me", json=wrong, headers=owner), 403)
        assert_throttled(await client.patch("/auth/me", json=change, headers=owner))


async def test_login_throttle_per_email_in_memory(settings: Settings, operator_engine: Engine) -> None:
    made = new_tenant(operator_engine, "thr")
    async with serve_api(settings) as (_, client):
        await fail_logins(client, made.host, [made.owner_email] * 5)
        assert_throttled(await attempt(client, made))
        # Another email of the same tenant, from the same client, is not locked out.
        unknown = await client.post(
            "/auth/login",
            json={"email": "someone@else.example", "password": "x" * 10},
            headers={"Host": made.host},
        )
        assert_problem(unknown, 401)


# --- login throttle under concurrent bursts ------------------------------------------------------

BURST = 40


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the login handler checks, recorded; each check is slowed so that a
    burst's requests are all in flight together, as over a network."""
    checked: list[str] = []
    lock = threading.Lock()
    real = auth_routes.verify_password

    def counted(password: str, *args: Any) -> bool:
        with lock:
            checked.append(password)
        time.sleep(0.05)
        return real(password, *args)

    monkeypatch.setattr(auth_routes, "verify_password", counted)
    return checked


def _from(app: Litestar, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60)


async def _burst(app: Litestar, made: MadeTenant, addresses: list[str], emails: list[str]) -> list[int]:
    clients = {address: _from(app, address) for address in set(addresses)}
    try:
        responses = await asyncio.gather(
            *(
                clients[address].post(
                    "/auth/login",
                    json={"email": email, "password": "wrong-password"},
                    headers={"Host": made.host},
                )
                for address, email in zip(addresses, emails, strict=True)
            )
        )
    finally:
        for client in clients.values():
            await client.aclose()
    for response in responses:
        if response.status_code == 429:
            assert_throttled(response)
    return [response.status_code for response in responses]


@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize("sources", ["one address", "many addresses"])
async def test_a_burst_for_one_email_checks_exactly_the_limit_of_passwords(
    settings: Settings,
    request: pytest.FixtureRequest,
    operator_engine: Engine,
    password_checks: list[str],
    backend: str,
    sources: str,
) -> None:
    if backend == "redis":
        settings = settings.with_overrides(redis_url=request.getfixturevalue("real_redis_url"))
    made = new_tenant(operator_engine, "thr")
    addresses = ["10.9.0.1"] * BURST if sources == "one address" else [f"10.9.1.{i}" for i in range(BURST)]
    async with serve_api(settings) as (app, _):
        statuses = await _burst(app, made, addresses, [made.owner_email] * BURST)
    assert len(password_checks) == 5, (len(password_checks), sorted(statuses))
    assert sorted(statuses) == [401] * 5 + [429] * (BURST - 5)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_burst_from_one_address_checks_exactly_its_limit_of_passwords(
    settings: Settings,
    request: pytest.FixtureRequest,
    operator_engine: Engine,
    password_checks: list[str],
    backend: str,
) -> None:
    if backend == "redis":
        settings = settings.with_overrides(redis_url=request.getfixturevalue("real_redis_url"))
    made = new_tenant(operator_engine, "thr")
    emails = [f"guess-{i}@nowhere.example" for i in range(BURST)]
    async with serve_api(settings) as (app, _):
        statuses = await _burst(app, made, ["10.9.2.1"] * BURST, emails)
        assert len(password_checks) == 20, (len(password_checks), sorted(statuses))
        assert sorted(statuses) == [401] * 20 + [429] * (BURST - 20)
        # Only that address is refused: the owner logs in from another.
        async with _from(app, "10.9.2.2") as other:
            assert (await attempt(other, made)).status_code == 200


async def test_a_password_set_by_an_admin_signs_the_user_out_everywhere(
    api: Api, owner_a: Headers, tenant_a: MadeTenant
) -> None:
    _, client = api
    user = await add_user(client, owner_a)
    other_device = await login(client, tenant_a.host, user.email, user.password)
    renamed = await client.patch(f"/users/{user.id}", json={"name": "Renamed"}, headers=owner_a)
    assert renamed.status_code == 200, renamed.text
    # Other changes sign no one out.
    for headers in (user.headers, other_device):
        assert (await client.get("/auth/me", headers=headers)).status_code == 200
    new_password = remember_password(f"reset-{uuid.uuid4().hex[:12]}")
    reset = await client.patch(f"/users/{user.id}", json={"password": new_password}, headers=owner_a)
    assert reset.status_code == 200, reset.text
    for headers in (user.headers, other_device):
        assert_problem(await client.get("/auth/me", headers=headers), 401)
        assert_problem(await client.post("/user-groups", json={"name": "x"}, headers=headers), 401)
    fresh = await login(client, tenant_a.host, user.email, new_password)
    assert (await client.get("/auth/me", headers=fresh)).status_code == 200
    # The admin who reset it stays signed in.
    assert (await client.get("/auth/me", headers=owner_a)).status_code == 200
