"""Idempotency-Key on every POST (API.md §5, "Retries"): one answer per tenant, user and key
for 24 hours, across app processes and through a Redis outage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.util import greenlet_spawn

from atrium.platform.db.binding import qualified_table
from atrium.platform.settings import Settings
from atrium.platform.web.idempotency import HEADER, REPLAYED_HEADER, _lock_id
from tests import servers
from tests.api import (
    FORM_ANSWERS,
    Api,
    Headers,
    add_user,
    assert_problem,
    create,
    error_fields,
    serve_api,
    unserved_app,
)
from tests.conftest import MadeTenant, driver_statements, login_owner, serve, server_prepared

pytest_plugins = ["tests.api"]

REPLAYED = REPLAYED_HEADER.lower()


def keyed(headers: Headers, key: str) -> Headers:
    return {**headers, HEADER: key}


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def count(engine: Engine, made: MadeTenant, table: str, where: str = "TRUE", **params: Any) -> int:
    with engine.connect() as conn:
        sql = f"SELECT count(*) FROM {qualified_table(made.tenant.schema, table)} WHERE {where}"
        return conn.exec_driver_sql(sql, params).scalar_one()


def groups_named(engine: Engine, made: MadeTenant, name: str) -> int:
    return count(engine, made, "user_groups", "name = %(name)s", name=name)


def assert_first(response: httpx.Response) -> None:
    assert response.status_code == 201, response.text
    assert REPLAYED not in response.headers


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert replay.status_code == first.status_code, replay.text
    assert replay.headers.get(REPLAYED) == "true", replay.headers
    assert replay.content == first.content
    assert replay.headers.get("location") == first.headers.get("location")
    assert replay.headers["content-type"] == first.headers["content-type"]


async def test_a_retry_replays_the_first_answer_and_creates_nothing_more(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    first = await client.post("/user-groups", json={"name": name}, headers=keyed(owner_a, key))
    assert_first(first)
    assert first.headers["location"] == f"/user-groups/{first.json()['id']}"
    for _ in range(3):
        assert_replay_of(await post_group(client, keyed(owner_a, key), name), first)
    assert groups_named(operator_engine, tenant_a, name) == 1
    # Without the header every POST creates.
    for _ in range(2):
        assert_first(await client.post("/user-groups", json={"name": name}, headers=owner_a))
    assert groups_named(operator_engine, tenant_a, name) == 3


async def post_group(client: httpx.AsyncClient, headers: Headers, name: str) -> httpx.Response:
    return await client.post("/user-groups", json={"name": name}, headers=headers)


async def test_a_user_is_replayed_without_a_second_password_hash(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    key = new_key()
    body = {
        "name": "Kim",
        "email": f"kim-{uuid.uuid4().hex[:8]}@example.test",
        "phone": "1",
        "password": "pw-kim-1234",
    }
    first = await client.post("/users", json=body, headers=keyed(owner_a, key))
    assert_first(first)
    assert_replay_of(await client.post("/users", json=body, headers=keyed(owner_a, key)), first)
    assert count(operator_engine, tenant_a, "users", "email = %(email)s", email=body["email"]) == 1


async def test_the_same_key_with_another_body_or_route_is_422(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    assert_first(await post_group(client, keyed(owner_a, key), name))
    other = assert_problem(await post_group(client, keyed(owner_a, key), name + " else"), 422)
    assert error_fields(other) == {HEADER}
    on_roles = await client.post("/user-roles", json={"name": name}, headers=keyed(owner_a, key))
    assert error_fields(assert_problem(on_roles, 422)) == {HEADER}
    assert groups_named(operator_engine, tenant_a, name) == 1
    assert groups_named(operator_engine, tenant_a, name + " else") == 0
    assert count(operator_engine, tenant_a, "user_roles", "name = %(name)s", name=name) == 0


async def test_the_same_json_sent_otherwise_is_the_same_request(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    """Key order and spacing are not the body: a client that rebuilds its body from a map
    on retry gets the first answer, not 422."""
    _, client = api
    key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    first = await client.post(
        "/user-groups", content=f'{{"name": "{name}", "owner_id": null}}', headers=keyed(owner_a, key)
    )
    assert first.status_code == 201, first.text
    again = await client.post(
        "/user-groups", content=f'{{ "owner_id":null,"name":"{name}" }}', headers=keyed(owner_a, key)
    )
    assert again.status_code == 201 and again.headers[REPLAYED_HEADER] == "true"
    assert again.json() == first.json()
    assert groups_named(operator_engine, tenant_a, name) == 1


@pytest.mark.parametrize("value", ["", "k" * 256])
async def test_a_bad_key_is_422_naming_the_header_on_every_post(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine, value: str
) -> None:
    _, client = api
    name = f"Group {uuid.uuid4().hex[:8]}"
    assert error_fields(assert_problem(await post_group(client, keyed(owner_a, value), name), 422)) == {
        HEADER
    }
    assert groups_named(operator_engine, tenant_a, name) == 0
    login = await client.post(
        "/auth/login",
        json={"email": tenant_a.owner_email, "password": tenant_a.owner_password},
        headers={"Host": tenant_a.host, HEADER: value},
    )
    assert error_fields(assert_problem(login, 422)) == {HEADER}
    logout = await client.post("/auth/logout", headers=keyed(owner_a, value))
    assert error_fields(assert_problem(logout, 422)) == {HEADER}
    upload = await client.post(
        "/media", files={"file": ("a.txt", b"a", "text/plain")}, headers=keyed(owner_a, value)
    )
    assert error_fields(assert_problem(upload, 422)) == {HEADER}


async def test_the_longest_key_and_a_key_sent_twice(api: Api, owner_a: Headers) -> None:
    _, client = api
    longest = "k" * 255
    assert_first(await post_group(client, keyed(owner_a, longest), "Long"))
    twice = httpx.Headers([*owner_a.items(), (HEADER, "one"), (HEADER, "two")])
    response = await client.post("/user-groups", json={"name": "Twice"}, headers=twice)
    assert error_fields(assert_problem(response, 422)) == {HEADER}


async def test_login_and_logout_check_the_key_but_remember_nothing(
    api: Api, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    _, client = api
    key = new_key()
    credentials = {"email": tenant_a.owner_email, "password": tenant_a.owner_password}
    answers = [
        await client.post("/auth/login", json=credentials, headers={"Host": tenant_a.host, HEADER: key})
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["access_token"] != answers[1].json()["access_token"]
    assert all(REPLAYED not in a.headers for a in answers)
    token = answers[0].json()["access_token"]
    logout = await client.post(
        "/auth/logout", headers={"Host": tenant_a.host, "Authorization": f"Bearer {token}", HEADER: key}
    )
    assert logout.status_code == 204
    assert count(operator_engine, tenant_a, "idempotency_keys", "key = %(key)s", key=key) == 0


async def test_concurrent_duplicates_create_one_row(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    answers = await asyncio.gather(*(post_group(client, keyed(owner_a, key), name) for _ in range(12)))
    assert_one_created(answers)
    assert groups_named(operator_engine, tenant_a, name) == 1


def assert_one_created(answers: list[httpx.Response]) -> None:
    firsts = [a for a in answers if a.status_code == 201 and REPLAYED not in a.headers]
    assert len(firsts) == 1, [(a.status_code, dict(a.headers)) for a in answers]
    for answer in answers:
        if answer is firsts[0]:
            continue
        if answer.status_code == 409:
            assert answer.json()["type"] == "idempotency-key-in-use"
        else:
            assert_replay_of(answer, firsts[0])


async def test_a_write_that_reads_first_is_replayed_and_a_held_key_stops_it_at_its_first_read(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    """An event's create reads its attendees before it writes: the claim goes with that
    read, so a retry is replayed (its write rolled back) and a key held by a request in
    flight is 409 before the write runs."""
    _, client = api
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    title = f"Standup {uuid.uuid4().hex[:8]}"
    body = {
        "title": title,
        "starts_at": "2026-01-05T08:00:00Z",
        "ends_at": "2026-01-05T09:00:00Z",
        "time_zone": "Europe/Berlin",
        "attendee_ids": [me],
    }
    key = new_key()
    with driver_statements() as sent:
        first = await client.post("/events", json=body, headers=keyed(owner_a, key))
    assert_first(first)
    claim = next(i for i, s in enumerate(sent) if "pg_try_advisory_xact_lock" in s)
    assert "users" in sent[claim + 2], sent[claim:]  # the attendees' read, right after the guard
    for _ in range(2):
        assert_replay_of(await client.post("/events", json=body, headers=keyed(owner_a, key)), first)
    assert count(operator_engine, tenant_a, "events", "title = %(t)s", t=title) == 1
    held = new_key()
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(%(id)s)",
            {"id": _lock_id(tenant_a.tenant.schema, uuid.UUID(me), held)},
        )
        busy = assert_problem(await client.post("/events", json=body, headers=keyed(owner_a, held)), 409)
        assert busy["type"] == "idempotency-key-in-use"
    assert count(operator_engine, tenant_a, "events", "title = %(t)s", t=title) == 1


async def test_a_form_response_takes_its_form_with_the_claim_and_is_answered_once(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    """A response's first statement (the form counted and locked, ``take_response``) is
    sent with the key's claim and guard, after them: a retry is replayed and counts once,
    and a key held by a request in flight is 409 before the form is counted."""
    _, client = api
    form_id = await create(client, owner_a, "forms")  # open, with FORM_FIELDS
    body = {"form_id": form_id, "answers": FORM_ANSWERS}
    key = new_key()
    with driver_statements() as sent:
        first = await client.post("/form-responses", json=body, headers=keyed(owner_a, key))
    assert_first(first)
    claim = next(i for i, s in enumerate(sent) if "pg_try_advisory_xact_lock" in s)
    assert sent[claim + 2].lstrip().startswith("UPDATE forms"), sent[claim:]
    for _ in range(2):
        assert_replay_of(await client.post("/form-responses", json=body, headers=keyed(owner_a, key)), first)

    def counted() -> int:
        return count(operator_engine, tenant_a, "forms", "id = %(id)s AND response_count = 1", id=form_id)

    assert count(operator_engine, tenant_a, "form_responses", "form_id = %(f)s", f=form_id) == 1
    assert counted() == 1
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    held = new_key()
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(%(id)s)",
            {"id": _lock_id(tenant_a.tenant.schema, uuid.UUID(me), held)},
        )
        busy = assert_problem(
            await client.post("/form-responses", json=body, headers=keyed(owner_a, held)), 409
        )
        assert busy["type"] == "idempotency-key-in-use"
    assert counted() == 1
    # Without a key the form is taken by the same first statement.
    assert (await client.post("/form-responses", json=body, headers=owner_a)).status_code == 201


async def test_a_key_held_by_a_request_in_flight_is_409(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    with operator_engine.begin() as conn:
        # What the first request holds while it writes.
        conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(%(id)s)",
            {"id": _lock_id(tenant_a.tenant.schema, uuid.UUID(me), key)},
        )
        busy = assert_problem(await post_group(client, keyed(owner_a, key), name), 409)
        assert busy["type"] == "idempotency-key-in-use"
    assert groups_named(operator_engine, tenant_a, name) == 0
    assert_first(await post_group(client, keyed(owner_a, key), name))


async def test_a_duplicate_that_slips_past_the_lock_rolls_back_whole(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    """The key's primary key is the last line: a row of the same key committed after the
    request's read (here by hand) fails its insert, and its write goes with it."""
    _, client = api
    key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    me = (await client.get("/auth/me", headers=owner_a)).json()["user"]["id"]
    table = qualified_table(tenant_a.tenant.schema, "idempotency_keys")
    with operator_engine.connect() as conn:
        transaction = conn.begin()
        conn.exec_driver_sql(
            f"INSERT INTO {table} (user_id, key, fingerprint, status, body)"
            " VALUES (%(u)s, %(k)s, %(f)s, 201, %(b)s)",
            {"u": me, "k": key, "f": b"\0", "b": b"{}"},
        )
        request = asyncio.create_task(post_group(client, keyed(owner_a, key), name))
        await wait_for_a_lock_wait(operator_engine)
        transaction.commit()
        busy = assert_problem(await request, 409)
    assert busy["type"] == "idempotency-key-in-use"
    assert groups_named(operator_engine, tenant_a, name) == 0


async def wait_for_a_lock_wait(engine: Engine) -> None:
    for _ in range(200):
        with engine.connect() as conn:
            # This database's waits only: the server is shared with other test runs and
            # benchmarks, whose lock waits would end this one too early.
            waiting = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database()"
            )
            if waiting.scalar_one():
                return
        await asyncio.sleep(0.025)
    raise AssertionError("the request never waited on the key's row")


async def test_keys_are_per_user_and_per_tenant(
    api: Api,
    tenant_a: MadeTenant,
    tenant_b: MadeTenant,
    owner_a: Headers,
    owner_b: Headers,
    operator_engine: Engine,
) -> None:
    _, client = api
    key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    admin = await add_user(client, owner_a, role="Admin")
    answers = [
        await post_group(client, keyed(headers, key), name) for headers in (owner_a, admin.headers, owner_b)
    ]
    for answer in answers:
        assert_first(answer)
    assert len({a.json()["id"] for a in answers}) == 3
    assert groups_named(operator_engine, tenant_a, name) == 2
    assert groups_named(operator_engine, tenant_b, name) == 1
    assert count(operator_engine, tenant_a, "idempotency_keys", "key = %(key)s", key=key) == 2


async def test_a_key_is_forgotten_after_24_hours_and_purged(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    old, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
    first = await post_group(client, keyed(owner_a, old), name)
    assert_first(first)
    aged = [new_key() for _ in range(3)]
    for key in aged:
        assert_first(await post_group(client, keyed(owner_a, key), f"{name} aged"))
    table = qualified_table(tenant_a.tenant.schema, "idempotency_keys")
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE {table} SET created_at = now() - interval '24 hours 1 second' WHERE key = ANY(%(keys)s)",
            {"keys": [old, *aged]},
        )
    again = await post_group(client, keyed(owner_a, old), name)
    assert_first(again)
    assert again.json()["id"] != first.json()["id"]
    assert groups_named(operator_engine, tenant_a, name) == 2
    # The new answer replaced the old one; the other expired keys were purged beside it.
    assert_replay_of(await post_group(client, keyed(owner_a, old), name), again)
    assert count(operator_engine, tenant_a, "idempotency_keys", "key = ANY(%(keys)s)", keys=aged) == 0
    assert count(operator_engine, tenant_a, "idempotency_keys", "key = %(key)s", key=old) == 1


async def test_a_failed_write_leaves_no_key(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    key = new_key()
    missing_role = {
        "owner_id": str(tenant_a.tenant.owner_id),
        "user_groups": str(uuid.uuid4()),
        "user_roles": str(uuid.uuid4()),
    }
    assert_problem(await client.post("/user-meta", json=missing_role, headers=keyed(owner_a, key)), 422)
    assert count(operator_engine, tenant_a, "idempotency_keys", "key = %(key)s", key=key) == 0
    # The key is free: the corrected request is answered and remembered.
    assert_first(await post_group(client, keyed(owner_a, key), "After a failure"))
    assert count(operator_engine, tenant_a, "idempotency_keys", "key = %(key)s", key=key) == 1


async def test_media_upload_is_replayed(
    api: Api, tenant_a: MadeTenant, owner_a: Headers, operator_engine: Engine
) -> None:
    _, client = api
    key, name = new_key(), f"note-{uuid.uuid4().hex[:8]}.txt"

    async def upload(content: bytes) -> httpx.Response:
        # httpx draws a new multipart boundary for every request, as clients do on a retry.
        return await client.post(
            "/media", files={"file": (name, content, "text/plain")}, headers=keyed(owner_a, key)
        )

    first = await upload(b"hello\n")
    assert_first(first)
    assert first.headers["location"] == f"/media/{first.json()['id']}"
    assert_replay_of(await upload(b"hello\n"), first)
    assert error_fields(assert_problem(await upload(b"other\n"), 422)) == {HEADER}
    assert count(operator_engine, tenant_a, "media", "name = %(name)s", name=name) == 1


async def test_without_the_header_no_statement_is_added(api: Api, owner_a: Headers) -> None:
    _, client = api
    with driver_statements() as plain:
        assert_first(await post_group(client, owner_a, "Plain"))
    with driver_statements() as with_key:
        assert_first(await post_group(client, keyed(owner_a, new_key()), "Keyed"))
    assert not any("idempotency" in s for s in plain)
    added = [s for s in with_key if "idempotency_keys" in s or "advisory" in s]
    # The claim, its guard, and the key's answer: sent with the write, no statement between.
    assert len(added) == 3, added
    assert "pg_try_advisory_xact_lock" in added[0] and "idempotency_keys" in added[0]
    assert added[1].strip() == "SELECT 1 / pg_try_advisory_xact_lock(%(lock)s)::int"
    assert added[2].startswith("INSERT INTO idempotency_keys"), added
    # The host cache may look a tenant up beside either request: not the request's own work.
    plain, with_key = ([s for s in run if "platform." not in s] for run in (plain, with_key))
    assert len(with_key) == len(plain) + 3, (plain, with_key)


async def test_the_replay_holds_across_app_processes(
    settings: Settings, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    made = make_tenant()
    async with serve_api(settings) as (_, one), serve_api(settings) as (_, other):
        owner = await login_owner(one, made)
        key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
        first = await post_group(one, keyed(owner, key), name)
        assert_first(first)
        assert_replay_of(await post_group(other, keyed(owner, key), name), first)
        key = new_key()
        answers = await asyncio.gather(
            *(post_group(client, keyed(owner, key), name + " both") for client in (one, other) * 6)
        )
        assert_one_created(list(answers))
    assert groups_named(operator_engine, made, name) == 1
    assert groups_named(operator_engine, made, name + " both") == 1


async def test_no_double_create_while_redis_is_down(
    settings: Settings, make_tenant: Callable[..., MadeTenant], operator_engine: Engine
) -> None:
    made = make_tenant()
    # Nothing listens there: every Redis call of the app fails, as in an outage.
    down = settings.with_overrides(redis_url=f"redis://127.0.0.1:{servers.free_port()}/0")
    async with serve_api(down) as (_, one), serve_api(down) as (_, other):
        owner = await login_owner(one, made)
        key, name = new_key(), f"Group {uuid.uuid4().hex[:8]}"
        answers = await asyncio.gather(
            *(post_group(client, keyed(owner, key), name) for client in (one, other) * 4)
        )
        assert_one_created(list(answers))
        retry = await post_group(other, keyed(owner, key), name)
        assert retry.headers.get(REPLAYED) == "true"
    assert groups_named(operator_engine, made, name) == 1


def test_the_openapi_document_describes_the_header_on_every_post() -> None:
    document = unserved_app().openapi_schema.to_schema()
    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    assert {"/auth/login", "/auth/logout", "/users", "/media"} <= posts.keys()
    for path, operation in posts.items():
        (parameter,) = [p for p in operation.get("parameters", []) if p["name"] == HEADER]
        assert parameter["in"] == "header" and not parameter.get("required"), path
        assert parameter["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}, path
        assert "422" in operation["responses"], path
        if operation["security"] == [] or path == "/auth/logout":
            continue  # anonymous, or a logout: nothing is kept (tests/test_openapi.py)
        answers = [operation["responses"][s] for s in ("200", "201") if s in operation["responses"]]
        assert answers, path
        for answer in answers:  # a create's 201, an action's 200: either may be a replay
            assert answer["headers"][REPLAYED_HEADER]["schema"] == {"type": "string", "enum": ["true"]}, path
        assert "409" in operation["responses"], path


async def test_the_claim_is_planned_at_each_run_never_kept_prepared(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    """A prepared claim kept the plan made while the tenant's keys were few: a sequential
    scan, which every keyed POST then ran over all the keys until something analyzed the
    table (never, with autovacuum off). Other statements are still prepared."""
    made = make_tenant()
    one_connection = settings.with_overrides(db_pool_size=1, db_max_overflow=0)
    async with serve(one_connection, host=made.host) as (app, client):
        headers = await login_owner(client, made)
        for n in range(8):  # past psycopg's prepare threshold (5)
            assert_first(await post_group(client, keyed(headers, new_key()), f"Planned {n}"))
        fairy = await app.state.engine.raw_connection()
        try:
            prepared = await server_prepared(fairy.driver_connection)
        finally:
            await greenlet_spawn(fairy.close)
    assert any("INSERT INTO user_groups" in s for s in prepared), prepared
    assert not any("pg_try_advisory_xact_lock" in s and "purged" in s for s in prepared), prepared
