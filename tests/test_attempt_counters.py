"""The login attempt counters (platform/stores.py) on a real Redis, with some of its calls
failing as connections time out under load."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from atrium.platform.stores import FallbackCounter, Limits, RedisCounter

LIMIT = 5


class _Scripted(RedisCounter):
    """The real counter, its calls in turn following ``script``: (delay, fails) each, the
    real answer once the script is used up."""

    def __init__(self, client: Redis, script: list[tuple[float, bool]]) -> None:
        super().__init__(client)
        self.script = iter(script)

    async def take(self, limits: Limits, window: int) -> int:
        delay, fails = next(self.script, (0.0, False))
        if delay:
            await asyncio.sleep(delay)
        if fails:
            raise RedisConnectionError("Timeout connecting to server")
        return await super().take(limits, window)


async def _burst(counter: FallbackCounter, limits: Limits) -> list[int]:
    return list(await asyncio.gather(*(counter.take(limits, 60) for _ in range(2 * LIMIT))))


async def test_a_burst_in_which_some_redis_calls_fail_grants_no_more_than_the_limit(
    real_redis_url: str,
) -> None:
    """Half the burst falls back to the in-process copy: Redis and the copy must not each
    grant a full limit (10 password checks for a limit of 5 in a CI run)."""
    client = Redis.from_url(real_redis_url)
    try:
        # The first calls fail late, after the others answered.
        counter = FallbackCounter(_Scripted(client, [(0.05, True)] * LIMIT))
        limits = [(f"test:{uuid.uuid4()}", LIMIT)]
        answers = await _burst(counter, limits)
        assert answers.count(0) == LIMIT, answers
        # Redis down from here on: the copy goes on from what was granted.
        assert await counter.take(limits, 60) > 0
    finally:
        await client.aclose()


async def test_while_redis_answers_the_copy_counts_only_its_grants(real_redis_url: str) -> None:
    client = Redis.from_url(real_redis_url)
    try:
        counter = FallbackCounter(RedisCounter(client))
        limits = [(f"test:{uuid.uuid4()}", LIMIT)]
        answers = [await counter.take(limits, 60) for _ in range(LIMIT + 2)]
        assert answers[:LIMIT] == [0] * LIMIT and all(answers[LIMIT:]), answers
        # The copy alone now refuses too: it counted the five grants, no more, no fewer.
        assert await counter.local.take(limits, 60) > 0
    finally:
        await client.aclose()


async def test_a_failure_beside_answers_still_on_their_way_grants_no_more_than_the_limit(
    real_redis_url: str,
) -> None:
    """The calls that fail first fall back while Redis is still granting the others: those
    grants are held back from the copy (a CI burst checked 6 passwords for a limit of 5)."""
    client = Redis.from_url(real_redis_url)
    try:
        # The first calls are answered late; the next fail at once.
        counter = FallbackCounter(_Scripted(client, [(0.05, False)] * LIMIT + [(0.0, True)] * LIMIT))
        limits = [(f"test:{uuid.uuid4()}", LIMIT)]
        answers = await _burst(counter, limits)
        assert answers.count(0) == LIMIT, answers
    finally:
        await client.aclose()
