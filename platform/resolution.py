"""Host → tenant resolution, cached in-process, invalidated through Redis pub/sub.

A request costs no extra round trip while its host is cached. Changes to a tenant
(suspend, resume, delete, domains, creation) are published on ``CHANNEL`` by the
operator commands; every app process drops the affected entries at once, so a
suspension is seen everywhere within a second.

While the subscription is down (no ``REDIS_URL``, or Redis unreachable) nothing
would tell us about changes, so entries then live at most ``FALLBACK_TTL`` seconds.
On every (re)subscription the cache is cleared, since messages may have been missed.
While it is live the TTL only bounds a missed message, so an entry that has just
expired still answers its request and is looked up again beside it: over many tenants,
hosts expire all the time, and each synchronous lookup had cost its request a second
pool checkout (the bench's spread tail, bench/RESULTS.md).

Written here rather than with ``litestar.channels``: the cache must know whether the
subscription is live at this moment to choose its TTL, which channels does not expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.platform.registry import Tenant, TenantDomain

CHANNEL = "atrium:tenant-changes"
FALLBACK_TTL = 1.0
ALL_TENANTS = "*"
logger = logging.getLogger("atrium.resolution")


@dataclass(frozen=True, slots=True)
class ResolvedTenant:
    id: uuid.UUID
    slug: str
    schema: str
    status: str
    owner_id: uuid.UUID | None = None

    @property
    def suspended(self) -> bool:
        return self.status != "active"


def publish_tenant_change(redis_url: str | None, tenant_id: uuid.UUID | str = ALL_TENANTS) -> None:
    """Tell every app process that a tenant changed (called by operator commands)."""
    if not redis_url:
        return
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.publish(CHANNEL, str(tenant_id))
    except redis.RedisError as exc:
        # The change itself is committed; processes catch up within their cache TTL.
        logger.warning("could not publish tenant change (%s); caches expire within their TTL", exc)
    finally:
        client.close()


class TenantResolver:
    def __init__(
        self,
        engine: AsyncEngine,
        base_domain: str,
        redis_url: str | None = None,
        ttl: float = 30.0,
    ) -> None:
        self.engine = engine
        self.base_domain = base_domain
        self.redis_url = redis_url
        self.ttl = ttl
        self._suffix = "." + base_domain
        self._cache: dict[str, tuple[float, ResolvedTenant | None]] = {}
        # Bumped by every invalidation: a lookup that began before it is not stored after it.
        self._generation = 0
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._subscribed = False
        self._listener: asyncio.Task[None] | None = None
        self._publisher: aioredis.Redis | None = None
        # Other per-tenant caches (callers.py) dropped together with the hosts.
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(tenant_id)`` on every invalidation (``ALL_TENANTS``: everything)."""
        self._listeners.append(listener)

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    @property
    def current_ttl(self) -> float:
        return self.ttl_while_live(self.ttl)

    def ttl_while_live(self, seconds: float) -> float:
        """``seconds`` while changes arrive through the channel, else at most ``FALLBACK_TTL``."""
        return seconds if self._subscribed else min(seconds, FALLBACK_TTL)

    def is_apex(self, host: str) -> bool:
        return host == self.base_domain

    async def resolve(self, host: str) -> ResolvedTenant | None:
        """The tenant of a normalised host name, or None when no tenant has it."""
        now = time.monotonic()
        cached = self._cache.get(host)
        if cached is not None:
            expires, tenant = cached
            if expires > now:
                return tenant
            # Expired less than one TTL ago, with the channel live: answer from the entry
            # and refresh it beside the request (served at most two TTLs after its lookup).
            if self._subscribed and now < expires + self.ttl:
                self._refresh_beside(host)
                return tenant
        return await self._lookup_and_store(host)

    async def _lookup_and_store(self, host: str) -> ResolvedTenant | None:
        generation = self._generation
        tenant = await self._lookup(host)
        if generation == self._generation:
            self._cache[host] = (time.monotonic() + self.current_ttl, tenant)
        return tenant

    def _refresh_beside(self, host: str) -> None:
        if host in self._refreshing:
            return
        task = asyncio.get_running_loop().create_task(self._refresh(host))
        self._refreshing[host] = task

    async def _refresh(self, host: str) -> None:
        try:
            await self._lookup_and_store(host)
        except Exception as exc:
            # Whatever went wrong (the database is down), the next request that needs the
            # database reports it; a background task has nobody to tell.
            logger.debug("refreshing %s failed: %s", host, exc)
        finally:
            self._refreshing.pop(host, None)

    async def _lookup(self, host: str) -> ResolvedTenant | None:
        columns = (Tenant.id, Tenant.slug, Tenant.schema_name, Tenant.status, Tenant.owner_id)
        label = host[: -len(self._suffix)] if host.endswith(self._suffix) else None
        if label is not None and "." not in label:
            query = select(*columns).where(Tenant.slug == label)
        else:
            query = select(*columns).join(TenantDomain).where(TenantDomain.domain == host)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else ResolvedTenant(*row)

    def invalidate(self, tenant_id: str = ALL_TENANTS) -> None:
        self._generation += 1
        for listener in self._listeners:
            listener(tenant_id)
        if tenant_id == ALL_TENANTS:
            self._cache.clear()
            return
        # Drop the tenant's own entries, and every negative entry: a new tenant or a
        # new domain must be found at once.
        for host, (_, tenant) in list(self._cache.items()):
            if tenant is None or str(tenant.id) == tenant_id:
                self._cache.pop(host, None)

    async def start(self) -> None:
        if self.redis_url and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="atrium-tenant-invalidation")

    async def stop(self) -> None:
        refreshing = list(self._refreshing.values())
        for task in refreshing:
            task.cancel()
        await asyncio.gather(*refreshing, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._subscribed = False
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()
            self._publisher = None

    async def publish(self, tenant_id: uuid.UUID | str) -> None:
        """Tell every app process that a tenant changed (from inside the app)."""
        if not self.redis_url:
            return
        try:
            if self._publisher is None:
                self._publisher = aioredis.Redis.from_url(
                    self.redis_url, socket_timeout=2, socket_connect_timeout=2
                )
            await self._publisher.publish(CHANNEL, str(tenant_id))
        except (redis.RedisError, OSError) as exc:
            # The change is committed; other processes catch up within their cache TTL.
            logger.warning("could not publish tenant change (%s); caches expire within their TTL", exc)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            client = aioredis.Redis.from_url(
                self.redis_url or "", socket_connect_timeout=2, health_check_interval=5
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._subscribed = True
                self.invalidate(ALL_TENANTS)
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self.invalidate(data.decode() if isinstance(data, bytes) else str(data))
            except (redis.RedisError, OSError) as exc:
                if self._subscribed:
                    self.invalidate(ALL_TENANTS)  # entries made under the long TTL
                    logger.warning(
                        "tenant invalidation channel lost (%s); cache TTL now %ss", exc, FALLBACK_TTL
                    )
                self._subscribed = False
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
