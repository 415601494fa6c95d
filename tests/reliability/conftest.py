"""Fixtures shared by the reliability tests.

Why a portal: pytest-asyncio runs every async test and fixture of this suite on one
session-scoped event loop, but Hypothesis (the stateful machine, Schemathesis' tests)
drives plain synchronous functions. Calling ``loop.run_until_complete`` on the session
loop from inside a synchronous test, or ``asyncio.run`` on the main thread (which
resets the thread's current loop when it finishes), would fight pytest-asyncio. An
anyio blocking portal runs an event loop of its own in a helper thread for the whole
module: synchronous code hands it coroutines (``portal.call``) and blocks for the
result, every request of the app runs on that one loop (so the SQLAlchemy pool never
sees a connection from another loop), and ``portal.wrap_async_context_manager`` enters
and leaves the app's lifespan in one task of that loop, as anyio's cancel scopes require.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    """An event loop of the module's own, in a helper thread."""
    with start_blocking_portal(backend="asyncio") as running:
        yield running
