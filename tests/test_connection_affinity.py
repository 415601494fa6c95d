"""The tenant-affine pool: tenants keep to their homes, nobody is capped, nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import greenlet_spawn

from atrium.platform.db import affinity as connection_affinity
from atrium.platform.db.affinity import AffinityQueue, TenantAffinePool, affinity
from atrium.platform.settings import Settings
from tests.conftest import MadeTenant, serve
from tests.probes import PROBES


@asynccontextmanager
async def pool_of(settings: Settings, size: int, checkout_timeout: float = 5.0) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        settings.sqlalchemy_url,
        poolclass=TenantAffinePool,
        pool_size=size,
        max_overflow=0,
        pool_timeout=checkout_timeout,
    )
    try:
        yield engine
    finally:
        await engine.dispose()


def queue_of(engine: AsyncEngine) -> AffinityQueue[Any]:
    return engine.pool._pool  # type: ignore[attr-defined,no-any-return]


async def backend_of(engine: AsyncEngine, key: str | None, hold: float = 0.0) -> int:
    """Check a connection out under ``key``, hold it, and say which backend it was."""
    affinity.set(key)
    async with engine.connect() as conn:
        pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
        await asyncio.sleep(hold)
        return int(pid)


async def fill(engine: AsyncEngine, size: int) -> None:
    """Open every connection of the pool (they are created on demand)."""
    pids = await asyncio.gather(*(backend_of(engine, None, hold=0.2) for _ in range(size)))
    assert len(set(pids)) == size


async def test_a_tenant_keeps_to_its_home_connection(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    # Ten tenants over five connections: that all rank the same connection first (and so
    # look unspread) has a chance of 5 x (1/5)^10, about 1 in 2 million.
    tenants = [make_tenant() for _ in range(10)]
    async with serve(settings.with_overrides(db_pool_size=5, db_max_overflow=0), PROBES) as (_app, client):
        await asyncio.gather(
            *(client.get("/probe/sleep?seconds=0.2", headers={"Host": t.host}) for t in tenants)
        )
        seen: dict[str, set[int]] = {}
        for _ in range(4):
            for made in tenants:
                response = await client.get("/probe/backend", headers={"Host": made.host})
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["affinity"] == made.tenant.schema
                seen.setdefault(made.slug, set()).add(body["pid"])
    # Each tenant, alone in the pool, always got the same backend; the tenants spread.
    assert all(len(pids) == 1 for pids in seen.values()), seen
    assert len(set().union(*seen.values())) > 1, seen


async def test_one_busy_tenant_gets_every_connection(settings: Settings) -> None:
    async with pool_of(settings, 4) as engine:
        pids = await asyncio.gather(*(backend_of(engine, "tenant_busy", hold=0.1) for _ in range(12)))
        assert len(set(pids)) == 4
        assert engine.pool.checkedin() == 4  # type: ignore[attr-defined]


async def test_a_tenant_whose_homes_are_busy_waits_at_most_patience(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection_affinity, "PATIENCE", 0.3)
    size = connection_affinity.HOMES + 1
    async with pool_of(settings, size) as engine:
        await fill(engine, size)
        queue = queue_of(engine)
        homes = queue._homes("tenant_waiting")
        assert len(homes) == connection_affinity.HOMES
        # Hold the homes; leave the one other connection idle.
        held: list[Any] = []
        while len(held) < size:
            held.append(await engine.raw_connection())
        for fairy in held:
            if id(fairy._connection_record) not in homes:  # type: ignore[attr-defined]
                await greenlet_spawn(fairy.close)
        started = time.monotonic()
        await backend_of(engine, "tenant_waiting")
        waited = time.monotonic() - started
        assert 0.25 <= waited < 2.0, waited
        for fairy in held:
            await greenlet_spawn(fairy.close)
        assert engine.pool.checkedin() == size  # type: ignore[attr-defined]


async def test_timeouts_and_cancellations_lose_no_connection(settings: Settings) -> None:
    async with pool_of(settings, 2, checkout_timeout=0.3) as engine:
        await fill(engine, 2)
        holders = [asyncio.create_task(backend_of(engine, f"tenant_h{i}", hold=1.0)) for i in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(PoolTimeout):
            await backend_of(engine, "tenant_late")
        waiting = asyncio.create_task(backend_of(engine, "tenant_gives_up"))
        spilled = asyncio.create_task(backend_of(engine, None))
        await asyncio.sleep(0.05)
        waiting.cancel()
        spilled.cancel()
        await asyncio.gather(waiting, spilled, return_exceptions=True)
        await asyncio.gather(*holders)
        queue = queue_of(engine)
        assert engine.pool.checkedin() == 2  # type: ignore[attr-defined]
        assert queue._in_flight == {} and queue._holders == {}
        assert not queue._shared and not any(queue._homes_queue.values())
        assert (
            len(set(await asyncio.gather(*(backend_of(engine, "tenant_after", 0.05) for _ in range(2))))) == 2
        )


async def _one_held_one_waiting() -> tuple[AffinityQueue[object], object, asyncio.Task[object]]:
    """A one-slot queue whose item a tenant holds, and a second checkout of it waiting."""
    queue: AffinityQueue[object] = AffinityQueue(maxsize=1)
    item = object()
    queue.put_nowait(item)
    affinity.set("tenant_x")
    assert await greenlet_spawn(queue.get, True, 5) is item
    waiting = asyncio.create_task(greenlet_spawn(queue.get, True, 5))
    await asyncio.sleep(0.01)
    return queue, item, waiting


async def test_a_connection_handed_to_a_cancelled_checkout_is_passed_on() -> None:
    """The race: a connection is handed over just as the waiting checkout is cancelled."""
    queue, item, waiting = await _one_held_one_waiting()
    queue.put_nowait(item)  # handed to the waiter...
    waiting.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert queue.qsize() == 1 and queue._in_flight == {} and queue._holders == {}
    assert await greenlet_spawn(queue.get, False) is item


async def test_a_checkout_cancelled_just_after_it_expired_is_cancelled_cleanly() -> None:
    """The other race: the pool timeout fires, then the checkout is cancelled before it runs."""
    queue, item, waiting = await _one_held_one_waiting()
    (waiter,) = queue._shared  # the tenant already holds a connection: it waits in the shared queue
    queue._expire(waiter)  # the timeout...
    waiting.cancel()  # ...and the cancellation, before the checkout runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert queue._in_flight == {"tenant_x": 1}  # only the first checkout, still held
    queue.put_nowait(item)
    assert queue._in_flight == {} and queue.qsize() == 1


def test_tenants_spread_evenly_over_the_connections() -> None:
    """Each connection is home to about as many tenants as any other (the binomial spread).

    The tuple hash ``hash((key, id(connection)))`` ranked them with a busiest connection
    home to ~2x the tenants of the idlest; 1.5x is ~7 standard deviations of the fair spread.
    """
    queue: AffinityQueue[object] = AffinityQueue(maxsize=10)
    connections = [object() for _ in range(10)]
    for connection in connections:
        queue.put_nowait(connection)
    homes_per_connection = Counter(ident for n in range(1000) for ident in queue._homes(f"tenant_{n:04x}"))
    assert len(homes_per_connection) == 10
    counts = homes_per_connection.values()
    assert max(counts) <= 1.5 * min(counts), homes_per_connection
