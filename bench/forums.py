"""The forum figures (issue 19), each beside a raw-SQL floor measured in the same run.

- ``forum_topics``: ``GET /forum-discussions?forum_id=…&parent_id=null`` (the first page
  of a forum's topics, pinned first, then by latest activity) over a forum holding
  ``--forum-posts`` posts (50,000; quick: 2,000): a tenth of them topics, a few pinned,
  the rest replies. Requests one after another on a kept-alive connection; the floor is
  the same page and total selected by raw psycopg (binding and select in one
  transaction, as the app's read path), one after another.
- ``forum_replies``: 50 replies to one topic posted at once (``POST /forum-discussions``
  with ``parent_id``), each request's latency and the burst's wall time; afterwards the
  topic's ``reply_count`` must be exactly 50 and 50 reply rows must exist, else the bench
  fails. The floor: 50 raw psycopg connections at once, each inserting a reply and
  counting it on its topic in one transaction, checked the same way.

The rows are seeded untimed by ``INSERT … SELECT generate_series`` in the third tenant's
schema (the first two hold the other figures' rows), then analysed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import psycopg
from common import (
    Bench,
    BenchError,
    BenchTenant,
    Goal,
    Row,
    Step,
    Target,
    bind,
    latency_summary,
    ms,
    step,
    target_headers,
)

from atrium.platform.tenancy.naming import quote_ident

REPLIES = 50
PINNED = 3
# The first page as a client asks for it (the default limit).
PAGE = 50

# The app's list statement for this request, written out: the page, in the list's order,
# with the total of the forum's topics beside each row.
FLOOR_PAGE = """
SELECT id, forum_id, title, body, parent_id, pinned, locked, reply_count, last_reply_at,
       owner_id, created_at, updated_at, count(*) OVER ()
FROM forum_discussions
WHERE forum_id = ANY(%(forum)s) AND parent_id IS NULL
ORDER BY pinned DESC, coalesce(last_reply_at, created_at) DESC, id DESC
LIMIT %(limit)s OFFSET 0
"""
FLOOR_REPLY = """
WITH counted AS (
    UPDATE forum_discussions
    SET reply_count = reply_count + 1, last_reply_at = greatest(coalesce(last_reply_at, now()), now()),
        updated_at = clock_timestamp()
    WHERE id = %(topic)s AND parent_id IS NULL AND NOT locked
    RETURNING forum_id
)
INSERT INTO forum_discussions (forum_id, parent_id, body, owner_id)
SELECT forum_id, %(topic)s, 'floor reply', %(owner)s FROM counted
"""


def seed_forum(bench: Bench, tenant: BenchTenant, posts: int) -> tuple[uuid.UUID, float]:
    """A forum of ``posts`` posts in ``tenant``; its id and the seconds it took."""
    topics = max(posts // 10, PINNED + 1)
    forum = uuid.uuid4()
    started = time.perf_counter()
    with psycopg.connect(bench.url) as conn:
        with conn.transaction():
            bind(conn, tenant.schema)
            conn.execute(
                "INSERT INTO forums (id, name, owner_id) VALUES (%s, 'Bench forum', %s)",
                [forum, tenant.owner_id],
            )
            # Topics a minute apart; each with the same number of replies, written at
            # random times after it, so that the latest activity orders them anew.
            conn.execute(
                "INSERT INTO forum_discussions (forum_id, title, body, pinned, owner_id, created_at)"
                " SELECT %s, 'Topic ' || g, 'The body of topic ' || g, g <= %s, %s,"
                "        now() - (g || ' minutes')::interval"
                " FROM generate_series(1, %s) AS g",
                [forum, PINNED, tenant.owner_id, topics],
            )
            conn.execute(
                "INSERT INTO forum_discussions (forum_id, parent_id, body, owner_id, created_at)"
                " SELECT t.forum_id, t.id, 'A reply', t.owner_id,"
                "        t.created_at + random() * (now() - t.created_at)"
                " FROM (SELECT * FROM forum_discussions WHERE forum_id = %s AND parent_id IS NULL) AS t,"
                "      generate_series(1, %s)",
                [forum, max((posts - topics) // topics, 1)],
            )
            conn.execute(
                "UPDATE forum_discussions AS t SET reply_count = r.n, last_reply_at = r.latest"
                " FROM (SELECT parent_id, count(*) AS n, max(created_at) AS latest FROM forum_discussions"
                "       WHERE forum_id = %s AND parent_id IS NOT NULL GROUP BY parent_id) AS r"
                " WHERE t.id = r.parent_id",
                [forum],
            )
        conn.execute(f"ANALYZE {quote_ident(tenant.schema)}.forum_discussions")
        total = conn.execute(
            f"SELECT count(*) FROM {quote_ident(tenant.schema)}.forum_discussions WHERE forum_id = %s",
            [forum],
        ).fetchone()
    step(f"  {total[0] if total else 0} posts ({topics} topics) seeded")
    return forum, time.perf_counter() - started


def topics_page(
    bench: Bench, target: Target, tenant: BenchTenant, forum: uuid.UUID, count: int
) -> dict[str, Any]:
    served = bench.served
    assert served is not None
    url = f"http://127.0.0.1:{served.port}/forum-discussions"
    params = {"forum_id": str(forum), "parent_id": "null", "limit": PAGE}
    app: list[float] = []
    with httpx.Client(headers=target_headers(target), timeout=30) as client:
        first = client.get(url, params=params)
        if first.status_code != 200:
            raise BenchError(f"GET {url} answered {first.status_code}: {first.text[:300]}")
        page = first.json()
        if not all(row["pinned"] for row in page["items"][:PINNED]):
            raise BenchError("the forum's first page does not start with its pinned topics")
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(url, params=params)
            app.append(time.perf_counter() - started)
            response.raise_for_status()
    floor: list[float] = []
    with psycopg.connect(bench.url) as conn:
        for _ in range(count + 1):
            started = time.perf_counter()
            with conn.transaction():
                bind(conn, tenant.schema)
                rows = conn.execute(FLOOR_PAGE, {"forum": [forum], "limit": PAGE}).fetchall()
            floor.append(time.perf_counter() - started)
        floor = floor[1:]
    if [str(r[0]) for r in rows] != [row["id"] for row in page["items"]]:
        raise BenchError("the floor's page differs from the app's")
    return {"topics": page["total"], "app": latency_summary(app), "floor": latency_summary(floor)}


async def _app_replies(bench: Bench, target: Target, forum: uuid.UUID) -> tuple[str, list[float], float]:
    served = bench.served
    assert served is not None
    base = f"http://127.0.0.1:{served.port}"
    limits = httpx.Limits(max_connections=REPLIES)
    async with httpx.AsyncClient(
        base_url=base, headers=target_headers(target), timeout=60, limits=limits
    ) as client:
        made = await client.post(
            "/forum-discussions", json={"forum_id": str(forum), "title": "Busy", "body": "b"}
        )
        if made.status_code != 201:
            raise BenchError(f"creating a topic answered {made.status_code}: {made.text[:300]}")
        topic = made.json()["id"]
        body = {"forum_id": str(forum), "parent_id": topic, "body": "me too"}

        async def reply() -> float:
            started = time.perf_counter()
            response = await client.post("/forum-discussions", json=body)
            if response.status_code != 201:
                raise BenchError(f"a reply answered {response.status_code}: {response.text[:300]}")
            return time.perf_counter() - started

        started = time.perf_counter()
        latencies = await asyncio.gather(*(reply() for _ in range(REPLIES)))
        wall = time.perf_counter() - started
        counted = (await client.get(f"/forum-discussions/{topic}")).json()["reply_count"]
    if counted != REPLIES:
        raise BenchError(f"after {REPLIES} concurrent replies the topic's reply_count is {counted}")
    return topic, list(latencies), wall


async def _floor_replies(
    bench: Bench, tenant: BenchTenant, forum: uuid.UUID
) -> tuple[uuid.UUID, list[float], float]:
    topic = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(bench.url) as conn, conn.transaction():
        await bind(conn, tenant.schema)
        await conn.execute(
            "INSERT INTO forum_discussions (id, forum_id, title, body, owner_id)"
            " VALUES (%s, %s, 'Floor', 'b', %s)",
            [topic, forum, tenant.owner_id],
        )
    # Connections are opened before the clock starts, as the app's pool holds its own.
    connections = [await psycopg.AsyncConnection.connect(bench.url) for _ in range(REPLIES)]
    try:

        async def reply(conn: psycopg.AsyncConnection[Any]) -> float:
            started = time.perf_counter()
            async with conn.transaction():
                await bind(conn, tenant.schema)
                await conn.execute(FLOOR_REPLY, {"topic": topic, "owner": tenant.owner_id})
            return time.perf_counter() - started

        started = time.perf_counter()
        latencies = await asyncio.gather(*(reply(c) for c in connections))
        wall = time.perf_counter() - started
    finally:
        for conn in connections:
            await conn.close()
    return topic, list(latencies), wall


def _check_counted(bench: Bench, tenant: BenchTenant, topic: Any) -> None:
    with psycopg.connect(bench.url) as conn, conn.transaction():
        bind(conn, tenant.schema)
        row = conn.execute(
            "SELECT t.reply_count, (SELECT count(*) FROM forum_discussions WHERE parent_id = t.id)"
            " FROM forum_discussions AS t WHERE t.id = %s",
            [topic],
        ).fetchone()
    if row is None or row[0] != REPLIES or row[1] != REPLIES:
        raise BenchError(f"topic {topic}: reply_count and replies are {row}, not {REPLIES}")


def forum_figures(bench: Bench) -> None:
    args = bench.args
    tenant = bench.tenants[2]
    posts = args.forum_posts
    step(f"forum_topics: seeding a forum of {posts} posts in {tenant.schema}")
    forum, seconds = seed_forum(bench, tenant, posts)
    target = bench.targets([tenant], lambda _t: "/forum-discussions")[0]
    count = 50 if args.quick else 500
    step(f"forum_topics: first page of topics, {count} requests one after another, then the floor's")
    bench.results["forum_topics"] = {
        "route": "GET /forum-discussions?forum_id=&parent_id=null",
        "posts": posts,
        "seed_seconds": round(seconds, 1),
        **topics_page(bench, target, tenant, forum, count),
    }
    step(f"forum_replies: {REPLIES} concurrent replies to one topic, then the floor's")
    topic, app, app_wall = asyncio.run(_app_replies(bench, target, forum))
    _check_counted(bench, tenant, uuid.UUID(topic))
    floor_topic, floor, floor_wall = asyncio.run(_floor_replies(bench, tenant, forum))
    _check_counted(bench, tenant, floor_topic)
    bench.results["forum_replies"] = {
        "route": "POST /forum-discussions (a reply)",
        "replies": REPLIES,
        "reply_count": REPLIES,  # checked exactly above, else the bench fails
        "app": {**latency_summary(app), "wall_ms": round(ms(app_wall), 1)},
        "floor": {**latency_summary(floor), "wall_ms": round(ms(floor_wall), 1)},
    }


def _ratio(figure: dict[str, Any]) -> float:
    return figure["app"]["p99_ms"] / max(figure["floor"]["p99_ms"], 1e-6)


def rows(results: dict[str, Any]) -> list[Row]:
    topics, replies = results["forum_topics"], results["forum_replies"]
    return [
        (
            f"forum_topics (first page, {topics['posts']:,} posts, {topics['topics']:,} topics)",
            f"p50 {topics['app']['p50_ms']:.1f} ms, p99 {topics['app']['p99_ms']:.1f} ms",
            f"floor p50 {topics['floor']['p50_ms']:.1f} ms, p99 {topics['floor']['p99_ms']:.1f} ms; "
            f"p99 ratio {_ratio(topics):.1f}x",
        ),
        (
            f"forum_replies ({replies['replies']} at once, reply_count exact)",
            f"wall {replies['app']['wall_ms']:.0f} ms, p50 {replies['app']['p50_ms']:.1f} ms, "
            f"p99 {replies['app']['p99_ms']:.1f} ms",
            f"floor wall {replies['floor']['wall_ms']:.0f} ms, p99 {replies['floor']['p99_ms']:.1f} ms; "
            f"p99 ratio {_ratio(replies):.1f}x",
        ),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    topics, replies = results["forum_topics"], results["forum_replies"]
    return [
        ("forum_topics p99 / floor p99", f"{_ratio(topics):.1f}x", "≤ 3x", _ratio(topics) <= 3),
        ("forum_replies p99 / floor p99", f"{_ratio(replies):.1f}x", "≤ 3x", _ratio(replies) <= 3),
    ]


STEP = Step("forum_topics", forum_figures, rows, goals, serves=True)
