"""Rows queued on the driver (platform/db/queued_inserts.py) keep the ORM's order of effects:
sent before any flush, ORM statement or commit, dropped by a rollback; on a real tenant
schema through the app's own session maker (binding and listeners attached)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import psycopg
import pytest
from sqlalchemy import Engine, bindparam, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db.binding import (
    SCHEMA_INFO_KEY,
    TENANT_ID_INFO_KEY,
    Statement,
    defer_first,
    first_row,
    qualified_table,
    run_first,
)
from atrium.platform.db.engines import create_app_engine
from atrium.platform.db.queued_inserts import (
    commit,
    has_queued,
    insertable,
    queue_insert,
    queue_statement,
    settle,
)
from atrium.platform.db.sessions import sqlalchemy_config
from atrium.platform.settings import Settings
from atrium.tenants.helpdesk.models import Ticket
from atrium.tenants.identity.models import User, UserGroup, UserMeta, UserRole
from tests.conftest import MadeTenant, driver_statements


@asynccontextmanager
async def tenant_session(settings: Settings, made: MadeTenant) -> AsyncIterator[AsyncSession]:
    engine = create_app_engine(settings)
    maker = sqlalchemy_config(engine, 30_000).create_session_maker()
    session = maker()
    session.info[SCHEMA_INFO_KEY] = made.tenant.schema
    session.info[TENANT_ID_INFO_KEY] = made.tenant.id
    try:
        yield session
    finally:
        await session.close()
        await engine.dispose()


def _groups_named(operator_engine: Engine, made: MadeTenant, name: str) -> int:
    table = qualified_table(made.tenant.schema, "user_groups")
    with operator_engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE name = :n"), {"n": name}).scalar_one()


def _group(made: MadeTenant, name: str) -> UserGroup:
    return UserGroup(name=name, owner_id=made.tenant.owner_id)


@pytest.fixture
def made(make_tenant: Callable[..., MadeTenant]) -> MadeTenant:
    return make_tenant()


async def test_a_queued_row_is_written_with_the_commit_and_filled_as_the_orm_would(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"queued {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        group = _group(made, name)
        queue_insert(session, group)
        # Defaults are set on the row itself, so that it renders as written.
        assert isinstance(group.id, uuid.UUID) and group.created_at is not None
        assert group.updated_at is not None
        assert _groups_named(operator_engine, made, name) == 0
        await commit(session)
    assert _groups_named(operator_engine, made, name) == 1


async def test_a_query_after_the_queue_sees_the_row(settings: Settings, made: MadeTenant) -> None:
    name = f"seen {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        queue_insert(session, _group(made, name))
        found = await session.scalar(select(func.count()).where(UserGroup.name == name))
        assert found == 1
        await session.rollback()


async def test_a_rollback_drops_the_queue(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"dropped {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        queue_insert(session, _group(made, name))
        await session.rollback()
        # Nothing left to send with a later commit.
        await commit(session)
    assert _groups_named(operator_engine, made, name) == 0


async def test_pending_orm_rows_may_reference_a_queued_one(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"linked {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        role = await session.scalar(select(UserRole.id).where(UserRole.name == "Member"))
        group = _group(made, name)
        queue_insert(session, group)
        # The link's flush needs the group there first (a foreign key).
        session.add(UserMeta(owner_id=made.tenant.owner_id, user_groups=group.id, user_roles=role))
        await commit(session)
    assert _groups_named(operator_engine, made, name) == 1


async def test_a_plain_session_commit_still_writes_the_queue(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"plain {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        queue_insert(session, _group(made, name))
        await session.commit()
    assert _groups_named(operator_engine, made, name) == 1


async def test_a_failing_queued_row_fails_the_commit_and_the_session_recovers(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"twice {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        first = _group(made, name)
        queue_insert(session, first)
        await commit(session)
        again = _group(made, f"{name} again")
        again.id = first.id
        queue_insert(session, again)
        with pytest.raises(psycopg.errors.UniqueViolation):
            await commit(session)
        await session.rollback()
        later = f"{name} later"
        queue_insert(session, _group(made, later))
        await commit(session)
    assert _groups_named(operator_engine, made, name) == 1
    assert _groups_named(operator_engine, made, f"{name} again") == 0
    assert _groups_named(operator_engine, made, f"{name} later") == 1


async def test_rows_the_app_reads_back_or_the_caller_cache_watches_keep_the_orm(
    settings: Settings, made: MadeTenant
) -> None:
    async with tenant_session(settings, made) as session:
        assert insertable(session, UserGroup)
        # Tickets have computed columns; users are the callers' own rows.
        assert not insertable(session, Ticket) and not insertable(session, User)
        with pytest.raises(TypeError):
            queue_insert(session, User(name="x", email="x@example.test", phone="1", password="x"))


_GROUPS = UserGroup.__table__
# A Core statement queued as it is: its identity is its compiled plan's key.
_INSERT_GROUP = insert(_GROUPS).values(
    {column: bindparam(column, type_=_GROUPS.c[column].type) for column in ("id", "name", "owner_id")}
    | {"created_at": func.now(), "updated_at": func.now()}
)


async def test_a_queued_statement_is_sent_with_the_commit_and_dropped_by_a_rollback(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"statement {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        values = {"id": uuid.uuid4(), "name": name, "owner_id": made.tenant.owner_id}
        queue_statement(session, _INSERT_GROUP, values)
        assert has_queued(session)
        await session.rollback()
        assert not has_queued(session)
        await session.execute(text("SELECT 1"))  # the engine's first connection, set up
        await session.commit()
        with driver_statements() as sent:
            queue_statement(session, _INSERT_GROUP, values)
            await commit(session)
    assert _groups_named(operator_engine, made, name) == 1
    # Nothing reached the server before the commit: the binding, then the row.
    assert [s.split()[0] for s in sent] == ["SELECT", "INSERT"], sent
    assert "set_config('search_path'" in sent[0]


# A statement whose answer only the server knows: the reader is handed its row.
_INSERT_GROUP_RETURNING = _INSERT_GROUP.returning(_GROUPS.c.name, _GROUPS.c.created_at)


async def test_a_queued_statements_reader_gets_its_row_after_the_commit_or_at_settle(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"read back {uuid.uuid4().hex[:8]}"
    rows: list[tuple[object, ...]] = []

    def values(suffix: str) -> dict[str, object]:
        return {"id": uuid.uuid4(), "name": f"{name} {suffix}", "owner_id": made.tenant.owner_id}

    async with tenant_session(settings, made) as session:
        await session.execute(text("SELECT 1"))  # the engine's first connection, set up
        await session.commit()
        # The transaction's first contact: sent with BEGIN and the binding, read after COMMIT.
        with driver_statements() as sent:
            queue_statement(session, _INSERT_GROUP_RETURNING, values("first"), rows.append)
            assert rows == []
            await commit(session)
        assert [s.split()[0] for s in sent] == ["SELECT", "INSERT"], sent
        assert [r[0] for r in rows] == [f"{name} first"]
        # In a begun transaction: one pipeline with the COMMIT.
        await session.execute(text("SELECT 1"))
        queue_statement(session, _INSERT_GROUP_RETURNING, values("second"), rows.append)
        await commit(session)
        # Needed before the commit: ``settle`` sends it (no COMMIT), and a rollback undoes it.
        queue_statement(session, _INSERT_GROUP_RETURNING, values("third"), rows.append)
        await settle(session)
        assert not has_queued(session) and rows[-1][0] == f"{name} third"
        await session.rollback()
        # Without a reader, ``settle`` leaves the queue for the commit.
        queue_statement(session, _INSERT_GROUP, values("fourth"))
        await settle(session)
        assert has_queued(session)
        await commit(session)
    assert [r[0] for r in rows] == [f"{name} first", f"{name} second", f"{name} third"]
    assert all(r[1] is not None for r in rows)
    for suffix, count in (("first", 1), ("second", 1), ("third", 0), ("fourth", 1)):
        assert _groups_named(operator_engine, made, f"{name} {suffix}") == count, suffix


async def test_a_first_statement_asked_for_after_a_deferred_one_goes_after_it_in_one_pipeline(
    settings: Settings, made: MadeTenant
) -> None:
    async with tenant_session(settings, made) as session:
        await session.execute(text("SELECT 1"))  # the engine's first connection, set up
        await session.commit()
        assert defer_first(session, [Statement("SELECT 41 + 1", None), Statement("SELECT 'guard'", None)])
        with driver_statements() as sent:
            assert await run_first(session, "SELECT 'mine'", None) == ("mine",)
        # The deferred statements kept their places and their rows: the binding, then them.
        assert [s.split()[1] for s in sent] == ["set_config('search_path',", "41", "'guard'", "'mine'"], sent
        assert first_row(session) == (42,)
        # In a begun transaction it runs at once, on the transaction's connection.
        assert await run_first(session, "SELECT 'again'", None) == ("again",)
        await session.rollback()


async def test_the_deferred_first_statement_answers_even_when_a_later_one_fails(
    settings: Settings, made: MadeTenant, operator_engine: Engine
) -> None:
    name = f"deferred {uuid.uuid4().hex[:8]}"
    async with tenant_session(settings, made) as session:
        assert defer_first(session, [Statement("SELECT 41 + 1", None)])
        one, twin = _group(made, name), _group(made, f"{name} twin")
        one.id = twin.id = uuid.uuid4()  # the second row of the pipeline fails on the key
        queue_insert(session, one)
        queue_insert(session, twin)
        with pytest.raises(psycopg.errors.UniqueViolation):
            await commit(session)
        assert first_row(session) == (42,)
        await session.rollback()
        # The deferral is over: the next transaction sends the statement no more.
        with driver_statements() as sent:
            queue_insert(session, _group(made, f"{name} later"))
            await commit(session)
        assert not any("41 + 1" in s for s in sent)
    assert _groups_named(operator_engine, made, name) == 0
    assert _groups_named(operator_engine, made, f"{name} later") == 1
