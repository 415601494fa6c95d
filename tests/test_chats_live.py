"""Chats' live socket (API.md §9) against real servers: ``atrium serve --workers 2`` and a
second app instance, both on one real Redis, so events cross processes as in production.

Sockets connect to server A; messages are posted through A or B. What a socket must not
receive is checked with a sentinel: an event it must receive, posted after the one it
must not, has to be the next frame it gets.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from atrium.platform.live import tenant_channel
from atrium.platform.settings import Settings
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.web.server import HEADER_TIMEOUT
from atrium.tenants.chats import events
from atrium.tenants.chats.live import CLOSE_TOO_SLOW, OUTBOX
from tests import servers
from tests.api import TenantUser, add_user, new_tenant
from tests.conftest import MadeTenant, login

TIMEOUT = 10.0


def _start(settings: Settings, redis_url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url,
        "ATRIUM_SECRET_KEY": settings.secret_key,
        "ATRIUM_BCRYPT_ROUNDS": "4",
    }
    command = [
        sys.executable,
        "-m",
        "atrium.scripts",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log = open(os.path.join(tempfile.gettempdir(), f"atrium-live-{port}.log"), "wb")  # noqa: SIM115
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)


@pytest.fixture(scope="module")
def ports(settings: Settings, redis_url: str | None, operator_engine: Engine) -> Iterator[tuple[int, int]]:
    servers.require(redis_url is not None, "a Redis server (ATRIUM_TEST_REDIS_URL or redis-server on PATH)")
    assert redis_url is not None
    a, b = servers.free_port(), servers.free_port()
    procs = [_start(settings, redis_url, a, 2), _start(settings, redis_url, b, 1)]
    try:
        for port, proc in zip((a, b), procs, strict=True):
            servers.wait_for_port(port, timeout=60, proc=proc)  # type: ignore[arg-type]
        yield a, b
    finally:
        for proc in procs:
            servers.stop_server(proc)


@pytest.fixture(scope="module")
def tenants(operator_engine: Engine) -> tuple[MadeTenant, MadeTenant]:
    return new_tenant(operator_engine, "live"), new_tenant(operator_engine, "other")


class Peer:
    """A tenant user with a client on each server."""

    def __init__(self, user: TenantUser, a: httpx.AsyncClient, b: httpx.AsyncClient, port: int) -> None:
        self.user, self.a, self.b, self.port = user, a, b, port

    @property
    def token(self) -> str:
        return self.user.headers["Authorization"].removeprefix("Bearer ")

    @property
    def host(self) -> str:
        return self.user.headers["Host"]

    @asynccontextmanager
    async def socket(
        self, token: str | None = None, host: str | None = None
    ) -> AsyncIterator[ClientConnection]:
        async with connect(
            f"ws://{host or self.host}/chats/ws",
            host="127.0.0.1",
            port=self.port,
            subprotocols=["bearer", token or self.token],  # type: ignore[list-item]
            open_timeout=TIMEOUT,
        ) as ws:
            assert await frame(ws) == {"type": "ready"}
            yield ws

    async def post(self, chat: str, body: str, via: str = "b") -> dict[str, Any]:
        client = self.b if via == "b" else self.a
        response = await client.post(
            f"/chats/{chat}/messages", json={"body": body}, headers=self.user.headers
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def room(self, members: list[Peer], **extra: Any) -> dict[str, Any]:
        body = {"name": f"Room {uuid.uuid4().hex[:6]}", "member_ids": [m.user.id for m in members], **extra}
        response = await self.a.post("/chats", json=body, headers=self.user.headers)
        assert response.status_code == 201, response.text
        return response.json()


async def frame(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(TIMEOUT):
        return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    """The next ``message.*`` frame (membership and read events of room creation skipped)."""
    while True:
        got = await frame(ws)
        if got["type"].startswith("message."):
            return got


async def _drain(ws: ClientConnection) -> None:
    async with asyncio.timeout(TIMEOUT):
        while True:
            await ws.recv()


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        await _drain(ws)
    return ws.close_code


@pytest.fixture(scope="module")
async def peers(
    ports: tuple[int, int], tenants: tuple[MadeTenant, MadeTenant]
) -> AsyncIterator[dict[str, Peer]]:
    a_port, b_port = ports
    made, other = tenants
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{a_port}", timeout=30) as a,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{b_port}", timeout=30) as b,
    ):
        owner = await login(a, made.host, made.owner_email, made.owner_password)
        outsider = await login(a, other.host, other.owner_email, other.owner_password)
        found = {"owner": Peer(TenantUser("", made.owner_email, made.owner_password, owner), a, b, a_port)}
        me = (await a.get("/auth/me", headers=owner)).json()["user"]["id"]
        found["owner"].user = TenantUser(me, made.owner_email, made.owner_password, owner)
        for name in ("alice", "bob", "carol"):
            found[name] = Peer(await add_user(a, owner, role="Member"), a, b, a_port)
        other_me = (await a.get("/auth/me", headers=outsider)).json()["user"]["id"]
        found["outsider"] = Peer(
            TenantUser(other_me, other.owner_email, other.owner_password, outsider), a, b, a_port
        )
        yield found


async def test_delivery_across_app_processes_in_seq_order(peers: dict[str, Peer]) -> None:
    alice, bob = peers["alice"], peers["bob"]
    room = await alice.room([bob])
    # Several sockets on server A (two workers: most likely both), posts through server B.
    async with bob.socket() as one, bob.socket() as two, alice.socket() as three:
        posted = [await alice.post(room["id"], f"m{i}", via="b" if i % 2 else "a") for i in range(6)]
        for ws in (one, two, three):
            got = [await next_message(ws) for _ in posted]
            assert [g["type"] for g in got] == ["message.created"] * 6
            assert [g["seq"] for g in got] == [p["seq"] for p in posted] == sorted(p["seq"] for p in posted)
            assert got[0]["chat_id"] == room["id"] and got[0]["data"]["body"] == "m0"
        edited = await bob.b.patch(
            f"/chats/{room['id']}/messages/{posted[0]['id']}", json={"body": "M0"}, headers=alice.user.headers
        )
        assert edited.status_code == 200
        got = await next_message(one)
        assert got["type"] == "message.updated" and got["data"]["body"] == "M0"
        deleted = await bob.b.delete(
            f"/chats/{room['id']}/messages/{posted[1]['id']}", headers=alice.user.headers
        )
        assert deleted.status_code == 204
        got = await next_message(one)
        assert (
            got["type"] == "message.deleted" and got["seq"] == posted[1]["seq"] and got["data"]["body"] == ""
        )
        marked = await bob.b.post(f"/chats/{room['id']}/read", json={"seq": 3}, headers=bob.user.headers)
        assert marked.status_code == 200
        got = await frame(one)
        assert got["type"] == "read.updated" and got["data"] == {"user_id": bob.user.id, "seq": 3}


async def test_a_post_that_rolls_back_publishes_nothing(
    peers: dict[str, Peer], tenants: tuple[MadeTenant, MadeTenant], operator_engine: Engine
) -> None:
    """A post whose commit fails (a deferred check refuses it at COMMIT, after the message
    and its marker were written in the transaction) is never announced: the next frame is
    the next post, which takes the seq the failed one had."""
    alice, bob = peers["alice"], peers["bob"]
    schema = quote_ident(tenants[0].tenant.schema)
    refused = f"refused {uuid.uuid4().hex}"
    room = await alice.room([bob])
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE FUNCTION {schema}.refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.body = '{refused}' THEN"
            " RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation'; END IF;"
            " RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            f"CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON {schema}.chat_messages"
            f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_at_commit()"
        )
    try:
        async with bob.socket() as ws:
            failed = await alice.b.post(
                f"/chats/{room['id']}/messages", json={"body": refused}, headers=alice.user.headers
            )
            assert failed.status_code == 422, failed.text
            after = await alice.post(room["id"], "after")
            got = await next_message(ws)
            assert got["data"]["body"] == "after" and got["seq"] == after["seq"] == 1
    finally:
        with operator_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TRIGGER refuse_at_commit ON {schema}.chat_messages")
            conn.exec_driver_sql(f"DROP FUNCTION {schema}.refuse_at_commit()")


async def test_events_published_out_of_order_are_delivered_in_seq_order(
    peers: dict[str, Peer], tenants: tuple[MadeTenant, MadeTenant], redis_url: str | None
) -> None:
    """Published after their commits, two posts to one room may reach the channel in the
    other order (two processes): sockets still get them in seq order. Here the events are
    put on the tenant's channel directly, the later first; then one with a seq missing
    before it, which is let out once the wait for the missing one is over."""
    assert redis_url is not None
    alice, bob = peers["alice"], peers["bob"]
    room = await alice.room([bob])
    members = [uuid.UUID(alice.user.id), uuid.UUID(bob.user.id)]
    channel = tenant_channel(tenants[0].tenant.id, "chats")

    def created(seq: int) -> bytes:
        data = {"id": str(uuid.uuid4()), "body": f"seq {seq}"}
        return events.envelope(members, events.event("message.created", uuid.UUID(room["id"]), seq, data))

    client = aioredis.Redis.from_url(redis_url)
    try:
        async with bob.socket() as ws:
            first = await alice.post(room["id"], "first")  # the seq this process goes on from
            assert (await next_message(ws))["seq"] == first["seq"] == 1
            for seq in (3, 2, 5):
                await client.publish(channel, created(seq))
            got = [await next_message(ws) for _ in range(3)]
            assert [(g["seq"], g["data"]["body"]) for g in got] == [(2, "seq 2"), (3, "seq 3"), (5, "seq 5")]
    finally:
        await client.aclose()


async def test_a_socket_outlives_the_http_header_timeout(peers: dict[str, Peer]) -> None:
    """The HTTP slow-client guard (platform/web/server.py) must let go of a connection once
    it is a websocket: it used to close every socket HEADER_TIMEOUT seconds after it
    opened, as an HTTP connection that sent no next request."""
    alice, bob = peers["alice"], peers["bob"]
    room = await alice.room([bob])
    async with bob.socket() as ws:
        await asyncio.sleep(HEADER_TIMEOUT + 1.5)  # the guard checks every 0.5 s
        posted = await alice.post(room["id"], "still here")
        got = await next_message(ws)
        assert got["seq"] == posted["seq"] and got["data"]["body"] == "still here"


async def test_first_frame_authentication_and_resume_after_a_disconnect(peers: dict[str, Peer]) -> None:
    alice, bob = peers["alice"], peers["bob"]
    room = await alice.room([bob])
    first = await alice.post(room["id"], "before")
    async with connect(f"ws://{bob.host}/chats/ws", host="127.0.0.1", port=bob.port) as ws:
        await ws.send(json.dumps({"type": "auth", "token": bob.token}))
        assert await frame(ws) == {"type": "ready"}
    # Down: three messages are posted.
    missed = [await alice.post(room["id"], f"missed {i}") for i in range(3)]
    async with bob.socket() as ws:
        await ws.send(json.dumps({"type": "resume", "chat_id": room["id"], "after": first["seq"]}))
        got = [await next_message(ws) for _ in missed]
        assert [g["seq"] for g in got] == [m["seq"] for m in missed]
        assert [g["data"]["body"] for g in got] == ["missed 0", "missed 1", "missed 2"]
        # Live again: the next message arrives once, after what was resumed.
        latest = await alice.post(room["id"], "live")
        assert (await next_message(ws))["seq"] == latest["seq"]


async def test_close_codes(peers: dict[str, Peer]) -> None:
    alice, outsider, owner = peers["alice"], peers["outsider"], peers["owner"]
    # A bad token, another tenant's token, a bad first frame: 4401.
    for token in ("not-a-token", outsider.token):
        async with connect(
            f"ws://{alice.host}/chats/ws",
            host="127.0.0.1",
            port=alice.port,
            subprotocols=["bearer", token],  # type: ignore[list-item]
        ) as ws:
            assert await closed_with(ws) == 4401
    async with connect(f"ws://{alice.host}/chats/ws", host="127.0.0.1", port=alice.port) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        assert await closed_with(ws) == 4401
    # No token at all: closed once the 5 s are up.
    async with connect(f"ws://{alice.host}/chats/ws", host="127.0.0.1", port=alice.port) as ws:
        assert await closed_with(ws) == 4401
    # A resume of a room the caller does not see: 4403.
    private = await owner.room([])
    async with alice.socket() as ws:
        await ws.send(json.dumps({"type": "resume", "chat_id": private["id"], "after": 0}))
        assert await closed_with(ws) == 4403
    # A frame over 64 KiB: 1009; more than 20 frames a second: 1008.
    async with alice.socket() as ws:
        await ws.send("x" * (64 * 1024 + 1))
        assert await closed_with(ws) == 1009
    async with alice.socket() as ws:
        for _ in range(25):
            await ws.send(json.dumps({"type": "ping"}))
        assert await closed_with(ws) == 1008


async def test_a_socket_outlives_neither_its_token_nor_its_user(peers: dict[str, Peer]) -> None:
    """A logout, a password change, the user's deletion (4401) or the loss of chats:read
    (4403) closes the sockets already open with that token or user, in every process: the
    sockets are on server A, the changes go through server B."""
    owner = peers["owner"]
    client, host = owner.b, owner.host

    async def user_with_socket(role: str = "Member") -> tuple[TenantUser, Peer]:
        user = await add_user(owner.a, owner.user.headers, role=role)
        return user, Peer(user, owner.a, owner.b, owner.port)

    async def closes_with(peer: Peer, change: Any, code: int) -> None:
        async with peer.socket() as ws:
            await change()
            assert await closed_with(ws) == code

    user, peer = await user_with_socket()
    await closes_with(peer, lambda: client.post("/auth/logout", headers=user.headers), 4401)

    user, peer = await user_with_socket()
    new_password = {"password": "a brand new password 1", "current_password": user.password}
    await closes_with(peer, lambda: client.patch("/auth/me", json=new_password, headers=user.headers), 4401)

    user, peer = await user_with_socket()
    await closes_with(peer, lambda: client.delete(f"/users/{user.id}", headers=owner.user.headers), 4401)

    user, peer = await user_with_socket()

    async def unlinked() -> None:
        links = await client.get("/user-meta", params={"owner_id": user.id}, headers=owner.user.headers)
        for link in links.json()["items"]:
            gone = await client.delete(f"/user-meta/{link['id']}", headers=owner.user.headers)
            assert gone.status_code == 204, gone.text

    await closes_with(peer, unlinked, 4403)
    # Another user's change closes nothing: their socket still hears its rooms.
    alice = peers["alice"]
    room = await alice.room([])
    async with alice.socket() as ws:
        other, _ = await user_with_socket()
        await client.post("/auth/logout", headers=other.headers)
        posted = await alice.post(room["id"], "still here")
        assert (await next_message(ws))["seq"] == posted["seq"]
    assert host == alice.host


async def test_a_removed_member_stops_receiving_at_once(peers: dict[str, Peer]) -> None:
    alice, bob = peers["alice"], peers["bob"]
    room = await alice.room([bob])
    sentinel = await alice.room([bob])
    async with bob.socket() as ws:
        removed = await alice.b.patch(
            f"/chats/{room['id']}", json={"member_ids": [alice.user.id]}, headers=alice.user.headers
        )
        assert removed.status_code == 200
        while (got := await frame(ws))["type"] != "member.removed":
            pass
        assert got["chat_id"] == room["id"] and got["data"] == {"user_id": bob.user.id}
        await alice.post(room["id"], "not for bob")
        mark = await alice.post(sentinel["id"], "for bob")
        got = await next_message(ws)
        assert got["chat_id"] == sentinel["id"] and got["seq"] == mark["seq"]


async def test_a_tenants_events_never_reach_another_tenants_sockets(peers: dict[str, Peer]) -> None:
    alice, outsider = peers["alice"], peers["outsider"]
    room = await alice.room([])
    theirs = await outsider.room([])
    async with outsider.socket() as ws:
        await alice.post(room["id"], "tenant a only")
        mark = await outsider.post(theirs["id"], "tenant b")
        got = await next_message(ws)
        assert got["chat_id"] == theirs["id"] and got["seq"] == mark["seq"]


async def test_a_suspended_tenants_sockets_close(
    peers: dict[str, Peer], operator_engine: Engine, redis_url: str | None
) -> None:
    """Its own tenant, so that the others stay served for the other tests."""
    from atrium.platform.tenancy.admin import set_status
    from atrium.platform.tenancy.registry import TenantStatus
    from atrium.platform.tenancy.resolution import publish_tenant_change

    made = new_tenant(operator_engine, "gone")
    alice = peers["alice"]
    headers = await login(alice.a, made.host, made.owner_email, made.owner_password)
    owner = Peer(TenantUser("", made.owner_email, made.owner_password, headers), alice.a, alice.b, alice.port)
    async with owner.socket() as ws:
        tenant_id = set_status(operator_engine, made.slug, TenantStatus.SUSPENDED)
        publish_tenant_change(redis_url, tenant_id)
        assert await closed_with(ws) == 4410
    # A new handshake is answered as a request is: 403 tenant-suspended.
    assert await refused_handshake(made.host, alice.port, owner.token) == (403, "tenant-suspended")


async def refused_handshake(host: str, port: int, token: str) -> tuple[int, str]:
    """The status and problem type of a handshake the server refuses over HTTP."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://{host}/chats/ws",
            host="127.0.0.1",
            port=port,
            subprotocols=["bearer", token],  # type: ignore[list-item]
            open_timeout=TIMEOUT,
        ):
            pass
    response = refused.value.response
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem["status"] == response.status_code and problem["detail"]
    assert "tenant_" not in response.body.decode()  # never a schema name
    return response.status_code, problem["type"]


async def test_a_handshake_on_a_host_serving_no_tenant_answers_its_problem(peers: dict[str, Peer]) -> None:
    """Not a bare 403 whatever the cause: the same status and problem as a request gets."""
    alice = peers["alice"]
    cases = {
        "ghost.localhost": (404, "tenant-not-found"),
        "bad_host.localhost": (400, "invalid-host"),
        "127.0.0.1": (400, "invalid-host"),
        "localhost": (404, "not-found"),
    }
    for host, expected in cases.items():
        assert await refused_handshake(host, alice.port, alice.token) == expected, host


async def test_a_slow_reader_holds_up_no_other_socket_and_is_closed_when_far_behind(
    peers: dict[str, Peer], tenants: tuple[MadeTenant, MadeTenant], redis_url: str | None
) -> None:
    """A client that stops reading fills its connection's buffers, and a send to it waits.
    That wait used to hold up every other socket of the tenant in its app process (~20 s,
    until the ping timeout). Now each socket's events queue for it alone, and a socket
    ``OUTBOX`` events behind is closed with 1013 (its client resumes). Four fast sockets:
    one shares the slow one's process of two in all but 1 run in 16."""
    assert redis_url is not None
    alice, bob, carol = peers["alice"], peers["bob"], peers["carol"]
    room = await alice.room([bob, carol])
    members = [uuid.UUID(p.user.id) for p in (alice, bob, carol)]
    channel = tenant_channel(tenants[0].tenant.id, "chats")
    body = "x" * 4000
    count = OUTBOX * 3

    def created(seq: int) -> bytes:
        data = {"id": str(uuid.uuid4()), "body": body}
        return events.envelope(members, events.event("message.created", uuid.UUID(room["id"]), seq, data))

    # The slow client: a small receive buffer, and it reads nothing until the end.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", carol.port))
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with (
            connect(
                f"ws://{carol.host}/chats/ws",
                sock=raw,
                subprotocols=["bearer", carol.token],  # type: ignore[list-item]
                open_timeout=TIMEOUT,
                max_queue=1,
            ) as slow,
            AsyncExitStack() as stack,
        ):
            assert await frame(slow) == {"type": "ready"}
            fast = [await stack.enter_async_context(bob.socket()) for _ in range(4)]

            async def seqs(ws: ClientConnection) -> list[int]:
                return [(await next_message(ws))["seq"] for _ in range(count)]

            reading = [asyncio.create_task(seqs(ws)) for ws in fast]
            for seq in range(1, count + 1):
                await client.publish(channel, created(seq))
            for got in await asyncio.gather(*reading):
                assert got == list(range(1, count + 1))
            assert await closed_with(slow) == CLOSE_TOO_SLOW
    finally:
        await client.aclose()
