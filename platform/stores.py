"""Attempt counters for rate limits, atomic, and surviving a Redis outage.

Litestar's stores have no atomic increment: a counter read, compared and written back
lets a concurrent burst through whole (every request reads the same count). Counters
here are taken atomically instead: in Redis by one Lua script that checks every key of
an attempt and increments them together, in process by a check and increment with no
``await`` between them.

With ``REDIS_URL`` every process shares the counters through Redis. When Redis
fails, logins keep being served: the counter falls back to an in-process copy that it
always keeps as well, and Redis is left alone for a short while so that every request
does not wait for its timeout.

The trade-off, chosen on purpose: during an outage login failures are counted per
process. Failing closed instead would turn a cache outage into a full outage of
logins. (Token revocations are not kept here but on the user's row in each tenant's
schema, checked by the query that loads the caller: they hold through an outage.)
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("atrium.stores")
REDIS_TIMEOUT = 0.5
RETRY_AFTER_FAILURE = 1.0
REDIS_PREFIX = "atrium:attempts:"

Limits = Sequence[tuple[str, int]]  # (counter key, most attempts it allows per window)


@runtime_checkable  # handlers take it as a dependency, which Litestar type-checks
class AttemptCounter(Protocol):
    async def take(self, limits: Limits, window: int) -> int:
        """Count one attempt against every key, unless one of them is at its limit.

        Returns 0 when the attempt was counted, else the seconds until the full key's
        window ends (nothing is counted then). A key's window starts with its first attempt.
        """
        ...

    async def give_back(self, key: str) -> None:
        """Uncount one attempt of ``key`` (one that turned out not to be a guess)."""
        ...

    async def reset(self, key: str) -> None: ...


class MemoryCounter:
    """Counters of this process. Each method runs without awaiting, hence atomically on
    the event loop; the lock covers callers on other threads."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._counts: dict[str, tuple[int, float]] = {}  # key → (count, window end)
        self._lock = threading.Lock()
        self.max_keys = max_keys

    def _live(self, key: str, now: float) -> tuple[int, float] | None:
        entry = self._counts.get(key)
        if entry is not None and entry[1] <= now:
            del self._counts[key]
            return None
        return entry

    async def take(self, limits: Limits, window: int) -> int:
        now = time.monotonic()
        with self._lock:
            for key, limit in limits:
                entry = self._live(key, now)
                if (entry[0] if entry else 0) >= limit:  # a limit may be 0 (FallbackCounter)
                    return max(1, math.ceil(entry[1] - now)) if entry else 1
            if len(self._counts) + len(limits) > self.max_keys:
                # Keys come from client input: bounded, expired windows dropped first.
                self._counts = {k: e for k, e in self._counts.items() if e[1] > now}
            for key, _ in limits:
                entry = self._live(key, now)
                self._counts[key] = (entry[0] + 1, entry[1]) if entry else (1, now + window)
        return 0

    async def give_back(self, key: str) -> None:
        with self._lock:
            entry = self._live(key, time.monotonic())
            if entry is not None and entry[0] > 0:
                self._counts[key] = (entry[0] - 1, entry[1])

    async def reset(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


# KEYS: the counters; ARGV[1]: the window in seconds; ARGV[i + 1]: KEYS[i]'s limit.
_TAKE = """
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then
      redis.call('EXPIRE', key, ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    return ttl
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return 0
"""
_GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
"""


class RedisCounter:
    """Counters shared by every process through Redis, each attempt one script call."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)

    async def take(self, limits: Limits, window: int) -> int:
        keys = [REDIS_PREFIX + key for key, _ in limits]
        return int(await self._take(keys=keys, args=[window, *(limit for _, limit in limits)]))

    async def give_back(self, key: str) -> None:
        await self._give_back(keys=[REDIS_PREFIX + key])

    async def reset(self, key: str) -> None:
        await self.client.delete(REDIS_PREFIX + key)


class FallbackCounter:
    """Redis decides while it answers; the local copy of its grants decides when not."""

    def __init__(self, primary: RedisCounter, local: MemoryCounter | None = None) -> None:
        self.primary = primary
        self.local = local or MemoryCounter()
        self._skip_until = 0.0
        # Per key, the takes Redis has not answered yet: each may be a grant there.
        self._asking: collections.Counter[str] = collections.Counter()

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, exc: Exception) -> None:
        if self._available():
            logger.warning("redis counters unavailable (%s); using the in-process copy", exc)
        self._skip_until = time.monotonic() + RETRY_AFTER_FAILURE

    async def take(self, limits: Limits, window: int) -> int:
        if self._available():
            keys = [key for key, _ in limits]
            self._asking.update(keys)
            try:
                shared = await self.primary.take(limits, window)
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                if not shared:
                    await self.local.take(limits, window)  # the copy: a grant, counted
                return shared
            finally:
                self._asking.subtract(keys)
        # Counted once Redis has answered or failed, not before: the requests of a burst
        # that fall back then find every attempt Redis granted meanwhile counted, and the
        # two counters never grant a full limit each (counted before, a burst in which
        # some connections to Redis timed out checked 10 passwords for a limit of 5). The
        # takes Redis is still answering may each be granted there: they are held back
        # from the copy's limit too (a fast failure beside slow answers checked 6 of 5).
        return await self.local.take([(key, limit - self._asking[key]) for key, limit in limits], window)

    async def give_back(self, key: str) -> None:
        await self.local.give_back(key)
        if self._available():
            try:
                await self.primary.give_back(key)
            except (RedisError, OSError) as exc:
                self._failed(exc)

    async def reset(self, key: str) -> None:
        await self.local.reset(key)
        if self._available():
            try:
                await self.primary.reset(key)
            except (RedisError, OSError) as exc:
                self._failed(exc)


@dataclass
class AppStores:
    """The app's counters, and the one Redis client behind them (if any).

    The client is kept here because it is ours to close.
    """

    login_attempts: AttemptCounter
    redis: Redis | None = None

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def app_stores(redis_url: str | None) -> AppStores:
    """Login attempt counters: shared through Redis when there is one."""
    if not redis_url:
        return AppStores(MemoryCounter())
    client = Redis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    return AppStores(FallbackCounter(RedisCounter(client)), client)
