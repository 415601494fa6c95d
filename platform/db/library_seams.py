"""The three places where Atrium relies on a library's private parts, and nowhere else.

Each has no public equivalent in the pinned versions (advanced-alchemy 1.12, SQLAlchemy
2.1). Each is a single reach kept here, so that an upgrade that moves it breaks
tests/test_library_seams.py loudly instead of the app quietly: a request session that
never commits, a tenant session that runs unbound, a pool that forgets its tenants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from advanced_alchemy.extensions.litestar import _utils as advanced_alchemy_litestar
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.queue import QueueCommon


def request_session(scope: Scope, session_scope_key: str) -> AsyncSession | None:
    """The session advanced-alchemy's plugin opened for this request, or ``None``.

    The plugin's public ``provide_session`` opens one when there is none; a
    ``before_send`` hook must only look. The plugin's own handlers read the session with
    this very accessor, from a private module.
    """
    return cast("AsyncSession | None", advanced_alchemy_litestar.get_aa_scope_state(scope, session_scope_key))


def listener_sessionmaker(maker: Callable[[], AsyncSession]) -> sessionmaker[Any]:
    """The sync sessionmaker that advanced-alchemy installs behind ``maker``.

    Session events cannot be listened for on an ``async_sessionmaker``; advanced-alchemy
    therefore configures a sync ``sessionmaker`` of its own as ``sync_session_class``
    (overwriting any given in the session config) and hangs its listeners on it. Listeners
    that must fire for every request session go on that same maker.
    """
    sync_maker = maker.kw["sync_session_class"] if isinstance(maker, async_sessionmaker) else None
    if not isinstance(sync_maker, sessionmaker):
        raise TypeError(
            f"advanced-alchemy no longer installs a sessionmaker as sync_session_class: {sync_maker!r}"
        )
    return sync_maker


def asyncio_pool_with_queue(queue_class: type[QueueCommon[Any]], name: str) -> type[AsyncAdaptedQueuePool]:
    """SQLAlchemy's asyncio queue pool with ``queue_class`` in place of its queue.

    ``_queue_class`` is the seam SQLAlchemy itself uses to give this pool an asyncio
    queue (``QueuePool.__init__`` calls ``_queue_class(pool_size, use_lifo=...)``); the
    rest of the pool (sizing, overflow, timeout, recycling, invalidation, events) is kept
    whole. ``queue_class`` keeps ``QueueCommon``'s interface.
    """
    namespace = {"_queue_class": queue_class, "__module__": queue_class.__module__}
    return type(name, (AsyncAdaptedQueuePool,), namespace)
