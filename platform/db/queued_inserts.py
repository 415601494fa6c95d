"""New rows inserted on the psycopg connection, sent in one pipeline with the commit.

A create through the ORM costs a round trip for its ``INSERT`` (the unit of work's flush),
one for each further row (the ``Idempotency-Key`` answer) and one for ``COMMIT``, plus the
unit of work's bookkeeping: together about half of a write's CPU on this project's
machine, where every round trip is also a context switch (bench/RESULTS.md, issue 17). A
row whose columns the app sets in full needs none of that: its ``INSERT`` is compiled
once per table, and queued rows go to the server with ``COMMIT`` in one pipeline.

The queue keeps the ORM's order of effects: it is sent before anything else reaches the
database through the session (a flush, an ORM statement, a commit), so pending ORM rows
may reference a queued one and a query sees it, and it is dropped by a rollback. Tables
whose writes the caller cache watches (``CALLER_TABLES``) always go through the ORM,
whose flush events drive that invalidation; so do tables with a column the server fills
(computed, or a server default the app does not also set), which the ORM reads back.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import insert
from sqlalchemy.engine import Compiled, Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, class_mapper
from sqlalchemy.sql import Executable
from sqlalchemy.util import await_only

from atrium.platform.db.binding import THEN_KEY, Queued, Reader, Then, deliver, send_queued
from atrium.platform.db.listeners import listen_once
from atrium.platform.security.callers import CALLER_TABLES

QUEUE_KEY = "atrium_queued_inserts"
_MISSING = object()

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Insert:
    """One table's ``INSERT`` of the columns the app sets, with what fills and converts each
    value; ``server_filled``: the columns left to the server (computed, or a server default
    with no default in the app), which the written row then lacks."""

    sql: str
    keys: tuple[str, ...]
    defaults: tuple[Callable[[], Any] | None, ...]
    processors: tuple[Processor, ...]
    server_filled: tuple[str, ...]

    def values_of(self, row: Any) -> list[Any]:
        """The row's values in column order; a column's default is set on the row too, as
        the ORM's flush would, so that the row reads as it was written."""
        state = row.__dict__
        values = []
        for key, default, process in zip(self.keys, self.defaults, self.processors, strict=True):
            value = state.get(key, _MISSING)
            if value is _MISSING:
                value = default() if default is not None else None
                setattr(row, key, value)
            values.append(value if process is None else process(value))
        return values


def _python_default(column: Any) -> Callable[[], Any] | bool | None:
    """The column's default as a function of nothing; ``None`` without one; ``False`` when
    only the server can fill it (an SQL expression or a sequence)."""
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        fn = default.arg  # SQLAlchemy's wrapper, which takes an execution context it ignores
        return lambda: fn(None)
    return False


def _plan(model: type[Any], dialect: Dialect) -> _Insert | None:
    mapper = class_mapper(model)
    table = mapper.local_table
    if table.name in CALLER_TABLES:
        return None
    keys, columns, defaults, server_filled = [], [], [], []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        default = _python_default(column)
        if default is False:
            return None
        if column.computed is not None or (column.server_default is not None and default is None):
            server_filled.append(prop.key)
            continue
        keys.append(prop.key)
        columns.append(column)
        defaults.append(default)
    compiled = insert(table).compile(dialect=dialect, column_keys=[c.key for c in columns])
    # Positional, in column order: psycopg's ``%s`` placeholders, values as a list.
    sql = compiled.string
    for column in columns:
        sql = sql.replace(f"%({column.key})s", "%s", 1)
    if "%(" in sql:
        raise RuntimeError(f"unexpected placeholders in {sql!r}")
    processors = tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns)
    return _Insert(sql, tuple(keys), tuple(defaults), processors, tuple(server_filled))


_PLANS: weakref.WeakKeyDictionary[Dialect, dict[type[Any], _Insert | None]] = weakref.WeakKeyDictionary()


def _plan_for(model: type[Any], dialect: Dialect) -> _Insert | None:
    plans = _PLANS.setdefault(dialect, {})
    if model not in plans:
        plans[model] = _plan(model, dialect)
    return plans[model]


def _dialect(session: AsyncSession | Session) -> Dialect:
    bind = session.get_bind()
    return bind.dialect


def insertable(session: AsyncSession, model: type[Any]) -> bool:
    """Whether rows of ``model`` may be queued and then read as written: the app sets
    every column, and the caller cache does not watch the table."""
    plan = _plan_for(model, _dialect(session.sync_session))
    return plan is not None and not plan.server_filled


def queue_insert(session: AsyncSession, row: Any, *, reads_back: bool = True) -> None:
    """Queue ``row``'s INSERT for the session's next statement or commit. The row stays
    outside the session: it is written, not tracked. ``reads_back=False``: the caller
    never reads the columns the server fills (``insertable`` tells otherwise)."""
    plan = _plan_for(type(row), _dialect(session.sync_session))
    if plan is None or (reads_back and plan.server_filled):
        raise TypeError(f"{type(row).__name__} rows are written through the ORM (queued_inserts.insertable)")
    _queue(session, plan.sql, plan.values_of(row))


def statement_text(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A Core statement as the driver takes it (text with psycopg placeholders, values
    converted), compiled once per dialect: for ``binding.run_first``. The statement must
    keep its identity (a module constant)."""
    plan = _statement_plan(session, statement)
    return plan.compiled.string, plan.values_of(params)


def _statement_plan(session: AsyncSession, statement: Executable) -> _StatementPlan:
    dialect = _dialect(session.sync_session)
    plans = _STATEMENT_PLANS.setdefault(dialect, {})
    plan = plans.get(statement)
    if plan is None:
        plan = plans[statement] = _StatementPlan.of(statement, dialect)
    return plan


def queue_statement(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any], reader: Reader | None = None
) -> None:
    """Queue a Core statement (an ``INSERT ... SELECT`` that writes rows from the values
    given), as ``queue_insert`` queues a row. The statement must keep its identity (a
    module constant): it is compiled once per dialect. ``reader`` takes its first row once
    the server has answered it: a value only the server can give (an invoice's number) is
    then known after the commit it went with, or at ``settle`` when it is needed sooner."""
    sql, values = statement_text(session, statement, params)
    _queue(session, sql, values, reader)


@dataclass(frozen=True, slots=True)
class _StatementPlan:
    compiled: Compiled
    processors: dict[str, Processor]

    @classmethod
    def of(cls, statement: Executable, dialect: Dialect) -> _StatementPlan:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        return cls(compiled, processors)

    def values_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = self.compiled.construct_params(dict(params))
        return {
            name: value if (process := self.processors.get(name)) is None else process(value)
            for name, value in values.items()
        }


_STATEMENT_PLANS: weakref.WeakKeyDictionary[Dialect, dict[Executable, _StatementPlan]] = (
    weakref.WeakKeyDictionary()
)


def _queue(
    session: AsyncSession, sql: str, values: Sequence[Any] | Mapping[str, Any], reader: Reader | None = None
) -> None:
    sync = session.sync_session
    if not sync.in_transaction():
        # A transaction (no I/O yet), so that a rollback, which ends only a transaction
        # and fires its events only then, drops the queue.
        sync.begin()
    session.info.setdefault(QUEUE_KEY, []).append((sql, values, reader))


async def _send(driver: psycopg.AsyncConnection[Any], queued: list[Queued], commit: bool) -> None:
    async with driver.pipeline():
        awaited = await send_queued(driver, queued)
        if commit:
            await driver.commit()
    await deliver(awaited)


def _send_queued(session: Session, commit: bool = False) -> None:
    """Send the queue (and ``COMMIT``) before anything else reaches the database through
    ``session``. When this begins the transaction (nothing before reached the server),
    the rows go with its ``BEGIN``, binding and deferred first statements (binding.py):
    a whole create in one pipeline."""
    queued = session.info.pop(QUEUE_KEY, None)
    if not queued:
        return
    session.info[THEN_KEY] = Then(queued, commit)
    try:
        driver = session.connection().connection.driver_connection
    finally:
        unsent = session.info.pop(THEN_KEY, None)
    if unsent is not None:
        await_only(_send(driver, queued, commit))


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    _send_queued(session)


def _before_orm_statement(state: ORMExecuteState) -> None:
    _send_queued(state.session)


def _drop(session: Session) -> None:
    session.info.pop(QUEUE_KEY, None)


def attach_queued_inserts(target: Any) -> None:
    """Keep the queue's order of effects in sessions made by ``target`` (a sync maker)."""
    listen_once(target, "before_flush", _before_flush)
    listen_once(target, "do_orm_execute", _before_orm_statement)
    listen_once(target, "before_commit", _send_queued)
    listen_once(target, "after_rollback", _drop)


def has_queued(session: AsyncSession | Session) -> bool:
    return bool(session.info.get(QUEUE_KEY))


async def settle(session: AsyncSession) -> None:
    """Send the queue now (without ``COMMIT``) when a queued statement's row is awaited:
    what is rendered before the commit (an ``Idempotency-Key``'s answer) must see it."""
    if any(reader is not None for _, _, reader in session.info.get(QUEUE_KEY, ())):
        await session.run_sync(_send_queued)


async def commit(session: AsyncSession) -> None:
    """Flush, then send the queued rows and ``COMMIT`` in one pipeline, then end the
    session's transaction (whose ``COMMIT`` then finds nothing left to do)."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    await session.run_sync(_send_queued, True)
    await session.commit()
