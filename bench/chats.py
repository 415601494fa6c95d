"""The chat figures (issue 20), each beside a floor measured in the same run.

Two app processes (two ``atrium serve`` instances, one worker each) share Redis when
``--redis-url`` is given (without it, one instance serves every socket in-process, and
the figure says so). ``--chat-sockets`` sockets (full: 200, quick: 40) are spread over
``--chat-rooms`` rooms (full: 20, quick: 4), one user per socket, half the sockets on each
instance. Messages are then posted over HTTP at ``--chat-rate`` per second (full: 100,
quick: 20) for ``--duration`` seconds, alternately through each instance, round-robin
over the rooms, by the tenant's owner (a member of every room, without a socket).

- ``chat.delivery``: for every message and every member socket, the time from the
  ``201`` to the frame's arrival (p50, p99; a frame that arrives before its ``201``,
  since events are published after the commit but before the answer, counts as 0), and
  ``chat.post_to_frame``, from sending the ``POST`` to the frame (the whole path, the
  HTTP request included); beside them the floor: a raw Redis ``PUBLISH`` to one
  subscriber per socket, at the same rate (without Redis: none).
- ``chat.sustained``: messages per second posted and delivered to every member (all
  frames in; a frame that never comes makes it wait 30 s more), and both app processes'
  CPU per message over that time (the post and its fan-out); beside it the floor: the
  same posts as raw SQL (counter ``UPDATE`` and ``INSERT`` in one transaction) one after
  another.
- ``chat.memory``: the app's resident memory per idle socket (both instances' RSS after
  the sockets connected, less before, divided by the sockets); goal ≤ 50 KB.

The clients run in this process: on this 2-CPU machine they compete with the servers,
so the delivery figures include the clients' own scheduling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import httpx
import psycopg
import redis.asyncio as aioredis
from common import (
    Bench,
    BenchTenant,
    Goal,
    Row,
    Step,
    atrium_command,
    bind,
    free_port,
    ms,
    percentile,
    step,
    tree_cpu_seconds,
)
from serving import Server
from websockets.asyncio.client import ClientConnection, connect

from atrium.platform.security.tokens import TokenAuth

FLOOR_POST = """
WITH counted AS (
    UPDATE chats SET last_seq = last_seq + 1, last_message_at = now() WHERE id = %(chat)s
    RETURNING last_seq
)
INSERT INTO chat_messages (chat_id, seq, body, owner_id)
SELECT %(chat)s, last_seq, 'floor message', %(owner)s FROM counted
"""


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(ms(percentile(values, 50)), 2) if values else 0.0,
        "p99_ms": round(ms(percentile(values, 99)), 2) if values else 0.0,
    }


def _seed(
    bench: Bench, tenant: BenchTenant, sockets: int, rooms: int
) -> tuple[list[uuid.UUID], list[list[uuid.UUID]]]:
    """``sockets`` users, and ``rooms`` rooms sharing them out, the owner in every room."""
    bench.seed_users(tenant, sockets)
    with psycopg.connect(bench.url) as conn, conn.transaction():
        bind(conn, tenant.schema)
        users = [
            r[0]
            for r in conn.execute("SELECT id FROM users WHERE id <> %s ORDER BY email", [tenant.owner_id])
        ]
        users = users[:sockets]
        # Members, as the built-in role makes them: allowed to read and write chats.
        conn.execute(
            "INSERT INTO user_meta (owner_id, user_groups, user_roles)"
            " SELECT u, (SELECT id FROM user_groups WHERE name = 'Everyone'),"
            " (SELECT id FROM user_roles WHERE name = 'Member')"
            " FROM unnest(%s::uuid[]) AS u",
            [users],
        )
        members = [users[i::rooms] for i in range(rooms)]
        ids = []
        for i, group in enumerate(members):
            row = conn.execute(
                "INSERT INTO chats (name, kind, member_ids, owner_id)"
                " VALUES (%s, 'group', %s, %s) RETURNING id",
                [f"bench room {i}", [tenant.owner_id, *group], tenant.owner_id],
            ).fetchone()
            assert row is not None
            ids.append(row[0])
    return ids, members


async def _open(port: int, host: str, token: str) -> ClientConnection:
    ws = await connect(
        f"ws://{host}/chats/ws",
        host="127.0.0.1",
        port=port,
        subprotocols=["bearer", token],
        open_timeout=30,  # type: ignore[list-item]
    )
    ready = json.loads(await ws.recv())
    assert ready == {"type": "ready"}, ready
    return ws


async def _app_run(
    bench: Bench,
    tenant: BenchTenant,
    servers: list[Server],
    rooms: list[uuid.UUID],
    members: list[list[uuid.UUID]],
) -> dict[str, Any]:
    args = bench.args
    auth = TokenAuth(bench.secret, 6 * 3600, None, 0)  # type: ignore[arg-type]  # issues tokens only
    host = tenant.host
    rss_before = sum(s.rss_mb()[0] for s in servers)
    sockets: list[tuple[ClientConnection, uuid.UUID]] = []
    users = [(u, room) for room, group in zip(rooms, members, strict=True) for u in group]
    for index, (user, room) in enumerate(users):
        port = servers[index % len(servers)].port
        sockets.append((await _open(port, host, auth.issue(user, tenant.id)), room))
    await asyncio.sleep(1.0)
    rss_after = sum(s.rss_mb()[0] for s in servers)
    memory_kb = max(rss_after - rss_before, 0.0) * 1024 / max(len(sockets), 1)

    # message id → when its POST was sent, and when its 201 came; arrivals: (id, time).
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    arrivals: list[tuple[str, float]] = []
    expected = {room: len(group) for room, group in zip(rooms, members, strict=True)}
    total_messages = max(int(args.chat_rate * args.duration), 1)
    wanted = sum(expected[rooms[i % len(rooms)]] for i in range(total_messages))
    done = asyncio.Event()

    async def receive(ws: ClientConnection) -> None:
        async for raw in ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame.get("type") == "message.created":
                arrivals.append((frame["data"]["id"], now))
                if len(arrivals) >= wanted:
                    done.set()

    readers = [asyncio.create_task(receive(ws)) for ws, _ in sockets]
    token = auth.issue(tenant.owner_id, tenant.id)
    headers = {"Host": host, "Authorization": f"Bearer {token}"}
    # Every connection kept alive: httpx's default keeps 20 and opens (and closes) one per
    # request beyond them, which made this client part of what was measured.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    clients = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.port}", timeout=30, limits=limits) for s in servers
    ]
    posting: list[asyncio.Task[None]] = []

    async def post(i: int) -> None:
        room = rooms[i % len(rooms)]
        began = time.perf_counter()
        response = await clients[i % len(clients)].post(
            f"/chats/{room}/messages", json={"body": f"bench {i}"}, headers=headers
        )
        message = response.json()["id"]
        sent[message], answered[message] = began, time.perf_counter()

    cpu_before = sum(tree_cpu_seconds(s.proc.pid) for s in servers if s.proc)
    started = time.perf_counter()
    for i in range(total_messages):
        # A steady rate: each post starts on its own tick, whatever the earlier ones do.
        delay = started + i / args.chat_rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        posting.append(asyncio.create_task(post(i)))
    await asyncio.gather(*posting)
    # Frames lost (never expected) show as fewer frames than expected in the figure.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=30)
    wall = time.perf_counter() - started
    cpu = sum(tree_cpu_seconds(s.proc.pid) for s in servers if s.proc) - cpu_before
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for ws, _ in sockets:
        await ws.close()
    for client in clients:
        await client.aclose()
    after_201 = [max(at - answered[mid], 0.0) for mid, at in arrivals if mid in answered]
    from_post = [at - sent[mid] for mid, at in arrivals if mid in sent]
    return {
        "sockets": len(sockets),
        "rooms": len(rooms),
        "messages": total_messages,
        "frames": len(arrivals),
        "frames_expected": wanted,
        "rate": args.chat_rate,
        "delivery": _summary(after_201),
        "post_to_frame": _summary(from_post),
        "sustained_per_s": round(total_messages / wall, 1),
        "memory_kb_per_socket": round(memory_kb, 1),
        "cpu_ms_per_message": round(cpu * 1000 / total_messages, 2),
    }


async def _redis_floor(redis_url: str, subscribers: int, messages: int, rate: float) -> dict[str, float]:
    """PUBLISH → arrival at ``subscribers`` raw redis-py subscribers, at ``rate``."""
    channel = f"atrium-bench-{uuid.uuid4().hex}"
    publisher = aioredis.Redis.from_url(redis_url)
    subs = [aioredis.Redis.from_url(redis_url).pubsub() for _ in range(subscribers)]
    for sub in subs:
        await sub.subscribe(channel)
        await sub.get_message(timeout=1.0)  # the subscribe confirmation
    sent: dict[int, float] = {}
    delays: list[float] = []
    all_in = asyncio.Event()

    async def listen(sub: Any) -> None:
        while True:
            message = await sub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                delays.append(time.perf_counter() - sent[int(message["data"])])
                if len(delays) >= messages * subscribers:
                    all_in.set()

    listeners = [asyncio.create_task(listen(sub)) for sub in subs]
    started = time.perf_counter()
    for i in range(messages):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[i] = time.perf_counter()
        await publisher.publish(channel, str(i))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), timeout=10)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    for sub in subs:
        await sub.aclose()
    await publisher.aclose()
    return _summary(delays)


def _sql_floor(bench: Bench, tenant: BenchTenant, rooms: list[uuid.UUID], messages: int) -> float:
    """Posts per second as raw SQL, one transaction each, one after another."""
    with psycopg.connect(bench.url) as conn:
        started = time.perf_counter()
        for i in range(messages):
            with conn.transaction():
                bind(conn, tenant.schema)
                conn.execute(FLOOR_POST, {"chat": rooms[i % len(rooms)], "owner": tenant.owner_id})
        return messages / (time.perf_counter() - started)


def chat_figures(bench: Bench) -> None:
    args = bench.args
    tenant = bench.tenants[min(5, len(bench.tenants) - 1)]
    step(f"chat: seeding {args.chat_sockets} users in {args.chat_rooms} rooms in {tenant.schema}")
    rooms, members = _seed(bench, tenant, args.chat_sockets, args.chat_rooms)
    instances = 2 if args.redis_url else 1
    servers = []
    for n in range(instances):
        port = free_port()
        servers.append(
            Server(
                f"atrium serve (chat {n})",
                [*atrium_command(), "serve", "--port", str(port), "--workers", "1"],
                bench.server_env(),
                port,
                bench.workdir / f"atrium-chat-{n}.log",
            )
        )
    try:
        for server in servers:
            server.start(1)
        step(
            f"chat: {args.chat_sockets} sockets on {instances} app process(es), "
            f"{args.chat_rate:g} messages/s for {args.duration:g} s"
        )
        app = asyncio.run(_app_run(bench, tenant, servers, rooms, members))
    finally:
        for server in servers:
            server.stop()
    messages = app["messages"]
    floor: dict[str, Any] = {"sql_posts_per_s": round(_sql_floor(bench, tenant, rooms, messages), 1)}
    if args.redis_url:
        floor["delivery"] = asyncio.run(
            _redis_floor(args.redis_url, args.chat_sockets, messages, args.chat_rate)
        )
    bench.results["chat"] = {**app, "redis": bool(args.redis_url), "floor": floor}


def rows(results: dict[str, Any]) -> list[Row]:
    chat = results["chat"]
    floor = chat["floor"]
    delivery_floor = (
        f"floor (raw Redis PUBLISH to {chat['sockets']} subscribers) "
        f"p50 {floor['delivery']['p50_ms']:.1f} ms, "
        f"p99 {floor['delivery']['p99_ms']:.1f} ms"
        if "delivery" in floor
        else "no Redis: one app process, no floor"
    )
    return [
        (
            f"chat delivery (201 → frame, {chat['sockets']} sockets, {chat['rooms']} rooms, "
            f"{chat['rate']:g}/s)",
            f"p50 {chat['delivery']['p50_ms']:.1f} ms, p99 {chat['delivery']['p99_ms']:.1f} ms "
            f"({chat['frames']}/{chat['frames_expected']} frames)",
            delivery_floor,
        ),
        (
            "chat POST sent → frame (the whole path)",
            f"p50 {chat['post_to_frame']['p50_ms']:.1f} ms, p99 {chat['post_to_frame']['p99_ms']:.1f} ms",
            "",
        ),
        (
            "chat messages/s sustained",
            f"{chat['sustained_per_s']:.0f}/s; both apps' CPU per message (post and fan-out) "
            f"{chat.get('cpu_ms_per_message', 0):.1f} ms",
            f"floor (raw SQL posts, one after another) {floor['sql_posts_per_s']:.0f}/s",
        ),
        ("chat memory per idle socket", f"{chat['memory_kb_per_socket']:.0f} KB", "goal ≤ 50 KB"),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    chat = results["chat"]
    p99, kb = chat["delivery"]["p99_ms"], chat["memory_kb_per_socket"]
    whole = chat["post_to_frame"]["p99_ms"]
    return [
        (f"chat delivery (201 → frame) p99 at {chat['rate']:g}/s", f"{p99:.1f} ms", "≤ 50 ms", p99 <= 50),
        (f"chat POST sent → frame p99 at {chat['rate']:g}/s", f"{whole:.1f} ms", "≤ 50 ms", whole <= 50),
        ("chat memory per idle socket", f"{kb:.0f} KB", "≤ 50 KB", kb <= 50),
    ]


STEP = Step("chat", chat_figures, rows, goals)
