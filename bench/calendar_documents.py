"""The calendar and documents figures (issue 18), each beside a raw-SQL floor in the same run.

- ``event_occurrences``: ``GET /events/occurrences`` over a one-month window, in a tenant
  of 10,000 events (quick: 1,000), a tenth of them weekly series in Europe/Berlin, the
  rest single events spread over a year. Requests one after another on a kept-alive
  connection; the floor is raw psycopg selecting the same rows (the events whose series
  overlaps the window, bound and selected in one transaction), without expanding them.
- ``document_search``: ``GET /documents?q=`` (two words, ranked, first page) over 10,000
  documents of about 2 KB (quick: 1,000); the floor is the same ranked page and total by
  raw psycopg through the same GIN index.
- ``document_create``: ``POST /documents`` of a 2 KB body, one after another (p50, p99);
  the floor is a raw ``INSERT`` of the document and of its first version, in one
  transaction, as the app writes them.

Rows are seeded untimed in the fourth tenant's schema (the first three hold the other
figures' rows), then analysed. The module is not called ``calendar``: that would shadow
the standard library's module on the bench's path.
"""

from __future__ import annotations

import datetime
import random
import time
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
    posts_one_at_a_time,
    step,
    target_headers,
    tree_cpu_seconds,
)

from atrium.platform.tenancy.naming import quote_ident
from atrium.tenants.calendar.recurrence import Series

WINDOW_FROM = datetime.datetime(2027, 3, 1, tzinfo=datetime.UTC)
WINDOW_TO = datetime.datetime(2027, 4, 1, tzinfo=datetime.UTC)
WORDS = (
    "budget roadmap release customer invoice meeting design review planning launch hiring onboarding "
    "security incident report quarterly marketing campaign research prototype feedback support "
    "migration database backup network server deploy testing quality metrics growth revenue"
).split()
# Each document also holds three of these rarer words, so that a search finds about one
# document in a hundred, as a real one does, not nearly all of them.
TOPICS = [f"topic{n}" for n in range(300)]
QUERY = "quarterly topic17"
PAGE = 50
FLOOR_EVENTS = """
SELECT id, title, starts_at, ends_at, all_day, time_zone, recurrence FROM events
WHERE series_ends_at >= %(from)s AND starts_at < %(to)s
"""
FLOOR_SEARCH = """
SELECT id, title, body, project_id, media_ids, version, owner_id, created_at, updated_at, count(*) OVER ()
FROM documents
WHERE to_tsvector('english'::regconfig, (coalesce(title, '') || ' ') || coalesce(body, ''))
      @@ websearch_to_tsquery('english'::regconfig, %(q)s)
ORDER BY ts_rank(to_tsvector('english'::regconfig, (coalesce(title, '') || ' ') || coalesce(body, '')),
                 websearch_to_tsquery('english'::regconfig, %(q)s)) DESC
LIMIT %(limit)s OFFSET 0
"""
FLOOR_CREATE = """
WITH made AS (
    INSERT INTO documents (title, body, owner_id) VALUES (%(title)s, %(body)s, %(owner)s)
    RETURNING id, title, body, owner_id
)
INSERT INTO document_versions (document_id, version, title, body, editor_id)
SELECT id, 1, title, body, owner_id FROM made
"""


def _body(rng: random.Random, size: int = 2000) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(WORDS))
    return " ".join([*words, *rng.sample(TOPICS, 3)])


def _event_rows(tenant: BenchTenant, count: int) -> list[tuple[Any, ...]]:
    rng = random.Random(18)
    year = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    rows = []
    for i in range(count):
        start = year + datetime.timedelta(minutes=rng.randrange(365 * 24 * 4) * 15)
        end = start + datetime.timedelta(hours=1)
        recurring = i % 10 == 0
        zone = "Europe/Berlin" if recurring else "UTC"
        rule = "FREQ=WEEKLY;COUNT=20" if recurring else None
        series = Series(start, end, zone, False, rule)
        rows.append((f"Event {i}", start, end, zone, rule, series.series_ends_at(), tenant.owner_id))
    return rows


def seed(bench: Bench, tenant: BenchTenant, events: int, documents: int) -> float:
    started = time.perf_counter()
    rng = random.Random(5545)
    with psycopg.connect(bench.url) as conn:
        with conn.transaction():
            bind(conn, tenant.schema)
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY events (title, starts_at, ends_at, time_zone, recurrence, series_ends_at, owner_id)"
                    " FROM STDIN"
                ) as copy,
            ):
                for row in _event_rows(tenant, events):
                    copy.write_row(row)
            with conn.cursor() as cur, cur.copy("COPY documents (title, body, owner_id) FROM STDIN") as copy:
                for i in range(documents):
                    copy.write_row((f"Document {i} {rng.choice(WORDS)}", _body(rng), tenant.owner_id))
        for table in ("events", "documents"):
            conn.execute(f"ANALYZE {quote_ident(tenant.schema)}.{table}")
    step(f"  {events} events and {documents} documents seeded")
    return time.perf_counter() - started


def _timed_gets(
    bench: Bench, target: Target, path: str, params: dict[str, Any], count: int
) -> tuple[Any, list[float]]:
    served = bench.served
    assert served is not None
    url = f"http://127.0.0.1:{served.port}{path}"
    latencies = []
    with httpx.Client(headers=target_headers(target), timeout=60) as client:
        first = client.get(url, params=params)
        if first.status_code != 200:
            raise BenchError(f"GET {path} answered {first.status_code}: {first.text[:300]}")
        cpu = _server_cpu(bench)
        for _ in range(count):
            started = time.perf_counter()
            client.get(url, params=params).raise_for_status()
            latencies.append(time.perf_counter() - started)
        cpu = _server_cpu(bench) - cpu
    return first.json(), latencies, cpu / count


def _server_cpu(bench: Bench) -> float:
    """The app server's CPU seconds so far: per request, far steadier than its latency on a
    shared machine (bench/serving.py)."""
    served = bench.served
    assert served is not None
    assert served.app.proc is not None
    return tree_cpu_seconds(served.app.proc.pid)


def _app_summary(latencies: list[float], cpu_seconds: float) -> dict[str, Any]:
    return {**latency_summary(latencies), "cpu_ms": round(cpu_seconds * 1000, 2)}


def _timed_floor(
    bench: Bench, tenant: BenchTenant, sql: str, params: dict[str, Any], count: int
) -> tuple[Any, list[float]]:
    latencies = []
    rows: Any = None
    with psycopg.connect(bench.url) as conn:
        for _ in range(count + 1):
            started = time.perf_counter()
            with conn.transaction():
                bind(conn, tenant.schema)
                rows = conn.execute(sql, params).fetchall()
            latencies.append(time.perf_counter() - started)
    return rows, latencies[1:]


def occurrences_figure(
    bench: Bench, target: Target, tenant: BenchTenant, events: int, count: int
) -> dict[str, Any]:
    window = {"from": WINDOW_FROM.isoformat(), "to": WINDOW_TO.isoformat()}
    answer, app, cpu = _timed_gets(bench, target, "/events/occurrences", window, count)
    rows, floor = _timed_floor(bench, tenant, FLOOR_EVENTS, {"from": WINDOW_FROM, "to": WINDOW_TO}, count)
    expected = {str(r[0]) for r in rows}
    if not {o["event_id"] for o in answer["items"]} <= expected:
        raise BenchError("the app's occurrences name events the floor's rows do not hold")
    return {
        "route": "GET /events/occurrences (one month)",
        "events": events,
        "occurrences": len(answer["items"]),
        "app": _app_summary(app, cpu),
        "floor": latency_summary(floor),
    }


def search_figure(
    bench: Bench, target: Target, tenant: BenchTenant, documents: int, count: int
) -> dict[str, Any]:
    page, app, cpu = _timed_gets(bench, target, "/documents", {"q": QUERY, "limit": PAGE}, count)
    rows, floor = _timed_floor(bench, tenant, FLOOR_SEARCH, {"q": QUERY, "limit": PAGE}, count)
    if (rows[0][-1] if rows else 0) != page["total"]:
        raise BenchError(f"the floor finds {rows[0][-1] if rows else 0} documents, the app {page['total']}")
    return {
        "route": f"GET /documents?q={QUERY}",
        "documents": documents,
        "matches": page["total"],
        "app": _app_summary(app, cpu),
        "floor": latency_summary(floor),
    }


def create_figure(bench: Bench, target: Target, tenant: BenchTenant, count: int) -> dict[str, Any]:
    served = bench.served
    assert served is not None
    body = _body(random.Random(1))
    cpu = 0.0

    def at_warm() -> None:  # the first is a warm-up, as below
        nonlocal cpu
        cpu = _server_cpu(bench)

    app = posts_one_at_a_time(
        served.port,
        target_headers(target),
        "/documents",
        lambda i: {"title": f"Created {i}", "body": body},
        count,
        warm=1,
        at_warm=at_warm,
    )
    cpu = (_server_cpu(bench) - cpu) / count
    floor = []
    with psycopg.connect(bench.url) as conn:
        for i in range(count + 1):
            started = time.perf_counter()
            with conn.transaction():
                bind(conn, tenant.schema)
                conn.execute(FLOOR_CREATE, {"title": f"Floor {i}", "body": body, "owner": tenant.owner_id})
            floor.append(time.perf_counter() - started)
    return {
        "route": "POST /documents (2 KB body)",
        "app": _app_summary(app, cpu),
        "floor": latency_summary(floor[1:]),
    }


def calendar_documents_figures(bench: Bench) -> None:
    quick = bench.args.quick
    tenant = bench.tenants[3]
    events, documents = (1000, 1000) if quick else (10_000, 10_000)
    count = 30 if quick else 300
    step(f"calendar_documents: seeding {events} events and {documents} documents in {tenant.schema}")
    seconds = seed(bench, tenant, events, documents)
    target = bench.targets([tenant], lambda _t: "/events")[0]
    step(f"event_occurrences: a month's occurrences, {count} requests, then the floor's")
    occurrences = occurrences_figure(bench, target, tenant, events, count)
    step(f"document_search: q over {documents} documents, then the floor's")
    # Quick: few searches. Under about 5,000 documents PostgreSQL plans a sequential scan
    # (it underrates to_tsvector's cost), some 0.5 s a search on this data.
    search = search_figure(bench, target, tenant, documents, 5 if quick else count)
    step(f"document_create: {count} documents created one after another, then the floor's")
    create = create_figure(bench, target, tenant, count)
    bench.results["calendar_documents"] = {
        "seed_seconds": round(seconds, 1),
        "event_occurrences": occurrences,
        "document_search": search,
        "document_create": create,
    }


def _ratio(figure: dict[str, Any]) -> float:
    return figure["app"]["p99_ms"] / max(figure["floor"]["p99_ms"], 1e-6)


def _row(name: str, figure: dict[str, Any]) -> Row:
    app, floor = figure["app"], figure["floor"]
    return (
        name,
        f"p50 {app['p50_ms']:.1f} ms, p99 {app['p99_ms']:.1f} ms, {app['cpu_ms']:.2f} ms server CPU each",
        f"floor p50 {floor['p50_ms']:.1f} ms, p99 {floor['p99_ms']:.1f} ms; p99 ratio {_ratio(figure):.1f}x",
    )


def rows(results: dict[str, Any]) -> list[Row]:
    figures = results["calendar_documents"]
    occurrences, search = figures["event_occurrences"], figures["document_search"]
    return [
        _row(
            f"event_occurrences (a month, {occurrences['events']:,} events, "
            f"{occurrences['occurrences']:,} found)",
            occurrences,
        ),
        _row(f"document_search ({search['documents']:,} documents, {search['matches']:,} matches)", search),
        _row("document_create (2 KB body)", figures["document_create"]),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    figures = results["calendar_documents"]
    return [
        (f"{name} p99 / floor p99", f"{_ratio(figures[name]):.1f}x", "≤ 3x", _ratio(figures[name]) <= 3)
        for name in ("event_occurrences", "document_search", "document_create")
    ]


STEP = Step("calendar_documents", calendar_documents_figures, rows, goals, serves=True)
