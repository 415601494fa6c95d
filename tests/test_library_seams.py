"""The library internals Atrium relies on still behave as it relies on them.

Every private reach into a library is in ``platform/db/library_seams.py``; the tests
here exercise each for real, so a library upgrade that moves one fails here, loudly,
rather than in production, quietly. Alembic's private upgrade walk is no longer used:
its public replacement is held equal to it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from advanced_alchemy.extensions.litestar import AsyncSessionConfig, SQLAlchemyAsyncConfig
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from litestar.datastructures import State
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.util.queue import AsyncAdaptedQueue

from atrium.platform.db.alembic_runner import downgrade_steps, script_directory, upgrade_steps
from atrium.platform.db.library_seams import asyncio_pool_with_queue, listener_sessionmaker, request_session
from atrium.platform.settings import Settings
from atrium.platform.stores import FallbackCounter, app_stores

ROOT = Path(__file__).resolve().parents[1]
SEAMS = ROOT / "platform" / "db" / "library_seams.py"
# The private parts named in issue 16; none may be reached outside the seams module.
# A reach is an attribute access or import (``._name``), a ``kw[...]`` lookup or a class
# attribute override; prose that names them is fine.
PRIVATE_REACHES = re.compile(
    r"\._utils\b|\b(get|set|delete)_aa_scope_state\b|\.kw\[|\._queue_class\b|^\s*_queue_class\s*[:=]"
    r"|\._upgrade_revs\b|\._redis\b"
)


def test_no_private_library_reach_outside_the_seams() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("platform", "tenants", "scripts", "migrations")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != SEAMS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_REACHES.search(line)
    ]
    assert found == [], "private library parts reached outside library_seams.py:\n" + "\n".join(found)


def _plugin_config(settings: Settings) -> SQLAlchemyAsyncConfig:
    engine = create_async_engine(settings.sqlalchemy_url)
    return SQLAlchemyAsyncConfig(engine_instance=engine, session_config=AsyncSessionConfig())


async def test_request_session_is_the_session_the_plugin_opened(settings: Settings) -> None:
    config = _plugin_config(settings)
    state = State(config.create_app_state_items())
    scope: Any = {"type": "http", "state": {}}
    assert request_session(scope, config.session_scope_key) is None  # looking opens none
    assert request_session(scope, config.session_scope_key) is None
    session = config.provide_session(state, scope)
    assert request_session(scope, config.session_scope_key) is session
    assert config.provide_session(state, scope) is session
    await session.close()
    await config.get_engine().dispose()


async def test_listeners_on_the_plugin_sessionmaker_fire_for_its_sessions(settings: Settings) -> None:
    config = _plugin_config(settings)
    maker = config.create_session_maker()
    sync_maker = listener_sessionmaker(maker)
    assert isinstance(sync_maker, sessionmaker)
    began: list[Session] = []
    event.listen(sync_maker, "after_begin", lambda session, _tx, _conn: began.append(session))
    async with maker() as session:
        assert (await session.scalar(text("SELECT 1"))) == 1
        assert began == [session.sync_session]
    await config.get_engine().dispose()


def test_listener_sessionmaker_refuses_anything_else() -> None:
    with pytest.raises(TypeError, match="sync_session_class"):
        listener_sessionmaker(lambda: None)  # type: ignore[arg-type,return-value]


async def test_the_pool_uses_the_queue_it_is_given(settings: Settings) -> None:
    calls: list[str] = []

    class RecordingQueue(AsyncAdaptedQueue[Any]):
        def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
            calls.append(f"init {maxsize}")
            super().__init__(maxsize, use_lifo)

        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            calls.append("put")
            super().put(item, block, timeout)

        def get(self, block: bool = True, timeout: float | None = None) -> Any:
            calls.append("get")
            return super().get(block, timeout)

    pool_class = asyncio_pool_with_queue(RecordingQueue, "RecordingPool")
    engine = create_async_engine(settings.sqlalchemy_url, poolclass=pool_class, pool_size=2, max_overflow=0)
    try:
        for _ in range(2):
            async with engine.connect() as conn:
                assert (await conn.scalar(text("SELECT 1"))) == 1
    finally:
        await engine.dispose()
    # Made with the pool's size; the second checkout takes the connection the first returned.
    assert calls[0] == "init 2"
    assert calls.count("put") == 2 and calls.count("get") >= 1


@pytest.mark.parametrize("env", ["tenant", "platform"])
def test_upgrade_steps_are_alembic_upgrade_steps(env: Any) -> None:
    script = script_directory(env)
    revisions = [None, *(s.revision for s in reversed(list(script.walk_revisions())))]

    def described(steps: list[Any]) -> list[tuple[str, bool]]:
        return [(step.revision.revision, step.is_upgrade) for step in steps]

    for start in revisions:
        heads = () if start is None else (start,)
        for destination in ("head", *(r for r in revisions if r is not None)):
            try:
                expected = described(script._upgrade_revs(destination, heads))  # type: ignore[arg-type]
            except CommandError:  # not an upgrade (a downgrade): Alembic wraps the walk's error
                with pytest.raises(RevisionError):
                    upgrade_steps(script, destination, heads)
                continue
            assert described(upgrade_steps(script, destination, heads)) == expected, (start, destination)


@pytest.mark.parametrize("env", ["tenant", "platform"])
def test_downgrade_steps_are_alembic_downgrade_steps(env: Any) -> None:
    script = script_directory(env)
    revisions = [s.revision for s in reversed(list(script.walk_revisions()))]
    for position, start in enumerate(revisions):
        for destination in ("base", *revisions[:position]):
            expected = script._downgrade_revs(destination, (start,))  # type: ignore[arg-type]
            steps = downgrade_steps(script, destination, (start,))
            assert [(s.revision.revision, s.is_upgrade) for s in steps] == [
                (s.revision.revision, s.is_upgrade) for s in expected
            ], (start, destination)


async def test_app_stores_close_the_redis_client_they_share(real_redis_url: str) -> None:
    stores = app_stores(real_redis_url)
    assert stores.redis is not None
    counter = stores.login_attempts
    assert isinstance(counter, FallbackCounter)
    assert await counter.take([("seam-probe", 5)], 30) == 0
    keys = await stores.redis.keys("*seam-probe")
    assert keys, "the counter does not write through the client app_stores keeps"
    await stores.redis.delete(*keys)
    await stores.close()
