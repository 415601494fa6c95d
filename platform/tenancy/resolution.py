"""Host → tenant resolution, cached in-process, invalidated through Redis pub/sub.

A request costs no extra round trip while its host is cached. Changes to a tenant
(suspend, resume, delete, domains, creation) are published on ``CHANNEL`` by the
operator commands; every app process drops the affected entries at once, so a
suspension is seen everywhere within a second.

While the subscription is down (no ``REDIS_URL``, or Redis unreachable) nothing
would tell us about changes, so entries then live at most ``FALLBACK_TTL`` seconds.
On every (re)subscription the cache is cleared, since messages may have been missed.
While it is live the TTL only bounds a missed message, so an entry that has expired
still answers its request and is looked up again beside it, for up to ``STALE_TTLS``
TTLs: over many tenants, hosts expire all the time, and each synchronous lookup had cost
its request a second pool checkout (the bench's spread tail, bench/RESULTS.md). A window
of one TTL was too short: after a lull of two TTLs (a minute by default) every host of a
spread load was looked up while its request waited, and 1,000 tenants then cost the app
a third more CPU per request for several seconds (ninth pass). What a missed message
exposes stays the first requests after an expiry, answered from the entry while the
refresh beside them brings the change; the longer window lets that entry be older (up to
``STALE_TTLS`` + 1 TTLs since its lookup instead of two).

Written here rather than with ``litestar.channels``: the cache must know whether the
subscription is live at this moment to choose its TTL, which channels does not expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from sqlalchemy import ColumnElement, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from atrium.platform.db.engines import read_only_connection
from atrium.platform.tenancy.registry import Tenant, TenantDomain

CHANNEL = "atrium:tenant-changes"
FALLBACK_TTL = 1.0
ALL_TENANTS = "*"
# Hosts remembered per process, known and unknown (~0.3 KB each).
MAX_HOSTS = 100_000
# While the channel is live, an expired host answers (and is refreshed beside its
# request) for this many TTLs after it expired: five minutes at the default TTL.
STALE_TTLS = 10
# Stale hosts are looked up again together after this delay; hosts looked up together
# (stale, or missed while requests wait) are at most this many per query.
REFRESH_BATCH_DELAY = 0.05
REFRESH_BATCH_MAX = 500
logger = logging.getLogger("atrium.resolution")


def jittered(ttl: float) -> float:
    """A lifetime between three quarters of ``ttl`` and ``ttl``, at random.

    Entries loaded together (after a restart, or a burst over many tenants) would
    otherwise expire together and be looked up again in one burst every TTL, for ever:
    over 1,000 tenants such a wave halved a worker's throughput for several seconds
    (bench/RESULTS.md, seventh pass). Random lifetimes dissolve a wave within a few TTLs.
    """
    return ttl * random.uniform(0.75, 1.0)  # noqa: S311 (spreading load, not a secret)


@dataclass(slots=True)
class _Batch:
    """Hosts looked up together for the requests waiting on them."""

    generation: int  # the resolver's when the first host was asked
    found: asyncio.Future[dict[str, ResolvedTenant]]
    refresh: bool  # stale hosts refreshed beside their requests, which do not wait
    hosts: dict[str, None] = field(default_factory=dict)  # insertion-ordered set

    def __post_init__(self) -> None:
        # Retrieved even when every request waiting on it was cancelled.
        self.found.add_done_callback(lambda f: f.cancelled() or f.exception())


@dataclass(frozen=True, slots=True)
class ResolvedTenant:
    id: uuid.UUID
    slug: str
    schema: str
    status: str
    owner_id: uuid.UUID | None = None

    @property
    def deleting(self) -> bool:
        return self.status == "deleting"

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


def _any_of(column: Any, values: list[str]) -> ColumnElement[bool]:
    """``column = ANY(array)``: one statement whatever the number of values.

    ``IN`` expands to one placeholder per value, so every batch size was a statement of
    its own, and psycopg prepared those that recurred, in the slots (``prepared_max``)
    the tenants' statements need.
    """
    return column == any_(bindparam(None, values, type_=ARRAY(column.type)))


def redis_connection(redis_url: str, **options: Any) -> aioredis.Redis:
    """The asyncio Redis client of the app's channels: the tenant-invalidation listener and
    its publisher here, and the live events' channels plugin (platform/live.py). Timeouts
    short, so a Redis that went away is noticed and the caller falls back."""
    return aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, **options)


class TenantResolver:
    def __init__(
        self,
        engine: AsyncEngine,
        base_domain: str,
        redis_url: str | None = None,
        ttl: float = 30.0,
        max_hosts: int = MAX_HOSTS,
    ) -> None:
        self.engine = engine
        self.base_domain = base_domain
        self.redis_url = redis_url
        self.ttl = ttl
        self._suffix = "." + base_domain
        self._cache: dict[str, tuple[float, ResolvedTenant | None]] = {}
        # Bumped by every invalidation: a lookup that began before it is not stored after it.
        self._generation = 0
        self.max_hosts = max_hosts
        # Hosts gathering for one query (``_join``): missed by requests (False), or served
        # stale and refreshed beside them (True); and the batches' tasks.
        self._open_batches: dict[bool, _Batch] = {}
        self._batches: set[asyncio.Task[None]] = set()
        self._subscribed = False
        self._listener: asyncio.Task[None] | None = None
        self._publisher: aioredis.Redis | None = None
        # Other per-tenant caches (security/caller_cache.py) dropped together with the hosts.
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
            # Expired, with the channel live: answer from the entry and refresh it beside
            # the request (served at most STALE_TTLS + 1 TTLs after its lookup).
            if self._subscribed and now < expires + STALE_TTLS * self.ttl:
                self._refresh_beside(host)
                return tenant
        return await self._look_up_for_request(host)

    async def _look_up_for_request(self, host: str) -> ResolvedTenant | None:
        """Look ``host`` up while its request waits. A request that is cancelled leaves
        the lookup to the others waiting on it (``shield``)."""
        return (await asyncio.shield(self._join(host, refresh=False).found)).get(host)

    def _refresh_beside(self, host: str) -> None:
        """Look ``host`` up again after ``REFRESH_BATCH_DELAY``; nobody waits for it."""
        self._join(host, refresh=True)

    def _join(self, host: str, refresh: bool) -> _Batch:
        """The batch that looks ``host`` up: the open one of its kind, or a new one.

        Hosts are missed and expire in waves (a restart, load spreading over many
        tenants), and one query per host cost a pool checkout and a round trip each, more
        than the requests served meanwhile (bench/RESULTS.md, seventh pass). A batch takes
        every host of its kind until its connection is free: a refresh waits
        ``REFRESH_BATCH_DELAY`` first, so that the requests of that moment add theirs.
        """
        batch = self._open_batches.get(refresh)
        if batch is None or len(batch.hosts) >= REFRESH_BATCH_MAX:
            loop = asyncio.get_running_loop()
            batch = self._open_batches[refresh] = _Batch(self._generation, loop.create_future(), refresh)
            task = loop.create_task(self._run(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
        batch.hosts[host] = None
        return batch

    def _close(self, batch: _Batch) -> None:
        if self._open_batches.get(batch.refresh) is batch:
            del self._open_batches[batch.refresh]

    async def _run(self, batch: _Batch) -> None:
        try:
            if batch.refresh:
                await asyncio.sleep(REFRESH_BATCH_DELAY)
                # Its hosts are already stale: what counts is what the query sees.
                batch.generation = self._generation
            async with read_only_connection(self.engine) as conn:
                # The connection is ours: the hosts added until now are this query's.
                self._close(batch)
                hosts = list(batch.hosts)
                found = await self._lookup(hosts, conn)
        except Exception as exc:
            # The database is down, or no connection came in time: each waiting request
            # reports it, as from a lookup of its own. A refresh has nobody to tell; its
            # hosts stay stale and are queued again by their next request.
            self._close(batch)
            batch.found.set_exception(exc)
            if batch.refresh:
                logger.debug("refreshing %d hosts failed: %s", len(batch.hosts), exc)
            return
        except BaseException:
            self._close(batch)
            batch.found.cancel()
            raise
        # A lookup that an invalidation overtook (since its first host was asked) is
        # answered, not stored.
        self._store(found, hosts, batch.generation)
        batch.found.set_result(found)

    def _store(self, found: dict[str, ResolvedTenant], hosts: list[str], generation: int) -> None:
        """Cache the lookup of ``hosts`` (absent from ``found``: no such tenant), begun at
        ``generation``: a lookup that an invalidation overtook is not stored."""
        if generation != self._generation:
            return
        if len(self._cache) + len(hosts) > self.max_hosts:
            # Any Host header reaches this cache (unknown hosts are cached too): bounded, so
            # that a stream of made-up names cannot grow it without end. Expired entries go
            # first; if that is not enough, everything (each host is simply looked up again).
            now = time.monotonic()
            self._cache = {h: entry for h, entry in self._cache.items() if entry[0] > now}
            if len(self._cache) + len(hosts) > self.max_hosts:
                self._cache.clear()
        now = time.monotonic()
        for host in hosts:
            self._cache[host] = (now + jittered(self.current_ttl), found.get(host))

    async def _lookup(self, hosts: list[str], conn: AsyncConnection) -> dict[str, ResolvedTenant]:
        """The tenants of ``hosts`` that have one: subdomains by slug, others by domain."""
        by_slug: dict[str, str] = {}
        domains: list[str] = []
        for host in hosts:
            label = host[: -len(self._suffix)] if host.endswith(self._suffix) else None
            if label is not None and "." not in label:
                by_slug[label] = host
            else:
                domains.append(host)
        columns = (Tenant.id, Tenant.slug, Tenant.schema_name, Tenant.status, Tenant.owner_id)
        found: dict[str, ResolvedTenant] = {}
        if by_slug:
            result = await conn.execute(select(*columns).where(_any_of(Tenant.slug, list(by_slug))))
            for row in result:
                found[by_slug[row.slug]] = ResolvedTenant(*row)
        if domains:
            query = select(*columns, TenantDomain.domain).join(TenantDomain)
            for *row, domain in await conn.execute(query.where(_any_of(TenantDomain.domain, domains))):
                found[domain] = ResolvedTenant(*row)
        return found

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
        for batch in self._open_batches.values():  # its task may be cancelled before it ran
            batch.found.cancel()
        self._open_batches.clear()
        pending = list(self._batches)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
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
        """Tell every app process that a tenant changed (from inside the app). Without
        Redis the only process that can be told is this one: its listeners hear it at once
        (with Redis they hear it from the channel, as every other process does)."""
        if not self.redis_url:
            self.invalidate(str(tenant_id))
            return
        try:
            if self._publisher is None:
                self._publisher = redis_connection(self.redis_url, socket_timeout=2)
            await self._publisher.publish(CHANNEL, str(tenant_id))
        except (redis.RedisError, OSError) as exc:
            # The change is committed; other processes catch up within their cache TTL.
            logger.warning("could not publish tenant change (%s); caches expire within their TTL", exc)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            client = redis_connection(self.redis_url or "", health_check_interval=5)
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
