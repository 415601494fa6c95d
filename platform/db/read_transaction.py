"""A request's read-only work on the psycopg connection itself, without an ORM session.

Hot reads (the caller's identity on every authenticated request, and ``GET`` of the
CRUD resources) skip SQLAlchemy's session and statement layers: measured on this
project's machine (``bench/RESULTS.md``), a transaction with the binding statement and
one select costs ~330 µs of client CPU on a bare psycopg connection, ~470 µs on a psycopg
connection borrowed from SQLAlchemy's pool, ~670-800 µs through a SQLAlchemy Core
connection and ~780-930 µs through an ``AsyncSession``. Writes keep advanced-alchemy's
session and repositories, where the ORM earns its cost.

The connection comes from the engine's pool (``engine.raw_connection()``), so pool size,
overflow, recycling and invalidation stay those of the one engine, and the transaction
starts with the very binding statement the session path issues (``binding.py``).

A transaction is opened by authentication (``security.tokens.TokenAuth``) for routes marked
``READS_ON_DRIVER``, so the caller and the resource are read in one transaction; the
handler ends it as soon as it has its rows, and ``release_on_response`` ends any still
open when the response starts (a guard refused, a parameter was invalid).

A ``GET`` by id of a remembered caller goes further (route option ``ROW_BY_ID``): its
row is fetched by the very statement that checks the caller, a schema-qualified
statement run alone in autocommit (``fetch_alone``) inside authentication, before
routing, guards and handler run. Over many tenants a request mostly waited for a pooled
connection that others held across their handlers (bench/RESULTS.md, fifth pass); this
holds one for a single round trip and binds no ``search_path`` (sixth pass).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from litestar.types import Message, Scope
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from atrium.platform.db.binding import BIND_SQL, RawQuery, bind_parameters
from atrium.platform.tenancy.naming import quote_ident

# Route option: the handler reads through the request's ``ReadTransaction``.
READS_ON_DRIVER = "reads_on_driver"
# Route option: a ``RowById``, the row the handler returns.
ROW_BY_ID = "row_by_id"
STATE_KEY = "atrium_read_transaction"
ROW_KEY = "atrium_row_by_id"


@dataclass(frozen=True, slots=True)
class RowById:
    """A row the caller check may fetch for the handler: ``columns`` of ``table`` whose
    ``id`` is the path parameter ``param``. Names come from the model, quoted."""

    table: str
    columns: tuple[str, ...]
    param: str
    # The statement's tenant-independent parts, quoted once rather than on every request.
    _columns_sql: str = field(init=False, repr=False, compare=False)
    _table_sql: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_columns_sql", ", ".join(f"r.{quote_ident(c)}" for c in self.columns))
        object.__setattr__(self, "_table_sql", quote_ident(self.table))

    def joined_to(self, select_list: str) -> str:
        """``select_list``, then whether the row exists, then its columns (NULL if not).

        A ``binding.TenantStatement`` template: ``{s}`` stands for the schema.
        """
        return (
            f"SELECT {select_list}, r.id IS NOT NULL AS found, {self._columns_sql}"
            f" FROM (SELECT 1) AS one LEFT JOIN {{s}}{self._table_sql} AS r"
            " ON r.id = %(row_id)s"
        )


# A statement: shared text with psycopg's placeholders and its parameters apart, or a
# tenant's own text with its values (binding.py).
Query = str | RawQuery


class ReadTransaction:
    """One tenant-bound transaction on a pooled psycopg connection."""

    __slots__ = ("_conn", "_fairy")

    def __init__(self, fairy: PoolProxiedConnection) -> None:
        self._fairy: PoolProxiedConnection | None = fairy
        self._conn: psycopg.AsyncConnection[Any] = fairy.driver_connection  # type: ignore[assignment]

    @classmethod
    async def begin(
        cls, engine: AsyncEngine, schema: str, timeout_ms: int, first: Query | None = None
    ) -> tuple[ReadTransaction, Sequence[Any] | None]:
        """Borrow a connection, open a transaction bound to ``schema`` and run ``first``.

        The binding is a statement of its own (``binding.py`` says why), sent in one
        pipeline with ``BEGIN`` and ``first``: one round trip for all three. Returns
        ``first``'s first row (``None`` without ``first``).
        """
        transaction = cls(await engine.raw_connection())
        return transaction, await transaction._guarded(transaction._bind_and_run(schema, timeout_ms, first))

    @classmethod
    async def fetch_alone(
        cls, engine: AsyncEngine, statement: Query, params: Mapping[str, Any] | None = None
    ) -> Sequence[Any] | None:
        """Run one self-contained statement in autocommit and return its first row.

        One round trip instead of three (``BEGIN``, the statement, ``COMMIT``), and the
        pooled connection is held for that round trip only. The statement must not need
        the tenant binding: every table it names is qualified with the schema.

        psycopg's autocommit is a flag of the connection, and the connection goes back to
        a pool whose sessions rely on it being off: it is switched back before the
        connection is returned, and a connection whose statement did not finish (a
        cancelled request) is closed rather than pooled.
        """
        transaction = cls(await engine.raw_connection())
        row = await transaction._guarded(transaction._run_in_autocommit(statement, params))
        await transaction.close()
        return row

    async def _bind_and_run(self, schema: str, timeout_ms: int, first: Query | None) -> Sequence[Any] | None:
        async with self._conn.pipeline():
            await self._conn.execute(BIND_SQL, bind_parameters(schema, timeout_ms))
            cursor = None if first is None else await self._run(first, None)
        return None if cursor is None else await cursor.fetchone()

    async def _run_in_autocommit(
        self, statement: Query, params: Mapping[str, Any] | None
    ) -> Sequence[Any] | None:
        await self._conn.set_autocommit(True)
        return await (await self._run(statement, params)).fetchone()

    async def _guarded(self, work: Awaitable[Sequence[Any] | None]) -> Sequence[Any] | None:
        """``work``'s row; on failure the connection is given back or dropped, then re-raised."""
        try:
            return await work
        except BaseException as exc:
            await self._give_up(exc)
            raise

    async def _give_up(self, exc: BaseException) -> None:
        if isinstance(exc, psycopg.Error):
            # The statement failed but the connection may be fine: ``close`` decides.
            await self.close(failed=exc)
        else:
            # Cancelled mid-statement: the connection's state is unknown; never reuse it.
            await self.discard()

    async def execute(self, sql: Query, params: Mapping[str, Any] | None = None) -> psycopg.AsyncCursor[Any]:
        try:
            return await self._run(sql, params)
        except psycopg.Error as exc:
            await self.close(failed=exc)
            raise

    async def fetch_one(self, sql: Query, params: Mapping[str, Any] | None = None) -> Sequence[Any] | None:
        return await (await self.execute(sql, params)).fetchone()

    async def fetch_all(self, sql: Query, params: Mapping[str, Any] | None = None) -> list[Sequence[Any]]:
        return await (await self.execute(sql, params)).fetchall()

    async def _run(self, sql: Query, params: Mapping[str, Any] | None) -> psycopg.AsyncCursor[Any]:
        if not isinstance(sql, RawQuery):
            return await self._conn.execute(sql, params)
        # Sent as it is: its placeholders are already PostgreSQL's ``$n``.
        cursor = psycopg.AsyncRawCursor(self._conn)
        if sql.recurring:
            return await cursor.execute(sql.sql, sql.values)
        # Neither counted nor prepared (``binding.TenantStatement`` says why); the connection is
        # this transaction's alone until it is given back.
        threshold, self._conn.prepare_threshold = self._conn.prepare_threshold, None
        try:
            return await cursor.execute(sql.sql, sql.values)
        finally:
            self._conn.prepare_threshold = threshold

    async def stream(
        self, sql: str, params: Mapping[str, Any] | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Any]]:
        """The rows of ``sql`` in lists of at most ``batch``, fetched through a server-side
        cursor so that memory holds one batch however many rows there are; then the
        transaction ends. A consumer that stops early (a client gone mid-download) leaves
        the cursor open: the connection is closed rather than pooled."""
        try:
            async with self._conn.cursor(name="atrium_stream") as cursor:
                await cursor.execute(sql, params)
                while rows := await cursor.fetchmany(batch):
                    yield rows
        except BaseException as exc:
            await self._give_up(exc)
            raise
        await self.close()

    async def close(self, failed: BaseException | None = None) -> None:
        """End the transaction and give the connection back (idempotent)."""
        fairy, self._fairy = self._fairy, None
        if fairy is None:
            return
        if failed is not None and (self._conn.closed or self._conn.broken):
            # The server went away: the connections pooled beside this one are most likely
            # dead too. Drop them all, as SQLAlchemy does itself when one of its own
            # statements meets a disconnect (this statement bypassed its error handling).
            await greenlet_spawn(fairy._pool._invalidate, fairy, failed)  # type: ignore[attr-defined]
            return
        try:
            if self._conn.autocommit:
                # From ``fetch_alone``: the pool's sessions rely on autocommit being off
                # (they would run without a transaction, and unbound).
                await self._conn.set_autocommit(False)
            await (self._conn.rollback() if failed is not None else self._conn.commit())
        except psycopg.Error:
            # A connection in an unknown state never goes back to the pool; ``invalidate``
            # also checks its slot in.
            await greenlet_spawn(fairy.invalidate)
            return
        await greenlet_spawn(fairy.close)

    async def discard(self) -> None:
        """Close the connection instead of pooling it (idempotent)."""
        fairy, self._fairy = self._fairy, None
        if fairy is not None:
            await greenlet_spawn(fairy.invalidate)


def current(scope: Scope) -> ReadTransaction | None:
    return scope.get("state", {}).get(STATE_KEY)


def detach(scope: Scope) -> ReadTransaction | None:
    """Take the request's read transaction out of its hands: it then outlives the response
    start (a streamed body reads on while it is sent), and whoever detached it ends it."""
    return scope.get("state", {}).pop(STATE_KEY, None)


def remember(scope: Scope, transaction: ReadTransaction) -> None:
    scope.setdefault("state", {})[STATE_KEY] = transaction


def keep_row(scope: Scope, row: Sequence[Any] | None) -> None:
    """Hand the handler its ``ROW_BY_ID`` row (``None``: there is no such row)."""
    scope.setdefault("state", {})[ROW_KEY] = (row,)


def kept_row(scope: Scope) -> tuple[Sequence[Any] | None] | None:
    """The row authentication fetched, in a 1-tuple; ``None`` when it fetched none."""
    return scope.get("state", {}).pop(ROW_KEY, None)


async def release_on_response(message: Message, scope: Scope) -> None:
    """``before_send`` hook: no read transaction outlives its request."""
    if message["type"] == "http.response.start":
        transaction = scope.get("state", {}).pop(STATE_KEY, None)
        if transaction is not None:
            await transaction.close()
