"""Remembered callers (platform/callers.py): reads reuse them, changes drop them everywhere."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import Engine

from atrium.platform.security.caller_cache import CallerCache
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ALL_TENANTS
from tests.api import Headers, TenantUser, add_user
from tests.conftest import MadeTenant, login_owner, serve
from tests.test_invalidation import _subscribed


def remembered(app: Litestar, made: MadeTenant, user: TenantUser) -> bool:
    callers = app.state.token_auth.callers
    return callers.get(made.tenant.id, uuid.UUID(user.id)) is not None


async def member_link(client: httpx.AsyncClient, owner: Headers, member: TenantUser) -> str:
    rows = (await client.get("/user-meta?limit=200", headers=owner)).json()["items"]
    return next(row["id"] for row in rows if row["owner_id"] == member.id)


async def wait_for_status(client: httpx.AsyncClient, headers: Headers, status: int, within: float) -> float:
    started = time.monotonic()
    while True:
        response = await client.get("/users", headers=headers)
        elapsed = time.monotonic() - started
        if response.status_code == status:
            return elapsed
        assert elapsed < within, f"still {response.status_code} after {elapsed:.2f}s"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("channel", ["redis", "none"])
async def test_a_lost_permission_reaches_another_process(
    channel: str, settings: Settings, real_redis_url: str, make_tenant: Callable[..., MadeTenant]
) -> None:
    redis_url = real_redis_url if channel == "redis" else None
    shared = settings.with_overrides(redis_url=redis_url, tenant_cache_ttl=300)
    made = make_tenant()
    async with serve(shared) as (app_a, a), serve(shared) as (app_b, b):
        if redis_url:
            await _subscribed(app_a, app_b)
        owner = await login_owner(a, made)
        member = await add_user(a, owner, role="Member")
        for app, client in ((app_a, a), (app_b, b)):
            assert (await client.get("/users", headers=member.headers)).status_code == 200
            assert remembered(app, made, member)

        link = await member_link(a, owner, member)
        assert (await a.delete(f"/user-meta/{link}", headers=owner)).status_code == 204
        # In the process that made the change: at once.
        assert (await a.get("/users", headers=member.headers)).status_code == 403
        # In the other: through the channel (entries would live 300 s here), else when the
        # entry expires (1 s without a channel).
        await wait_for_status(b, member.headers, 403, within=3.0)


@pytest.mark.parametrize(
    ("ending", "request_"),
    [
        ("user deleted", lambda member: ("DELETE", f"/users/{member.id}", "owner")),
        ("logout", lambda member: ("POST", "/auth/logout", "member")),
    ],
)
async def test_a_caller_that_ended_is_refused_at_once_even_while_remembered(
    ending: str,
    request_: Callable[[TenantUser], tuple[str, str, str]],
    settings: Settings,
    make_tenant: Callable[..., MadeTenant],
) -> None:
    # No channel: only the database check can refuse the remembered caller in time.
    alone = settings.with_overrides(redis_url=None)
    made = make_tenant()
    async with serve(alone) as (_, a), serve(alone) as (app_b, b):
        owner = await login_owner(a, made)
        member = await add_user(a, owner, role="Member")
        assert (await b.get("/users", headers=member.headers)).status_code == 200
        assert remembered(app_b, made, member)
        method, path, actor = request_(member)
        headers = owner if actor == "owner" else member.headers
        assert (await a.request(method, path, headers=headers)).status_code == 204, ending
        assert (await b.get("/users", headers=member.headers)).status_code == 401


async def test_a_profile_change_is_seen_by_me_at_once(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    async with serve(settings) as (_, client):
        owner = await login_owner(client, made)
        assert (await client.get("/auth/me", headers=owner)).json()["user"]["name"] == "Owner"
        me = (await client.get("/auth/me", headers=owner)).json()["user"]
        renamed = await client.patch(f"/users/{me['id']}", json={"name": "Renamed"}, headers=owner)
        assert renamed.status_code == 200, renamed.text
        assert (await client.get("/auth/me", headers=owner)).json()["user"]["name"] == "Renamed"


@pytest.mark.parametrize("channel", ["redis", "none"])
async def test_callers_are_remembered_for_their_own_ttl_while_the_channel_is_live(
    channel: str, settings: Settings, real_redis_url: str
) -> None:
    redis_url = real_redis_url if channel == "redis" else None
    configured = settings.with_overrides(redis_url=redis_url, tenant_cache_ttl=30, caller_cache_ttl=120)
    async with serve(configured) as (app, _):
        if redis_url:
            await _subscribed(app)
        # Hosts and callers have TTLs of their own; without the channel both fall to 1 s.
        expected = (30.0, 120.0) if redis_url else (1.0, 1.0)
        assert (app.state.resolver.current_ttl, app.state.token_auth.caller_ttl()) == expected


def test_a_caller_loaded_before_an_invalidation_is_not_stored_after_it() -> None:
    cache = CallerCache()
    tenant, user = uuid.uuid4(), uuid.uuid4()
    generation = cache.generation
    cache.forget(str(tenant))  # a change committed while the caller was being loaded
    cache.put(tenant, user, "stale", ttl=30, generation=generation)
    assert cache.get(tenant, user) is None
    cache.put(tenant, user, "fresh", ttl=30, generation=cache.generation)
    assert cache.get(tenant, user) == "fresh"
    cache.forget(ALL_TENANTS)
    assert cache.get(tenant, user) is None


def test_the_cache_is_bounded_and_entries_expire() -> None:
    cache = CallerCache(max_entries=3)
    tenant = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(4)]
    for user in users:
        cache.put(tenant, user, user, ttl=30, generation=cache.generation)
    assert sum(cache.get(tenant, u) is not None for u in users) <= 3
    cache.put(tenant, users[0], "short", ttl=0.01, generation=cache.generation)
    time.sleep(0.02)
    assert cache.get(tenant, users[0]) is None


@pytest.mark.parametrize("channel", ["redis", "none"])
async def test_an_expired_caller_answers_while_reloaded_only_while_the_channel_is_live(
    channel: str,
    settings: Settings,
    real_redis_url: str,
    make_tenant: Callable[..., MadeTenant],
    operator_engine: Engine,
) -> None:
    redis_url = real_redis_url if channel == "redis" else None
    # Expires within 1.5-2 s; then usable for 1.5-2 s more, unless reloaded.
    ttl = 2.0
    made = make_tenant()
    async with serve(settings.with_overrides(redis_url=redis_url, caller_cache_ttl=ttl)) as (app, client):
        if redis_url:
            await _subscribed(app)
        owner = await login_owner(client, made)
        member = await add_user(client, owner, role="Member")
        assert (await client.get("/users", headers=member.headers)).status_code == 200
        assert remembered(app, made, member)
        # A change whose message went missing (plain SQL: nothing is published).
        with operator_engine.begin() as conn:
            conn.exec_driver_sql(
                f'DELETE FROM "{made.tenant.schema}".user_meta WHERE owner_id = %(u)s', {"u": member.id}
            )
        await asyncio.sleep(ttl + 0.1)
        response = await client.get("/users", headers=member.headers)
        if redis_url:
            # Expired, so reloaded beside the request; the request itself did not wait for it.
            assert response.status_code == 200
            await wait_for_status(client, member.headers, 403, within=0.8)
        else:
            # Without the channel an expired caller is never used: loaded in the request.
            assert response.status_code == 403
        assert not app.state.token_auth._stale


def test_an_expired_caller_is_usable_only_within_its_stale_window() -> None:
    cache = CallerCache()
    tenant, user = uuid.uuid4(), uuid.uuid4()
    cache.put(tenant, user, "kept", ttl=0.01, generation=cache.generation, stale_for=30)
    time.sleep(0.02)
    assert cache.lookup(tenant, user) == ("kept", True)
    assert cache.get(tenant, user) is None
    cache.put(tenant, user, "gone", ttl=0.01, generation=cache.generation)
    time.sleep(0.02)
    assert cache.lookup(tenant, user) == (None, False)
