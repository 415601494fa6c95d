"""The floor for Atrium's requests: a minimal Litestar app over raw psycopg.

It serves the same single-row select as Atrium's ``GET /users/{id}``, in one transaction
that begins with the same tenant binding statement Atrium issues
(``SELECT set_config('search_path', …, true), set_config('statement_timeout', …, true), …``),
through a ``psycopg_pool.AsyncConnectionPool`` of the same size as Atrium's default pool
(``ATRIUM_DB_POOL_SIZE`` + ``ATRIUM_DB_MAX_OVERFLOW``). No authentication, no ORM: the
tenant is looked up from the Host header in a dict loaded from the registry at start-up.

``GET /alone/users/{id}`` is the same floor for the shape of Atrium's own ``GET`` by id
(``ReadTransaction.fetch_alone``): one select naming the schema-qualified table, alone in
autocommit, one round trip, on a second pool of the same size. bench/run.py measures the
spread of both shapes beside Atrium's.

``POST /user-groups`` is the floor of the write figure: the same INSERT of a group owned by
the tenant's owner (from the registry: no token here), returning the row, and the commit,
in a transaction bound as above. ``POST /form-responses`` is the
floor of the form response figure (bench/forms.py): the same INSERT of the answers as sent,
owned by the tenant's owner, returning the row, and the commit, bound as above; no check
of the answers, no lock of the form, no count. ``GET /users?email=…`` is the floor of the filtered list:
the very statement Atrium's list compiles for that filter (platform/web/listing.py), in a
transaction bound as above. ``GET /help-desk?assignee_id=…&status=…`` likewise, for the
help desk's agent queue (bench/helpdesk.py).

``POST /contract/user-groups`` is the write figure's second floor: the contract's work done
by hand with Atrium's own statements and round trips, so that the two floors part what the
contract costs from what Atrium's stack adds. The bearer token is verified (PyJWT, each
token string once, as Atrium remembers verified tokens) and must come from the tenant;
the caller is checked alone in autocommit (``CHECK_CALLER``); then ``BEGIN``, the binding,
the ``Idempotency-Key`` claim and its guard go in one pipeline, and the row, the key's row
with the encoded answer and ``COMMIT`` in a second. A kept answer is replayed.

bench/run.py runs it under uvicorn with the options ``atrium serve`` uses:

    DATABASE_URL=postgresql://root@127.0.0.1:5432/<db> python bench/baseline_app.py --port 8001 --workers 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import uuid
from typing import Any

import jwt
import msgspec
import psycopg
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import FromPath
from psycopg_pool import AsyncConnectionPool

# Imported, not copied, so that the floor always runs exactly Atrium's binding statement.
from atrium.platform.db.binding import BIND_SQL
from atrium.platform.security.callers import CHECK_CALLER
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.web.concurrency import entity_tag
from atrium.platform.web.idempotency import _CLAIM, _GUARD, _as_value, _Claim, _lock_id, fingerprint
from atrium.platform.web.listing import Filter, Listing, ListRequest
from atrium.tenants.helpdesk.models import Ticket
from atrium.tenants.helpdesk.schemas import TicketRead
from atrium.tenants.identity.models import User
from atrium.tenants.identity.schemas import UserRead

USER_COLUMNS = ("id", "name", "email", "phone", "created_at", "updated_at")
_SELECT_USER = f"SELECT {', '.join(USER_COLUMNS)} FROM {{table}} WHERE id = %(id)s"
SELECT_USER = _SELECT_USER.format(table="users")


GROUP_COLUMNS = ("id", "name", "owner_id", "created_at", "updated_at")
INSERT_GROUP = (
    "INSERT INTO user_groups (id, name, owner_id) VALUES (%(id)s, %(name)s, %(owner_id)s)"
    f" RETURNING {', '.join(GROUP_COLUMNS)}"
)
# The contract floor's row: the columns Atrium's queued insert sends, times from the app.
INSERT_GROUP_STAMPED = (
    "INSERT INTO user_groups (id, name, owner_id, created_at, updated_at)"
    " VALUES (%(id)s, %(name)s, %(owner_id)s, %(now)s, %(now)s)"
)
INSERT_KEY = (
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body, headers)"
    " VALUES (%(user_id)s, %(key)s, %(fingerprint)s, %(status)s, %(body)s, %(headers)s::jsonb)"
)
# The form response figure's floor (bench/forms.py): the answers inserted as sent, with no
# check against the form and no count kept, returning the columns Atrium answers with.
RESPONSE_COLUMNS = ("id", "form_id", "answers", "form_version", "owner_id", "created_at", "updated_at")
INSERT_RESPONSE = (
    "INSERT INTO form_responses (form_id, answers, form_version, owner_id)"
    " VALUES (%(form_id)s, %(answers)s::jsonb, 1, %(owner_id)s)"
    f" RETURNING {', '.join(RESPONSE_COLUMNS)}"
)
# Built, not copied, as Atrium builds it for ``GET /users?email=…``.
USERS_LISTING = Listing(User.__table__, tuple(UserRead.__struct_fields__), [Filter("email", casefold=True)])
LIST_USERS_BY_EMAIL = USERS_LISTING.statement(ListRequest(filters=(("email", []),)))


# The help-desk figure's floor: an agent's tickets by status, the statement Atrium builds.
TICKETS_LISTING = Listing(
    Ticket.__table__, tuple(TicketRead.__struct_fields__), [Filter("assignee_id"), Filter("status")]
)
LIST_TICKETS = TICKETS_LISTING.statement(ListRequest(filters=(("assignee_id", []), ("status", []))))


def select_user_alone(schema: str) -> str:
    return _SELECT_USER.format(table=f"{quote_ident(schema)}.users")


def _host(raw: str) -> str:
    return raw.rsplit(":", 1)[0].rstrip(".").lower()


def create_app() -> Litestar:
    url = os.environ["DATABASE_URL"]
    base_domain = os.environ.get("ATRIUM_BASE_DOMAIN", "localhost")
    min_size = int(os.environ.get("ATRIUM_DB_POOL_SIZE", "10"))
    max_size = min_size + int(os.environ.get("ATRIUM_DB_MAX_OVERFLOW", "0"))
    timeout = os.environ.get("ATRIUM_DB_STATEMENT_TIMEOUT_MS", "30000") + "ms"
    pool = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False, kwargs={"application_name": "atrium-baseline"}
    )
    alone_pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"application_name": "atrium-baseline", "autocommit": True},
    )
    schemas: dict[str, str] = {}
    owners: dict[str, uuid.UUID] = {}
    tenant_ids: dict[str, str] = {}
    secret = os.environ.get("ATRIUM_SECRET_KEY", "")
    verified: dict[str, dict[str, Any]] = {}

    async def startup() -> None:
        await pool.open(wait=True)
        await alone_pool.open(wait=True)
        async with pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT slug, schema_name, owner_id, id FROM platform.tenants")
            ).fetchall()
        schemas.update({f"{slug}.{base_domain}": schema for slug, schema, _, _ in rows})
        owners.update({schema: owner for _, schema, owner, _ in rows})
        tenant_ids.update({schema: str(tenant_id) for _, schema, _, tenant_id in rows})

    async def shutdown() -> None:
        await pool.close()
        await alone_pool.close()

    def schema_of(request: Request[Any, Any, Any]) -> str:
        schema = schemas.get(_host(request.headers.get("host", "")))
        if schema is None:
            raise NotFoundException("no tenant")
        return schema

    def found(row: Any) -> dict[str, Any]:
        if row is None:
            raise NotFoundException("no such user")
        return dict(zip(USER_COLUMNS, row, strict=True))

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/users/{user_id:uuid}")
    async def get_user(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> dict[str, Any]:
        schema = schema_of(request)
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(BIND_SQL, {"path": quote_ident(schema), "timeout": timeout})
            row = await (await conn.execute(SELECT_USER, {"id": user_id})).fetchone()
        return found(row)

    @get("/alone/users/{user_id:uuid}")
    async def get_user_alone(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> dict[str, Any]:
        schema = schema_of(request)
        async with alone_pool.connection() as conn:
            row = await (await conn.execute(select_user_alone(schema), {"id": user_id})).fetchone()
        return found(row)

    async def inserted(
        schema: str, insert: str, values: dict[str, Any], columns: tuple[str, ...], path: str
    ) -> Response[dict[str, Any]]:
        """``insert`` (RETURNING ``columns``) and the commit, in a bound transaction: 201."""
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(BIND_SQL, {"path": quote_ident(schema), "timeout": timeout})
            row = await (await conn.execute(insert, values)).fetchone()
        assert row is not None
        item = dict(zip(columns, row, strict=True))
        return Response(item, status_code=201, headers={"Location": f"{path}/{item['id']}"})

    @post("/user-groups")
    async def create_group(request: Request[Any, Any, Any], data: dict[str, Any]) -> Response[dict[str, Any]]:
        schema = schema_of(request)
        values = {"id": uuid.uuid4(), "name": str(data["name"]), "owner_id": owners[schema]}
        return await inserted(schema, INSERT_GROUP, values, GROUP_COLUMNS, "/user-groups")

    @post("/form-responses")
    async def create_response(
        request: Request[Any, Any, Any], data: dict[str, Any]
    ) -> Response[dict[str, Any]]:
        schema = schema_of(request)
        values = {
            "form_id": uuid.UUID(str(data["form_id"])),
            "answers": msgspec.json.encode(data["answers"]).decode(),
            "owner_id": owners[schema],
        }
        return await inserted(schema, INSERT_RESPONSE, values, RESPONSE_COLUMNS, "/form-responses")

    def caller_claims(request: Request[Any, Any, Any], schema: str) -> dict[str, Any]:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        claims = verified.get(token)
        if claims is None:
            try:
                claims = jwt.decode(
                    token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "jti"]}
                )
            except jwt.PyJWTError:
                raise NotAuthorizedException("bad token") from None
            verified[token] = claims
        if claims["extras"]["tid"] != tenant_ids[schema]:
            raise NotAuthorizedException("another tenant's token")
        return claims

    @post("/contract/user-groups")
    async def create_group_by_contract(
        request: Request[Any, Any, Any], data: dict[str, Any]
    ) -> Response[bytes]:
        schema = schema_of(request)
        claims = caller_claims(request, schema)
        user_id = uuid.UUID(claims["sub"])
        check = CHECK_CALLER.for_tenant(
            schema, {"user_id": user_id, "jti": claims["jti"], "iat": claims["extras"]["iat_ms"]}
        )
        async with alone_pool.connection() as conn:
            valid = await (await psycopg.AsyncRawCursor(conn).execute(check.sql, check.values)).fetchone()
        if valid is None or not valid[0]:
            raise NotAuthorizedException("revoked")
        key = request.headers["idempotency-key"]
        # Atrium's own claim: its parameters, and the kept answer replayed.
        claim = _Claim(
            user_id,
            key,
            fingerprint("POST", request.url.path, [_as_value(await request.body())]),
            _lock_id(schema, user_id, key),
        )
        now = datetime.datetime.now(datetime.UTC)
        item = {
            "id": uuid.uuid4(),
            "name": str(data["name"]),
            "owner_id": user_id,
            "created_at": now,
            "updated_at": now,
        }
        async with pool.connection() as conn:
            async with conn.pipeline():
                await conn.execute("BEGIN")
                await conn.execute(BIND_SQL, {"path": quote_ident(schema), "timeout": timeout})
                claimed = await conn.execute(_CLAIM, claim.params, prepare=False)
                await conn.execute(_GUARD, claim.params)
            row = await claimed.fetchone()
            assert row is not None
            if (replay := claim.answer(row)) is not None:
                return replay
            content = msgspec.json.encode(item)
            headers = {"Location": f"/user-groups/{item['id']}", "ETag": entity_tag(item["id"], now)}
            async with conn.pipeline():
                await conn.execute(INSERT_GROUP_STAMPED, {**item, "now": now})
                await conn.execute(
                    INSERT_KEY,
                    {
                        "user_id": user_id,
                        "key": key,
                        "fingerprint": claim.fingerprint,
                        "status": 201,
                        "body": content,
                        "headers": json.dumps(headers),
                    },
                )
                await conn.execute("COMMIT")
        return Response(content, status_code=201, headers=headers, media_type="application/json")

    @get("/users")
    async def list_users(request: Request[Any, Any, Any]) -> dict[str, Any]:
        schema = schema_of(request)
        emails = [e.lower() for e in request.query_params.getall("email", [])]
        values = {"f_email": emails, "limit": 50, "offset": 0}
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(BIND_SQL, {"path": quote_ident(schema), "timeout": timeout})
            rows = await (await conn.execute(LIST_USERS_BY_EMAIL, values)).fetchall()
        items = [dict(zip(USERS_LISTING.fields, row, strict=False)) for row in rows]
        return {"items": items, "total": rows[0][-1] if rows else 0, "limit": 50, "offset": 0}

    @get("/help-desk")
    async def list_tickets(request: Request[Any, Any, Any]) -> dict[str, Any]:
        schema = schema_of(request)
        query = request.query_params
        values = {
            "f_assignee_id": [uuid.UUID(v) for v in query.getall("assignee_id", [])],
            "f_status": query.getall("status", []),
            "limit": 50,
            "offset": 0,
        }
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(BIND_SQL, {"path": quote_ident(schema), "timeout": timeout})
            rows = await (await conn.execute(LIST_TICKETS, values)).fetchall()
        items = [dict(zip(TICKETS_LISTING.fields, row, strict=False)) for row in rows]
        return {"items": items, "total": rows[0][-1] if rows else 0, "limit": 50, "offset": 0}

    return Litestar(
        route_handlers=[
            health,
            get_user,
            get_user_alone,
            create_group,
            create_group_by_contract,
            create_response,
            list_users,
            list_tickets,
        ],
        on_startup=[startup],
        on_shutdown=[shutdown],
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="the raw-psycopg floor for GET /users/{id}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same server options as atrium.scripts.serving.run_server.
    uvicorn.run(
        "baseline_app:create_app",
        app_dir=os.path.dirname(os.path.abspath(__file__)),
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=16 * 1024,
        log_level="info",
    )


if __name__ == "__main__":
    main()
