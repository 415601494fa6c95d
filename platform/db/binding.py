"""The tenant binding: the one place that binds a tenant or writes its schema into SQL.

Every transaction of a session that belongs to a tenant starts with one statement,
``set_config('search_path', <quoted schema>, true)``, issued from SQLAlchemy's
``after_begin`` event. ``true`` makes it transaction-local: when the transaction ends
the pooled connection is back at the server default, so a connection never carries
one tenant's path into the next request, and the binding works behind PgBouncer in
transaction mode. ``SET LOCAL search_path = %s`` would not do: PostgreSQL refuses
bound parameters in ``SET``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from atrium.platform.db.listeners import listen_once
from atrium.platform.tenancy.naming import quote_ident

SCHEMA_INFO_KEY = "atrium_tenant_schema"
# ``session.info`` keys, each read by the binding's pipeline when the transaction begins:
# statements (text, values) to send as the transaction's first, their rows once sent, in
# order (``None`` for one that failed; ``run_first``, ``defer_first``); and queued rows to
# send after them, with or without ``COMMIT`` (``queued_inserts.commit``).
FIRST_STATEMENT_KEY = "atrium_first_statement"
FIRST_ROWS_KEY = "atrium_first_rows"
THEN_KEY = "atrium_then"
TENANT_ID_INFO_KEY = "atrium_tenant_id"
STATEMENT_TIMEOUT_KEY = "statement_timeout_ms"
# A session with no tenant sees no tenant table at all: an empty search_path leaves
# only pg_catalog, and shared tables are always schema-qualified.
NO_TENANT_PATH = ""

# The binding also bounds the transaction: no statement runs longer than the timeout, and
# a transaction left idle (a stalled client) is ended by the server. It is always a
# statement of its own: Citus routes a statement that also reads a tenant table whole to
# the worker holding the schema, where the coordinator's path and timeout never change.
BIND_SQL = (
    "SELECT set_config('search_path', %(path)s, true), set_config('statement_timeout', %(timeout)s, true),"
    " set_config('idle_in_transaction_session_timeout', %(timeout)s, true)"
)


def search_path_for(schema: str | None) -> str:
    return quote_ident(schema) if schema else NO_TENANT_PATH


def bind_parameters(schema: str | None, timeout_ms: int) -> dict[str, str]:
    """The parameters of ``BIND_SQL`` for ``schema``, shared by the session and driver paths."""
    return {"path": search_path_for(schema), "timeout": f"{int(timeout_ms)}ms"}


class Statement(NamedTuple):
    """A statement's text (psycopg placeholders) and its values. ``prepare=False``: never
    prepared, so planned afresh with its values at every run (psycopg's ``prepare``)."""

    sql: str
    values: Any
    prepare: bool | None = None


def attach_tenant_binding(target: Any) -> None:
    """Bind every transaction of sessions made by ``target`` (a session class or maker)."""
    listen_once(target, "after_begin", bind_search_path)


def bind_search_path(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    """Bind the session's new transaction, in one pipeline with its ``BEGIN``.

    psycopg sends ``BEGIN`` with a transaction's first statement. In a pipeline the
    binding and what follows it go together, each still a statement of its own, as the
    driver read path sends them (read_transaction.py). (psycopg still waits for the
    ``BEGIN``'s answer at a Sync of its own; sending it as a statement instead measured no
    different: bench/RESULTS.md, 2026-12-07.)
    The statements asked for first (``FIRST_STATEMENT_KEY``) and, when the transaction's
    first contact with the server is its commit, its queued rows and ``COMMIT``
    (``THEN_KEY``) go in the same pipeline.
    """
    schema = session.info.get(SCHEMA_INFO_KEY)
    timeout = session.info.get(STATEMENT_TIMEOUT_KEY, 30_000)
    params = bind_parameters(schema, timeout)
    first: Sequence[Statement] = session.info.pop(FIRST_STATEMENT_KEY, ())
    driver = connection.connection.driver_connection
    if isinstance(driver, psycopg.AsyncConnection):
        then = session.info.pop(THEN_KEY, None)
        await_only(_bind_pipelined(session, driver, params, first, then))
        return
    if isinstance(driver, psycopg.Connection):
        with driver.pipeline():
            driver.execute(BIND_SQL, params)
            cursors = [driver.execute(s.sql, s.values, prepare=s.prepare) for s in first]
        rows = [cursor.fetchone() for cursor in cursors]
    else:
        connection.exec_driver_sql(BIND_SQL, params)
        rows = [connection.exec_driver_sql(s.sql, s.values).first() for s in first]
    if first:
        session.info[FIRST_ROWS_KEY] = rows


# A statement sent later (queued_inserts.py): its text and values, and what takes its first
# row once the pipeline it went in has been answered (``None``: nobody reads it).
Reader = Callable[[Any], None]
Queued = tuple[str, Any, Reader | None]


@dataclass(frozen=True, slots=True)
class Then:
    """Queued statements to send after the binding and the first statements, and whether
    to commit."""

    statements: Sequence[Queued]
    commit: bool


async def send_queued(
    driver: psycopg.AsyncConnection[Any], queued: Sequence[Queued]
) -> list[tuple[psycopg.AsyncCursor[Any], Reader]]:
    """Send ``queued`` into the driver's open pipeline; the cursors whose rows are awaited,
    for ``deliver`` once the pipeline has been answered."""
    awaited = []
    for sql, values, reader in queued:
        cursor = await driver.execute(sql, values)
        if reader is not None:
            awaited.append((cursor, reader))
    return awaited


async def deliver(awaited: Sequence[tuple[psycopg.AsyncCursor[Any], Reader]]) -> None:
    for cursor, reader in awaited:
        reader(await cursor.fetchone())


async def _bind_pipelined(
    session: Session,
    driver: psycopg.AsyncConnection[Any],
    params: Mapping[str, str],
    first: Sequence[Statement],
    then: Then | None,
) -> None:
    cursors: list[psycopg.AsyncCursor[Any]] = []
    awaited: list[tuple[psycopg.AsyncCursor[Any], Reader]] = []
    try:
        async with driver.pipeline():
            await driver.execute(BIND_SQL, params)
            for s in first:
                cursors.append(await driver.execute(s.sql, s.values, prepare=s.prepare))
            if then is not None:
                awaited = await send_queued(driver, then.statements)
                if then.commit:
                    await driver.commit()
        await deliver(awaited)
    finally:
        if cursors:
            # Each answer that came before a later statement's error is kept with it: a guard
            # after the first statement fails the pipeline on what the first found.
            session.info[FIRST_ROWS_KEY] = [await _row_or_none(cursor) for cursor in cursors]


async def _row_or_none(cursor: psycopg.AsyncCursor[Any]) -> Any:
    with contextlib.suppress(psycopg.Error):
        return await cursor.fetchone()
    return None


async def run_first(
    session: AsyncSession, sql: str, params: Mapping[str, Any], *, prepare: bool | None = None
) -> Any:
    """Run ``sql`` in the session's transaction and return its first row: sent in one
    pipeline with ``BEGIN``, the binding and any statements deferred before it
    (``defer_first``, which keep their places and rows) when the transaction has not begun
    yet; on the transaction's connection otherwise. ``prepare``: as ``Statement``'s."""
    if not session.in_transaction():
        deferred = session.info.get(FIRST_STATEMENT_KEY, ())
        session.info[FIRST_STATEMENT_KEY] = (*deferred, Statement(sql, params, prepare))
        try:
            await session.connection()
            rows = session.info.get(FIRST_ROWS_KEY) or ()
            if not deferred:
                # Nobody else waits for these rows; deferred statements' owners read theirs
                # with ``first_row``.
                session.info.pop(FIRST_ROWS_KEY, None)
            return rows[len(deferred)] if len(rows) > len(deferred) else None
        finally:
            session.info.pop(FIRST_STATEMENT_KEY, None)
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    return await (await driver.execute(sql, params, prepare=prepare)).fetchone()  # type: ignore[union-attr]


def defer_first(session: AsyncSession, statements: Sequence[Statement]) -> bool:
    """Have ``statements`` sent first in the session's next transaction, with its ``BEGIN``
    and binding, whenever that reaches the server (the first statement's row is then
    ``first_row``); ``False`` when a transaction has begun, and nothing is deferred."""
    if session.in_transaction():
        return False
    session.info[FIRST_STATEMENT_KEY] = tuple(statements)
    session.info.pop(FIRST_ROWS_KEY, None)
    return True


def first_row(session: AsyncSession) -> Any:
    """The row of the deferred first statement, or ``None`` when it was not sent; and
    the deferral is over: a later transaction sends nothing of it."""
    session.info.pop(FIRST_STATEMENT_KEY, None)
    rows = session.info.pop(FIRST_ROWS_KEY, None)
    return rows[0] if rows else None


# Operators (provisioning, migrations) run without a statement time limit: migrating a
# large table takes as long as it takes. Their ``lock_timeout`` bounds the waiting instead.
OPERATOR_TIMEOUT_MS = 0


def set_transaction_search_path(
    connection: Connection, schema: str | None, timeout_ms: int = OPERATOR_TIMEOUT_MS
) -> None:
    """The same binding for code that works on a Core connection (operator paths)."""
    connection.exec_driver_sql(BIND_SQL, bind_parameters(schema, timeout_ms))


# Schemas themselves. Each statement goes alone in its own message: Citus relays DDL on a
# distributed schema to its workers over the extended protocol, which refuses a message
# holding several commands.

# A schema made with schema-based sharding on becomes a distributed schema: right for a
# tenant, whose tables then live together on one worker and move with
# ``citus_schema_move``; wrong for the registry, which every request's host lookup reads
# on the coordinator. The setting exists only where Citus is loaded.
_LOCAL_SCHEMA_SQL = (
    "SELECT set_config('citus.enable_schema_based_sharding', 'off', true)"
    " WHERE current_setting('citus.enable_schema_based_sharding', true) IS NOT NULL"
)


def create_shared_schema(connection: Connection, schema: str) -> None:
    """Create the platform's own schema (if missing), never distributed."""
    connection.exec_driver_sql(_LOCAL_SCHEMA_SQL)
    connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")


def create_tenant_schema(connection: Connection, schema: str, ddl: Sequence[str] = ()) -> None:
    """Create ``schema``, bind the transaction to it and run ``ddl`` in it, one statement
    per message; the caller holds the transaction."""
    connection.exec_driver_sql(f"CREATE SCHEMA {quote_ident(schema)}")
    set_transaction_search_path(connection, schema)
    for statement in ddl:
        connection.exec_driver_sql(statement)


def qualified_table(schema: str, table: str) -> str:
    """``schema.table``, both quoted, for operator statements that name one schema's table."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def drop_tenant_schema(connection: Connection, schema: str) -> None:
    connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")


# Statements whose text names a tenant's schema, with PostgreSQL's own ``$n`` placeholders.
#
# The hot reads name the tenant's schema in their text (read_transaction.py says why), so
# every tenant has statement texts of its own. psycopg turns ``%(name)s`` placeholders into
# ``$n`` with a regular expression and keeps the result for the last 128 texts only: over
# more tenants than that, every request paid the conversion again (~30 µs of the app's
# ~680 µs per request over 1,000 tenants, bench/RESULTS.md, tenth pass). A
# ``TenantStatement`` is converted once, where it is defined; a request only puts its
# schema in, and psycopg's raw cursor sends the text as it is (``RawQuery``).

# psycopg's named placeholder, its escaped percent sign, and any other percent sign.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%")
_SCHEMA = "{s}"


class RawQuery(NamedTuple):
    """A statement in PostgreSQL's ``$n`` style and its values, in order."""

    sql: str
    values: list[Any]
    # Whether psycopg may count and prepare it (see ``TenantStatement``).
    recurring: bool = True


class TenantStatement:
    """A statement written with psycopg's ``%(name)s`` placeholders and ``{s}`` where the
    quoted schema and a dot go (every other brace is literal).

    ``recurring=False`` is for a statement a tenant runs about once per caller and cache
    TTL (loading a caller). psycopg counts every statement it runs, ``prepare=False``
    included, in a table of up to ``prepared_max`` texts per connection until its fifth
    run: over 10,000 tenants each connection's table filled with 512 such texts of ~900
    bytes that were never prepared, ~5 MB per worker, and they pushed out the counts of
    the statements that recur (bench/RESULTS.md, tenth pass). Such a statement runs with
    psycopg's preparing off (``ReadTransaction``).
    """

    __slots__ = ("_parts", "names", "recurring")

    def __init__(self, template: str, recurring: bool = True) -> None:
        self.recurring = recurring
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            name = match.group(1)
            if name is None:
                raise ValueError(f"a lone % in a statement template: {template!r}")
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self._parts = _PLACEHOLDER.sub(numbered, template).split(_SCHEMA)
        self.names = tuple(names)

    def for_tenant(self, schema: str, params: Mapping[str, Any]) -> RawQuery:
        """This statement on ``schema`` (from the registry; quoted here) with ``params``."""
        sql = (quote_ident(schema) + ".").join(self._parts)
        return RawQuery(sql, [params[name] for name in self.names], self.recurring)


# Applied tenant versions, read for many schemas in one statement (``atrium tenants verify``
# and ``migrate``): one round trip per batch instead of one per schema, and schema names
# written into SQL here only, quoted.


def applied_versions_sql(schemas: list[str] | tuple[str, ...], version_table: str = "alembic_version") -> str:
    """One statement whose rows are ``(position in schemas, version_num)`` for each schema.

    Every schema must hold ``version_table`` (a missing one fails the whole statement):
    the caller filters them through the catalog first. Keep batches to a few hundred
    schemas: the statement locks each table it reads until its transaction ends.
    """
    if not schemas:
        raise ValueError("no schemas to read")
    table = quote_ident(version_table)
    return " UNION ALL ".join(
        f"SELECT {position} AS position, version_num FROM {quote_ident(schema)}.{table}"
        for position, schema in enumerate(schemas)
    )
