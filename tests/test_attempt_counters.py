"""The login attempt counters (platform/stores.py) on a real Redis, with some of its calls
failing as connections time out under load."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from atrium.platform.stores import FallbackCounter, Limits, RedisCounter

LIMIT = 5


class _SomeCallsTimeOut(RedisCounter):
    """The real counter, but its first ``failing`` calls fail, after the others answered."""

    def __init__(self, client: Redis, failing: int) -> None:
        super().__init__(client)
        self.failing = failing

    async def take(self, limits: Limits, window: int) -> int:
        if self.failing:
            self.failing -= 1
            await asyncio.sleep(0.05)
            raise RedisConnectionError("Timeout connecting to server")
        return await super().take(limits, window)


async def test_a_burst_in_which_some_redis_calls_fail_grants_no_more_than_the_limit(
    real_redis_url: str,
) -> None:
    """Half the burst falls back to the in-process copy: Redis and the copy must not each
    grant a full limit (10 password checks for a limit of 5 in a CI run)."""
    client = Redis.from_url(real_redis_url)
    try:
        counter = FallbackCounter(_SomeCallsTimeOut(client, failing=LIMIT))
        limits = [(f"test:{uuid.uuid4()}", LIMIT)]
        answers = await asyncio.gather(*(counter.take(limits, 60) for _ in range(2 * LIMIT)))
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


class _SlowAnswersFastFailures(RedisCounter):
    """The real counter answering its first ``answered`` calls late; the next fail at once."""

    def __init__(self, client: Redis, answered: int) -> None:
        super().__init__(client)
        self.answered = answered

    async def take(self, limits: Limits, window: int) -> int:
        if not self.answered:
            raise RedisConnectionError("Connection reset by peer")
        self.answered -= 1
        await asyncio.sleep(0.05)
        return await super().take(limits, window)


async def test_a_failure_beside_answers_still_on_their_way_grants_no_more_than_the_limit(
    real_redis_url: str,
) -> None:
    """The calls that fail first fall back while Redis is still granting the others: those
    grants are held back from the copy (a CI burst checked 6 passwords for a limit of 5)."""
    client = Redis.from_url(real_redis_url)
    try:
        counter = FallbackCounter(_SlowAnswersFastFailures(client, answered=LIMIT))
        limits = [(f"test:{uuid.uuid4()}", LIMIT)]
        answers = await asyncio.gather(*(counter.take(limits, 60) for _ in range(2 * LIMIT)))
        assert answers.count(0) == LIMIT, answers
    finally:
        await client.aclose()
