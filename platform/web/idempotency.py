"""``Idempotency-Key`` on every POST (API.md §5, "Retries"), written once for every create.

A POST sent with the header is answered once per (tenant, user, key) for 24 hours:

1. One statement, in the request's transaction, takes a transaction-scoped advisory lock
   on the key and reads the key's row (``_CLAIM``). A fresh row with the same fingerprint
   is the first answer, sent again with ``Idempotent-Replayed: true``; with another
   fingerprint, 422. No row and no lock: the first request with the key is still running,
   409. No row and the lock: this request does the write.
2. The write, then the key's row with the answer (``IdempotencyKey``) queued in the same
   transaction and sent with its ``COMMIT`` (``queued_inserts.py``). A write that fails
   leaves no key behind, so its retry runs again.

The claim is not a round trip of its own: it is deferred to the transaction's first
contact with the server (``binding.defer_first``) and sent with its ``BEGIN`` and binding;
for a create whose rows are all queued that is its ``COMMIT``, so the whole create is one
pipeline. Since the claim's answer then comes with the write's, it decides the outcome
whatever the write met: a guard after it (``_GUARD``) fails the transaction at once when
another request holds the key; a kept answer makes the key's row collide, so the write
rolls back and the answer is replayed.

The row lives in the tenant's schema and commits with the row it describes: a retry finds
it from any app process, and no Redis outage can lose it between the write and the key.
Where two requests slip between the lock and the read (the read's snapshot is taken when
its statement starts), the key's primary key refuses the second insert and its whole
transaction, write included, rolls back (409, ``db_errors.integrity_problem``).

The lock is transaction-scoped: Citus routes the statement to the tenant's worker, and
session state would outlive the transaction behind PgBouncer. A POST without the header
costs nothing here but one header lookup in ``check_idempotency_key``.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.enums import MediaType
from litestar.serialization import encode_json
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db.binding import Statement, defer_first, first_row, run_first
from atrium.platform.db.queued_inserts import queue_insert, settle
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.errors import problem
from atrium.tenants.idempotency_keys import KEY_MAX_LENGTH, IdempotencyKey

HEADER = "Idempotency-Key"
# Route option: an anonymous route that keeps answers per client address (``answer_once``'s
# ``anonymous_client``); the OpenAPI document says so on it. Other anonymous POSTs keep nothing.
KEEPS_ANONYMOUS_ANSWERS = "keeps_anonymous_answers"
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_FOR = datetime.timedelta(hours=24)
# Expired keys each keyed POST purges at most, oldest first: more than the one key it adds,
# so the table never holds much more than a day of keys, and few enough to stay cheap.
PURGE_BATCH = 100

_HEADER_LOWER = HEADER.lower()

# Locks, purges and reads in one round trip. The purge skips rows another transaction is
# purging (no waiting on each other) but always takes this key's own expired row, which
# the insert that follows would otherwise collide with. ``(VALUES (1))`` makes exactly one
# row, so the lock is tried whether or not the key has a row.
#
# Never prepared (``Statement.prepare``): the plan psycopg's prepared statement kept was
# made while the tenant's table was small, a sequential scan for the purge, and it stayed
# until something analyzed the table; with autovacuum off, every keyed POST read every key
# (the database's CPU per write grew from 1.1 to 2.6 ms over 20,000 keys, bench/RESULTS.md).
# Planned at each run, its cost follows the table: index scans on created_at and the key.
_CLAIM = """
    WITH purged AS (
        DELETE FROM idempotency_keys
        WHERE created_at < now() - %(kept)s AND (
            (user_id = %(user_id)s AND key = %(key)s)
            OR (user_id, key) IN (
                SELECT user_id, key FROM idempotency_keys WHERE created_at < now() - %(kept)s
                ORDER BY created_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
            )
        )
    )
    SELECT pg_try_advisory_xact_lock(%(lock)s), k.fingerprint, k.status, k.body, k.headers
    FROM (VALUES (1)) AS one (n)
    LEFT JOIN idempotency_keys AS k
        ON k.user_id = %(user_id)s AND k.key = %(key)s AND k.created_at >= now() - %(kept)s
"""

# Sent right after the claim when the claim goes with the write (``answer_once``): fails
# the transaction, before the write's statements run, when the first request with the key
# is still running (the lock is re-entrant within a transaction, so a claim that took it
# passes). Division by zero is how plain SQL fails on a condition; the claim's row says why.
_GUARD = "SELECT 1 / pg_try_advisory_xact_lock(%(lock)s)::int"

T = TypeVar("T")
# Called with the new row after the write is flushed and before the commit.
BeforeCommit = Callable[[T], Awaitable[None]]


def _header_problem(message: str) -> Exception:
    return problem(
        422,
        f"The {HEADER} header is not valid: {message}.",
        errors=[{"field": HEADER, "message": message, "source": "header"}],
    )


def key_in_use() -> Exception:
    """409: the first request with this key has not committed yet."""
    return problem(
        409,
        f"A request with this {HEADER} is still being answered; retry to get its answer.",
        type_="idempotency-key-in-use",
    )


def requested_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The request's ``Idempotency-Key``, or ``None`` without one; 422 when it is bad."""
    headers = connection.headers
    if _HEADER_LOWER not in headers:
        return None
    values = headers.getall(_HEADER_LOWER)
    if len(values) > 1:
        raise _header_problem("send it once")
    key = values[0]
    if not 1 <= len(key) <= KEY_MAX_LENGTH:
        raise _header_problem(f"must be 1 to {KEY_MAX_LENGTH} characters")
    if "\x00" in key:  # PostgreSQL stores no NUL in text
        raise _header_problem("contains a NUL character")
    return key


def check_idempotency_key(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Every POST accepts the header (checked before every handler): a bad one is 422 before
    anything else is read, on the routes that remember answers and on those that do not."""
    if connection.scope.get("method") == "POST":
        requested_key(connection)


def _as_value(body: bytes) -> bytes:
    """A JSON body as the value it is: a retry that sends its keys in another order, or
    spaced otherwise, is the same request (API.md §5: only another body is 422)."""
    try:
        return msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    except msgspec.DecodeError:  # no body (an action), or not JSON: the bytes themselves
        return body


def fingerprint(method: str, path: str, parts: Sequence[bytes]) -> bytes:
    """SHA-256 of the request: each part length-prefixed, so no two splits hash alike."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogatepass"), *parts):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def _lock_id(schema: str, user_id: uuid.UUID, key: str) -> int:
    """The advisory lock's 64-bit id: tenants share the database's lock space."""
    digest = hashlib.blake2b(f"idempotency\0{schema}\0{user_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class _Claim:
    user_id: uuid.UUID
    key: str
    fingerprint: bytes
    lock_id: int

    @property
    def params(self) -> dict[str, Any]:
        return {
            "kept": KEPT_FOR,
            "batch": PURGE_BATCH,
            "user_id": self.user_id,
            "key": self.key,
            "lock": self.lock_id,
        }

    def answer(self, claimed: Sequence[Any]) -> Response[bytes] | None:
        """The first answer to send again, or ``None`` when this request is to do the write."""
        locked, stored_fingerprint, status, body, headers = claimed
        if stored_fingerprint is not None:
            if bytes(stored_fingerprint) != self.fingerprint:
                raise _header_problem("already used for another request (a different method, path or body)")
            return _response(bytes(body), status, headers, replayed=True)
        if not locked:
            raise key_in_use()
        return None

    def remember(self, session: AsyncSession, status: int, body: bytes, headers: dict[str, str]) -> None:
        # Sent with the COMMIT (queued_inserts.py); its ``created_at`` is the server's.
        queue_insert(
            session,
            IdempotencyKey(
                user_id=self.user_id,
                key=self.key,
                fingerprint=self.fingerprint,
                status=status,
                body=body,
                headers=headers,
            ),
            reads_back=False,
        )


def _anonymous_keeping(tenant: ResolvedTenant, client: str, key: str) -> tuple[uuid.UUID, str] | None:
    """Where an anonymous POST's key is kept: under the tenant's owner (keys are rows of a
    user), as a digest of the client's address and the key, so that strangers' keys never
    meet and no owner's own key can equal one. ``None`` (not kept) for a tenant without one."""
    if tenant.owner_id is None:
        return None
    digest = hashlib.sha256(f"{client}\0{key}".encode()).hexdigest()
    return tenant.owner_id, f"anonymous:{digest}"


def _response(body: bytes, status: int, headers: dict[str, str], replayed: bool = False) -> Response[bytes]:
    headers = dict(headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


async def answer_once(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    tenant: ResolvedTenant,
    write: Callable[[BeforeCommit[T] | None], Awaitable[T]],
    render: Callable[[T], Any],
    headers: Callable[[T], dict[str, str]] = lambda _row: {},
    status: int | Callable[[T], int] = 201,
    body: Sequence[bytes] | None = None,
    anonymous_client: str | None = None,
) -> Response[Any]:
    """Answer a POST that writes, once per ``Idempotency-Key`` when the request has one.

    ``write(before_commit)`` does the write in ``session`` and returns the new row, calling
    ``before_commit(row)`` (when given) after its flush and before its commit; ``render``
    and ``headers`` (Location, ETag) make the answer from the row. ``body`` is what identifies the request
    beside its method and path (default: the raw body; an upload passes its file's name,
    type and bytes, since multipart boundaries differ from one retry to the next).
    ``anonymous_client`` (the client's address) marks a request with no caller: its answer
    is kept per address (``_anonymous_keeping``).
    """

    def status_of(row: T) -> int:
        return status(row) if callable(status) else status

    key = requested_key(request)
    keep_for = None
    if key is not None:
        keep_for = (
            (request.user.id, key)
            if anonymous_client is None
            else _anonymous_keeping(tenant, anonymous_client, key)
        )
    if keep_for is None:
        row = await write(None)
        return Response(render(row), status_code=status_of(row), headers=headers(row))
    parts = [_as_value(await request.body())] if body is None else body
    user_id, key = keep_for
    claim = _Claim(
        user_id,
        key,
        fingerprint(request.method, request.url.path, parts),
        _lock_id(tenant.schema, user_id, key),
    )
    deferred = defer_first(
        session, (Statement(_CLAIM, claim.params, prepare=False), Statement(_GUARD, claim.params))
    )
    if not deferred:
        # A transaction has begun: the claim runs now, and is answered before the write.
        replay = claim.answer(await run_first(session, _CLAIM, claim.params, prepare=False))
        if replay is not None:
            return replay
    answers: list[Response[bytes]] = []

    async def before_commit(row: T) -> None:
        # The row as the server wrote it (a number it gave), then encoded here, once: the
        # first answer and every replay are the same bytes.
        await settle(session)
        content, described = encode_json(render(row)), headers(row)
        claim.remember(session, status_of(row), content, described)
        answers.append(_response(content, status_of(row), described))

    try:
        row = await write(before_commit)
    except Exception:
        # The claim went with the write's first statement, so its answer stands before
        # anything the write met: the key's row the write's own collided with, the guard.
        claimed = first_row(session) if deferred else None
        replay = None if claimed is None else claim.answer(claimed)
        if replay is not None:
            return replay
        raise
    claimed = first_row(session) if deferred else None
    if not answers:
        # The write found its row already there (a direct room) and wrote nothing, so
        # nothing is remembered: a retry finds the row again, or the first answer.
        replay = None if claimed is None else claim.answer(claimed)
        if replay is not None:
            return replay
        return Response(render(row), status_code=status_of(row), headers=headers(row))
    return answers[0]
