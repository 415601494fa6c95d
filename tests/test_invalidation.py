"""Tenant changes reach every app process within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import Engine

from atrium.platform.settings import Settings
from atrium.platform.tenancy import resolution
from atrium.platform.tenancy.admin import add_domain, set_status
from atrium.platform.tenancy.provisioning import delete_tenant
from atrium.platform.tenancy.registry import TenantStatus
from atrium.platform.tenancy.resolution import STALE_TTLS, publish_tenant_change
from tests.conftest import MadeTenant, serve, statements_run
from tests.probes import PROBES


async def _wait_for_status(client: httpx.AsyncClient, host: str, status: int, within: float) -> float:
    started = time.monotonic()
    while True:
        response = await client.get("/probe/users", headers={"Host": host})
        elapsed = time.monotonic() - started
        if response.status_code == status:
            return elapsed
        assert elapsed < within, f"{host} still answers {response.status_code} after {elapsed:.2f}s"
        await asyncio.sleep(0.02)


async def _subscribed(*apps: object) -> None:
    for _ in range(200):
        if all(app.state.resolver.subscribed for app in apps):  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the app never subscribed to tenant changes")


async def test_suspension_and_deletion_reach_a_second_instance_through_redis(
    settings: Settings, real_redis_url: str, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    # A long TTL, so that only the pushed invalidation can explain a change within 1 s.
    with_redis = settings.with_overrides(redis_url=real_redis_url, tenant_cache_ttl=300)
    made = make_tenant()
    async with serve(with_redis, PROBES) as (app1, one), serve(with_redis, PROBES) as (app2, two):
        await _subscribed(app1, app2)
        for client in (one, two):  # warm both caches
            assert (await client.get("/probe/users", headers={"Host": made.host})).status_code == 200

        set_status(operator_engine, made.slug, TenantStatus.SUSPENDED)
        publish_tenant_change(real_redis_url, made.tenant.id)
        for client in (one, two):
            assert await _wait_for_status(client, made.host, 403, within=1.0) < 1.0

        set_status(operator_engine, made.slug, TenantStatus.ACTIVE)
        publish_tenant_change(real_redis_url, made.tenant.id)
        for client in (one, two):
            await _wait_for_status(client, made.host, 200, within=1.0)

        domain = f"app.{made.slug}.example.net"
        assert (await two.get("/probe/users", headers={"Host": domain})).status_code == 404  # negative entry
        add_domain(operator_engine, made.slug, domain, "localhost")
        publish_tenant_change(real_redis_url, made.tenant.id)
        await _wait_for_status(two, domain, 200, within=1.0)

        delete_tenant(operator_engine, made.slug)
        publish_tenant_change(real_redis_url, made.tenant.id)
        for client in (one, two):
            await _wait_for_status(client, made.host, 404, within=1.0)


async def test_without_redis_the_cache_lives_at_most_a_second(
    settings: Settings, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    made = make_tenant()
    no_redis = settings.with_overrides(redis_url=None, tenant_cache_ttl=300)
    async with serve(no_redis, PROBES) as (app, client):
        assert app.state.resolver.current_ttl <= 1.0
        assert (await client.get("/probe/users", headers={"Host": made.host})).status_code == 200
        set_status(operator_engine, made.slug, TenantStatus.SUSPENDED)
        await _wait_for_status(client, made.host, 403, within=1.5)


@asynccontextmanager
async def _suspended_unannounced(
    settings: Settings, redis_url: str, ttl: float, made: MadeTenant, operator_engine: Engine
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app (channel live, host TTL ``ttl``) that has cached ``made``'s host,
    which is then suspended with its message missed: a change only the TTL can bring."""
    async with serve(settings.with_overrides(redis_url=redis_url, tenant_cache_ttl=ttl), PROBES) as (
        app,
        client,
    ):
        await _subscribed(app)
        assert (await client.get("/probe/users", headers={"Host": made.host})).status_code == 200
        set_status(operator_engine, made.slug, TenantStatus.SUSPENDED)
        yield client


async def test_while_the_channel_is_live_an_expired_host_answers_and_is_refreshed_beside_it(
    settings: Settings, real_redis_url: str, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    ttl = 0.4  # expires within 0.3-0.4 s, then answers while stale for STALE_TTLS TTLs more
    made = make_tenant()
    async with _suspended_unannounced(settings, real_redis_url, ttl, made, operator_engine) as client:
        # A lull of several TTLs (within the stale window), as between bursts of traffic.
        assert STALE_TTLS >= 4
        await asyncio.sleep(3 * ttl)
        # The expired entry answers (no request waits for a lookup it can do without) ...
        assert (await client.get("/probe/users", headers={"Host": made.host})).status_code == 200
        # ... and the lookup made beside it brings the change.
        await _wait_for_status(client, made.host, 403, within=1.0)


async def test_an_entry_expired_beyond_the_stale_window_is_looked_up_while_its_request_waits(
    settings: Settings,
    real_redis_url: str,
    make_tenant: Callable[..., MadeTenant],
    operator_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ttl = 0.2
    monkeypatch.setattr(resolution, "STALE_TTLS", 2)  # stale for up to 0.4 s after expiry
    made = make_tenant()
    async with _suspended_unannounced(settings, real_redis_url, ttl, made, operator_engine) as client:
        await asyncio.sleep(ttl + 2 * ttl + 0.2)
        assert (await client.get("/probe/users", headers={"Host": made.host})).status_code == 403


async def test_a_lookup_that_began_before_an_invalidation_is_not_stored(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    async with serve(settings, PROBES) as (app, _):
        resolver = app.state.resolver
        looking_up = asyncio.ensure_future(resolver.resolve(made.host))
        await asyncio.sleep(0)  # the lookup has begun and awaits the database
        resolver.invalidate(str(made.tenant.id))
        assert (await looking_up) is not None
        assert made.host not in resolver._cache


async def test_hosts_that_expire_together_are_looked_up_again_together(
    settings: Settings, real_redis_url: str, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    ttl = 2.0  # entries expire within 1.5-2 s and stay usable while stale for 1.5-2 s more
    made = [make_tenant() for _ in range(12)]
    domain = f"app.{made[0].slug}.example.net"
    add_domain(operator_engine, made[0].slug, domain, "localhost")
    hosts = [m.host for m in made] + [domain, "nobody-here.localhost"]
    async with serve(settings.with_overrides(redis_url=real_redis_url, tenant_cache_ttl=ttl), PROBES) as (
        app,
        client,
    ):
        await _subscribed(app)
        for host in hosts:
            await client.get("/probe/users", headers={"Host": host})
        with statements_run(app.state.engine, "platform.tenants") as lookups:
            # Changes whose messages went missing: only the TTL can bring them.
            for m in made[::2]:
                set_status(operator_engine, m.slug, TenantStatus.SUSPENDED)
            await asyncio.sleep(ttl + 0.1)
            answers = await asyncio.gather(*(client.get("/probe/users", headers={"Host": h}) for h in hosts))
            # Every stale entry answered at once, as before the change ...
            assert [a.status_code for a in answers] == [200] * (len(hosts) - 1) + [404]
            # ... and the changes arrive through lookups of many hosts at once (one per
            # slug batch and one per domain batch; one per host before).
            await _wait_for_status(client, made[0].host, 403, within=1.0)
            await _wait_for_status(client, domain, 403, within=1.0)
        assert 1 <= len(lookups) <= len(hosts) // 3, lookups
        for m in made:
            expected = 403 if m in made[::2] else 200
            assert (await client.get("/probe/users", headers={"Host": m.host})).status_code == expected
        assert (await client.get("/probe/users", headers={"Host": hosts[-1]})).status_code == 404
        # No batch is left open (one may still be gathering the hosts that expired again
        # during the requests above: it runs within REFRESH_BATCH_DELAY).
        await asyncio.wait_for(asyncio.gather(*app.state.resolver._batches), timeout=2.0)
        assert not app.state.resolver._open_batches


async def test_the_host_cache_is_bounded(settings: Settings, make_tenant: Callable[..., MadeTenant]) -> None:
    made = make_tenant()
    async with serve(settings, PROBES) as (app, client):
        resolver = app.state.resolver
        resolver.max_hosts = 10
        for i in range(35):
            response = await client.get("/probe/users", headers={"Host": f"made-up-{i}.localhost"})
            assert response.status_code == 404
            assert len(resolver._cache) <= resolver.max_hosts
        assert (await client.get("/probe/users", headers={"Host": made.host})).status_code == 200
        assert made.host in resolver._cache
    assert resolution.MAX_HOSTS >= 10_000


async def test_hosts_missed_together_are_looked_up_in_one_query(
    settings: Settings, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    made = [make_tenant() for _ in range(8)]
    domain = f"app.{made[0].slug}.example.net"
    add_domain(operator_engine, made[0].slug, domain, "localhost")
    hosts = [m.host for m in made] + [domain, "nobody-here.localhost"]
    async with serve(settings, PROBES) as (app, _):
        resolver = app.state.resolver
        with statements_run(app.state.engine, "platform.tenants") as lookups:
            resolved = await asyncio.gather(*(resolver.resolve(h) for h in hosts))
        assert [t.id if t else None for t in resolved] == [m.tenant.id for m in made] + [
            made[0].tenant.id,
            None,
        ]
        assert len(lookups) == 2, lookups  # the slugs, then the custom domain
        assert all(h in resolver._cache for h in hosts)
        # A lookup that fails reaches every request that waited on it.
        await app.state.engine.dispose()
        broken = settings.with_overrides(database_url="postgresql://root@127.0.0.1:1/nowhere")
        async with serve(broken, PROBES) as (down, _):
            results = await asyncio.gather(
                *(down.state.resolver.resolve(h) for h in hosts[:3]), return_exceptions=True
            )
            assert all(isinstance(r, Exception) for r in results), results
            assert not down.state.resolver._open_batches
