"""Callers of reads, remembered per process: identity, roles and permissions.

Planning the query that loads a caller with their permissions (four relations, two
aggregates) is most of what a read costs PostgreSQL once a backend serves many tenants:
measured on one connection over 1,000 tenants, a transaction without it costs what one
over a single tenant does (bench/RESULTS.md, third pass). So every request takes a caller
seen before from this cache, and asks the database only what must stay exact: that the
user still exists and that this token was not revoked (reads fold it into their first
statement, writes run it alone before their transaction; tokens.py).

A tenant's entries are dropped when its users, user-meta or user-roles change: in the
process that made the change at once (a session event, so every ORM write path counts),
and in every other process through the resolver's tenant-change channel. An entry lives
at most ``ATRIUM_CALLER_CACHE_TTL`` (300 s; at least three quarters of it, at random,
see ``resolution.jittered``) while that channel is live, which only bounds a
missed message, and 1 s otherwise, so without Redis a permission change reaches the other
processes within a second, as a suspension does.

While the channel is live, an expired caller still serves reads for one more TTL while it
is reloaded beside them (``TokenAuth``), as an expired host does: callers loaded together
expire together, and reloading each in its request cost a worker seconds of throughput
over 1,000 tenants (bench/RESULTS.md, seventh pass).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from atrium.platform.db.binding import TENANT_ID_INFO_KEY
from atrium.platform.db.listeners import listen_once
from atrium.platform.tenancy.resolution import ALL_TENANTS, TenantResolver, jittered

# Cleared whole when full, like the verified tokens (cheaper than an LRU; the next read
# simply loads its caller again). About 1.5 KB each.
MAX_CALLERS = 1024
_CHANGED_KEY = "atrium_callers_changed"


class CallerCache:
    def __init__(self, max_entries: int = MAX_CALLERS) -> None:
        self.max_entries = max_entries
        # (tenant, user) -> (expires, usable until while reloaded, caller)
        self._entries: dict[tuple[uuid.UUID, uuid.UUID], tuple[float, float, Any]] = {}
        # Bumped by every invalidation: a caller loaded before it is not stored after it.
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Any | None:
        """The caller while fresh, else ``None``."""
        caller, stale = self.lookup(tenant_id, user_id)
        return None if stale else caller

    def lookup(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> tuple[Any | None, bool]:
        """``(caller, stale)``: a stale caller may still be used while it is reloaded."""
        entry = self._entries.get((tenant_id, user_id))
        if entry is None:
            return None, False
        expires, usable_until, caller = entry
        now = time.monotonic()
        if now < expires:
            return caller, False
        return (caller, True) if now < usable_until else (None, False)

    def put(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        caller: Any,
        ttl: float,
        generation: int,
        stale_for: float = 0.0,
    ) -> None:
        """Remember ``caller``, loaded when the generation was ``generation``; once
        expired, it may be used ``stale_for`` seconds longer while it is reloaded."""
        if generation != self._generation or ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        expires = time.monotonic() + jittered(ttl)
        self._entries[(tenant_id, user_id)] = (expires, expires + stale_for, caller)

    def forget(self, tenant_id: str) -> None:
        """Drop a tenant's callers (``ALL_TENANTS``: everyone's)."""
        self._generation += 1
        if tenant_id == ALL_TENANTS:
            self._entries.clear()
            return
        for key in [k for k in self._entries if str(k[0]) == tenant_id]:
            del self._entries[key]


def callers_changed(session: Session | AsyncSession) -> None:
    """Mark a change the ORM does not see (a statement of one's own on ``users``, such as a
    logout's revocation) as a change of callers: at the commit, the tenant's callers are
    dropped and every process is told, as for any change to the caller tables."""
    info = session.sync_session.info if isinstance(session, AsyncSession) else session.info
    info[_CHANGED_KEY] = True


class CallerInvalidation:
    """Drops callers when a session commits a change to the tables they are made of."""

    def __init__(self, cache: CallerCache, resolver: TenantResolver, tables: Iterable[str]) -> None:
        self.cache = cache
        self.resolver = resolver
        self.tables = frozenset(tables)
        self._publishing: set[asyncio.Task[None]] = set()
        resolver.add_listener(cache.forget)

    def attach(self, target: Any) -> None:
        """Watch the sessions made by ``target`` (a session class or maker)."""
        listen_once(target, "after_flush", self._after_flush)
        listen_once(target, "after_commit", self._after_commit)
        listen_once(target, "after_rollback", self._after_rollback)

    def _after_flush(self, session: Session, _context: Any) -> None:
        # Still the pre-flush state here: what this flush wrote.
        for obj in (*session.new, *session.dirty, *session.deleted):
            if getattr(obj, "__tablename__", None) in self.tables:
                session.info[_CHANGED_KEY] = True
                return

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_CHANGED_KEY, None)

    def _after_commit(self, session: Session) -> None:
        tenant_id = session.info.get(TENANT_ID_INFO_KEY)
        if not session.info.pop(_CHANGED_KEY, False) or tenant_id is None:
            return
        self.cache.forget(str(tenant_id))
        # The commit runs inside the event loop (SQLAlchemy's greenlet); other processes
        # are told without making the request wait for Redis.
        task = asyncio.get_running_loop().create_task(self.resolver.publish(tenant_id))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
