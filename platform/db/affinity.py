"""A connection pool that keeps each tenant on three of its pooled connections.

Every PostgreSQL backend loads and keeps the catalog entries (relations, indexes,
statistics) of each schema it touches, and plans its statements against them. A plain
FIFO pool lets every backend meet every tenant: spread over 1,000 tenants, each backend
of the benchmark held ~36 MB of caches, and a request cost PostgreSQL and the app (which
shares the machine's caches with those backends) markedly more than with one busy
tenant. Keeping each tenant on two backends per app process halved the backends' memory
and cut PostgreSQL's time per request by a fifth to a third (bench/RESULTS.md, fourth
pass). Three rather than two: under saturation a tenant's checkout queued at its homes
for 7 ms on average against 2.5 ms in the one queue of a single busy tenant, and a third
home took a tenth off the 99th percentile over 1,000 tenants at the same throughput
(bench/RESULTS.md, ninth pass).

SQLAlchemy's ``AsyncAdaptedQueuePool`` is kept whole (sizing, overflow, timeout,
recycling, invalidation, events); only its queue is replaced. A tenant's *homes* are the
pool's connections that rank highest for it by rendezvous hashing (``_rank``): the
tenants spread evenly, and each keeps its homes while the pool lives. A checkout by a
tenant with nothing else in flight in this pool takes an idle home, or else queues at
all its homes and takes whichever is free first; after ``PATIENCE`` it takes any
connection, as everyone else does: a tenant's further concurrent checkouts (so one busy
tenant still gets every connection) and checkouts without a tenant (the resolver's
registry lookups) take any idle connection or queue for the next one free, in arrival
order. A returned connection goes to whoever has waited longest among its own tenants'
queue and the shared queue; with nobody waiting for it, it stays idle. So no checkout
waits more than ``PATIENCE`` longer than in a FIFO pool.

The key is the tenant's schema, set for the request by the tenant middleware
(``affinity``). The queue is used from the event loop only, as SQLAlchemy's own asyncio
queue is.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import Counter, deque
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import Empty, Full, QueueCommon

from atrium.platform.db.library_seams import asyncio_pool_with_queue

_T = TypeVar("_T")

# The affinity key of the current request: its tenant's schema.
affinity: ContextVar[str | None] = ContextVar("atrium_connection_affinity", default=None)

# Connections a tenant calls home, per pool (of the default 10: each backend then meets
# 3/10 of the tenants).
HOMES = 3
# Seconds a checkout waits for a home before any connection will do. Far above a
# transaction's usual hold (a few ms, even at saturation), so tenants keep to their homes;
# 10 ms let a third of them wander and lost most of the gain (bench/RESULTS.md).
PATIENCE = 0.1

# Tenants whose homes are remembered (ranking 10 connections costs ~10 us).
_HOMES_CACHED = 10_000
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """SplitMix64's finaliser: every input bit moves every output bit."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _rank(key: str, ident: int) -> int:
    """The rendezvous score of a connection for a tenant.

    Not ``hash((key, ident))``: the tuple hash mixes too little for connections whose ids
    (addresses) differ in a few bits. Over 1,000 tenants and 10 connections, the busiest
    connection was home to 2.2x the tenants of the idlest, and in ~1 pool in 500 six
    tenants all ranked the same connection first; mixed, the spread is the binomial one.
    """
    return _mix64(hash(key) ^ _mix64(ident))


class _Waiter:
    __slots__ = ("future", "key", "queues", "since")

    def __init__(self, future: asyncio.Future[Any], key: str | None) -> None:
        self.future = future
        self.key = key
        self.queues: list[deque[_Waiter]] = []  # its homes' queues, or the shared one
        self.since = time.monotonic()


class AffinityQueue(QueueCommon[_T], Generic[_T]):
    """The pool's idle connections, handed out to each tenant's homes first."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo  # kept for QueuePool.recreate(); the order is by tenant
        self._idle: dict[int, _T] = {}
        self._shared: deque[_Waiter] = deque()  # in arrival order
        self._homes_queue: dict[int, deque[_Waiter]] = {}  # id(connection) -> its tenants
        self._homes_of: dict[str, list[int]] = {}  # key -> its homes, best first
        # Connections handed out, with the key they went to; checkouts in flight per key
        # (handed out or waiting).
        self._holders: dict[int, str] = {}
        self._in_flight: Counter[str] = Counter()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        # QueuePool only ever puts without blocking: into a full queue it closes the
        # (overflow) connection instead.
        self.put_nowait(item)

    def put_nowait(self, item: _T) -> None:
        ident = id(item)
        key = self._holders.pop(ident, None)
        if key is not None:
            self._release(key)
        own = self._homes_queue.get(ident)
        if own is None:
            own = self._homes_queue[ident] = deque()
            self._homes_of.clear()  # a new connection: every tenant's ranking changes
        heads = [w for w in (self._head(own), self._head(self._shared)) if w is not None]
        if heads:
            self._hand(item, min(heads, key=lambda w: w.since))
            return
        if self.full():
            del self._homes_queue[ident]  # an overflow connection, closed by the pool now
            self._homes_of.clear()
            raise Full()
        self._idle[ident] = item

    def get_nowait(self) -> _T:
        """An idle connection, a home first (QueuePool asks this while it may still grow)."""
        key = affinity.get()
        item = self._take(key, self._homes(key))
        if item is None:
            raise Empty()
        return item

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        if not block:
            return self.get_nowait()
        key = affinity.get()
        homes = self._homes(key)
        alone = key is not None and key not in self._in_flight
        item = self._take(key, homes, homes_only=alone and bool(homes))
        if item is not None:
            return item
        queues = [self._homes_queue[h] for h in homes] if alone and homes else [self._shared]
        return await_(self._wait(key, queues, timeout))  # type: ignore[no-any-return]

    # -- internals -------------------------------------------------------------------------

    def _homes(self, key: str | None) -> list[int]:
        if key is None:
            return []
        homes = self._homes_of.get(key)
        if homes is None:
            if len(self._homes_of) >= _HOMES_CACHED:
                self._homes_of.clear()
            homes = heapq.nlargest(HOMES, self._homes_queue, key=lambda ident: _rank(key, ident))
            self._homes_of[key] = homes
        return homes

    def _take_idle(self, key: str | None, homes: list[int], homes_only: bool = False) -> _T | None:
        for ident in homes:
            if ident in self._idle:
                return self._idle.pop(ident)
        if homes_only or not self._idle:
            return None
        if key is None:
            return self._idle.pop(next(reversed(self._idle)))
        return self._idle.pop(max(self._idle, key=lambda ident: _rank(key, ident)))

    def _take(self, key: str | None, homes: list[int], homes_only: bool = False) -> _T | None:
        """An idle connection (see ``_take_idle``), recorded as held by ``key``."""
        item = self._take_idle(key, homes, homes_only)
        if item is not None and key is not None:
            self._holders[id(item)] = key
            self._in_flight[key] += 1
        return item

    def _release(self, key: str) -> None:
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]

    def _hand(self, item: _T, waiter: _Waiter) -> None:
        self._discard(waiter)
        if waiter.key is not None:
            self._holders[id(item)] = waiter.key  # counted in flight since it queued
        waiter.future.set_result(item)

    async def _wait(self, key: str | None, queues: list[deque[_Waiter]], expire_after: float | None) -> _T:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), key)
        if key is not None:
            self._in_flight[key] += 1
        if queues[0] is self._shared:
            self._enqueue_shared(waiter)
            timers = []
        else:
            for queue in queues:
                queue.append(waiter)
            waiter.queues = queues
            timers = [loop.call_later(PATIENCE, self._impatient, waiter)]
        if expire_after is not None:
            timers.append(loop.call_later(expire_after, self._expire, waiter))
        try:
            return await waiter.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            future = waiter.future
            if not future.done() or future.cancelled():
                self._give_up(waiter)
            elif future.exception() is None:
                # Handed a connection just as the checkout was cancelled: pass it on.
                self.put_nowait(future.result())
            # (otherwise it had just expired, and _expire gave up for it)
            raise
        finally:
            for timer in timers:
                timer.cancel()

    def _enqueue_shared(self, waiter: _Waiter) -> None:
        """Into the shared queue at its place by arrival (impatient waiters came earlier)."""
        shared = self._shared
        position = len(shared)
        while position and shared[position - 1].since > waiter.since:
            position -= 1
        shared.insert(position, waiter)
        waiter.queues = [shared]

    def _impatient(self, waiter: _Waiter) -> None:
        """A checkout waited ``PATIENCE`` for its homes: the first connection free will do."""
        if waiter.future.done():
            return
        item = self._take_idle(waiter.key, [])
        if item is not None:
            self._hand(item, waiter)
            return
        self._discard(waiter)
        self._enqueue_shared(waiter)

    def _expire(self, waiter: _Waiter) -> None:
        if not waiter.future.done():
            self._give_up(waiter)
            waiter.future.set_exception(Empty())

    def _give_up(self, waiter: _Waiter) -> None:
        self._discard(waiter)
        if waiter.key is not None:
            self._release(waiter.key)

    @staticmethod
    def _head(queue: deque[_Waiter]) -> _Waiter | None:
        while queue and queue[0].future.done():
            queue.popleft()
        return queue[0] if queue else None

    @staticmethod
    def _discard(waiter: _Waiter) -> None:
        for queue in waiter.queues:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
        waiter.queues = []


# SQLAlchemy's asyncio queue pool, whole, with the queue above (library_seams.py).
TenantAffinePool = asyncio_pool_with_queue(AffinityQueue, "TenantAffinePool")
