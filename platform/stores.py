"""Stores for login failure counters that survive a Redis outage.

With ``REDIS_URL`` every process shares the counters through Redis. When Redis
fails, logins keep being served: the store falls back to an in-process copy that it
always keeps as well, and Redis is left alone for a short while so that every request
does not wait for its timeout.

The trade-off, chosen on purpose: during an outage login failures are counted per
process. Failing closed instead would turn a cache outage into a full outage of
logins. (Token revocations are not kept here but on the user's row in each tenant's
schema, checked by the query that loads the caller: they hold through an outage.)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("atrium.stores")
REDIS_TIMEOUT = 0.5
RETRY_AFTER_FAILURE = 1.0


class FallbackStore(Store):
    """Writes go to both stores; reads prefer Redis and fall back to the local copy."""

    def __init__(self, primary: Store, local: Store | None = None) -> None:
        self.primary = primary
        self.local = local or MemoryStore()
        self._skip_until = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, exc: Exception) -> None:
        if self._available():
            logger.warning("redis store unavailable (%s); using the in-process copy", exc)
        self._skip_until = time.monotonic() + RETRY_AFTER_FAILURE

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        await self.local.set(key, value, expires_in)
        if self._available():
            try:
                await self.primary.set(key, value, expires_in)
            except (RedisError, OSError) as exc:
                self._failed(exc)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        if self._available():
            try:
                return await self.primary.get(key, renew_for)
            except (RedisError, OSError) as exc:
                self._failed(exc)
        return await self.local.get(key, renew_for)

    async def delete(self, key: str) -> None:
        await self.local.delete(key)
        if self._available():
            try:
                await self.primary.delete(key)
            except (RedisError, OSError) as exc:
                self._failed(exc)

    async def delete_all(self) -> None:
        await self.local.delete_all()
        await self.primary.delete_all()

    async def exists(self, key: str) -> bool:
        if await self.local.exists(key):
            return True
        if self._available():
            try:
                return await self.primary.exists(key)
            except (RedisError, OSError) as exc:
                self._failed(exc)
        return False

    async def expires_in(self, key: str) -> int | None:
        if self._available():
            try:
                return await self.primary.expires_in(key)
            except (RedisError, OSError) as exc:
                self._failed(exc)
        return await self.local.expires_in(key)


@dataclass
class AppStores:
    """The app's stores, and the one Redis client behind all of them (if any).

    The client is kept here because it is ours to close: ``RedisStore`` exposes no
    public way to reach the client it was given.
    """

    stores: dict[str, Store]
    redis: Redis | None = None

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def app_stores(redis_url: str | None) -> AppStores:
    """Login failure counters: shared through Redis when there is one."""
    if not redis_url:
        return AppStores({"login_failures": MemoryStore()})
    client = Redis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    root = RedisStore(client, namespace="atrium")
    return AppStores({"login_failures": FallbackStore(root.with_namespace("login"))}, client)
