"""The forms figures (``forms``, issue 22), each beside a raw-SQL floor measured in the same run:

- ``response``: ``POST /form-responses`` to an open 50-field form (the answers checked
  against every field, the form locked, the response inserted and the count kept), one
  request at a time on a kept-alive connection, p50 and p99, and the CPU per request of
  the app's processes and database backends. Its floor, on which the goal is read, is the
  floor app's ``POST /form-responses`` (bench/baseline_app.py: the same INSERT and commit
  of the answers by raw psycopg, as issue 17's write floor), sent by the same client; so
  both sides pay the HTTP round trip and the ratio reads what Atrium adds to the INSERT.
  Beside it, the statement floor: the same INSERT and commit from this process by psycopg,
  with no HTTP at all (the floor before 2026-12-08), with its client's and backend's CPU.
  The three run in turns.
- ``export``: ``GET /forms/{id}/responses.csv`` of N responses (200,000; quick: 2,000,
  seeded by one ``INSERT … SELECT generate_series``): rows/s, and the app's peak resident
  memory above idle while it streams (server and workers, sampled from /proc every 20 ms);
  against the floor, the same rows read by raw psycopg through a server-side cursor.
- ``public_posts``: anonymous ``POST /public/forms/{id}/responses`` from P distinct client
  addresses (2,000; quick: 50), each a TCP connection bound to its own loopback address
  (127.0.0.0/8), 16 at a time: posts/s, p50, p99 and how many were refused (429).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import threading
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
    bind,
    percentile,
    posts_one_at_a_time,
    step,
    tree_cpu_seconds,
)

from atrium.platform.tenancy.naming import quote_ident
from atrium.tenants.forms.export import export_query

FIELD_COUNT = 50
RESPONSE_COUNT = {True: 100, False: 2000}
RESPONSE_TURNS = {True: 2, False: 4}
WARM = 20
EXPORT_ROWS = {True: 2_000, False: 200_000}
PUBLIC_ADDRESSES = {True: 50, False: 2_000}
PUBLIC_CONCURRENCY = 16
MEMORY_SAMPLE_SECONDS = 0.02
TYPES = ["text", "number", "email", "date", "select", "multiselect", "checkbox", "rating", "textarea", "text"]


def form_fields() -> list[dict[str, Any]]:
    """50 fields, every type five times, all required so that every answer is checked."""
    fields = []
    for i in range(FIELD_COUNT):
        kind = TYPES[i % len(TYPES)]
        field: dict[str, Any] = {"key": f"q{i}", "label": f"Question {i}", "type": kind, "required": True}
        if kind in ("select", "multiselect"):
            field["options"] = [f"option {n}" for n in range(10)]
        if kind == "number":
            field.update(min=0, max=1_000_000)
        fields.append(field)
    return fields


def answers(fields: list[dict[str, Any]], n: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in fields:
        kind = field["type"]
        values[field["key"]] = {
            "text": f"answer {n}",
            "textarea": f"a longer answer, number {n}, over a few words",
            "number": n % 1_000_000,
            "email": f"person{n}@example.com",
            "date": "2026-12-06",
            "select": "option 3",
            "multiselect": ["option 1", "option 4"],
            "checkbox": n % 2 == 0,
            "rating": 1 + n % 5,
        }[kind]
    return values


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
    }


def _create_form(port: int, host: str, token: str, public: bool) -> str:
    body = {"title": "Bench form", "status": "open", "public": public, "fields": form_fields()}
    response = httpx.post(
        f"http://127.0.0.1:{port}/forms",
        json=body,
        headers={"Host": host, "Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if response.status_code != 201:
        raise BenchError(f"POST /forms answered {response.status_code}: {response.text[:300]}")
    return str(response.json()["id"])


def _response_figure(
    bench: Bench, tenant: BenchTenant, port: int, token: str, form_id: str
) -> dict[str, Any]:
    """The app, the floor app and the statement floor in turns (RESPONSE_TURNS), so that each
    meets the same hour of this shared machine; each side's latencies pooled over its turns."""
    count, fields = RESPONSE_COUNT[bench.args.quick], form_fields()
    turns = RESPONSE_TURNS[bench.args.quick]
    served = bench.served
    assert served is not None
    times: dict[str, list[float]] = {"app": [], "floor": [], "statement_floor": []}
    cpu: dict[str, dict[str, float]] = {
        "app": {"server": 0.0, "db": 0.0},
        "floor": {"server": 0.0, "db": 0.0},
        "statement_floor": {"client": 0.0, "db": 0.0},
    }

    def body(n: int) -> dict[str, Any]:
        return {"form_id": form_id, "answers": answers(fields, n)}

    def posted(side: str, port: int, server: subprocess.Popen[bytes] | None, headers: dict[str, str]) -> None:
        assert server is not None
        spent = cpu[side]

        def at_warm() -> None:  # the first requests warm the connection and the caller cache
            spent["server"] -= tree_cpu_seconds(server.pid)
            spent["db"] -= bench.backends_cpu_seconds()

        times[side] += posts_one_at_a_time(
            port, headers, "/form-responses", body, count // turns, warm=WARM, at_warm=at_warm
        )
        spent["server"] += tree_cpu_seconds(server.pid)
        spent["db"] += bench.backends_cpu_seconds()

    insert = (
        "INSERT INTO form_responses (form_id, answers, form_version, owner_id) VALUES (%s, %s::jsonb, 1, %s)"
    )
    with psycopg.connect(bench.url) as conn:
        backend = conn.info.backend_pid

        def inserted() -> None:
            spent = cpu["statement_floor"]
            for n in range(WARM + count // turns):
                if n == WARM:
                    spent["client"] -= time.process_time()
                    spent["db"] -= tree_cpu_seconds(backend)
                started = time.perf_counter()
                with conn.transaction():
                    bind(conn, tenant.schema)
                    conn.execute(insert, [form_id, json.dumps(answers(fields, n)), tenant.owner_id])
                if n >= WARM:
                    times["statement_floor"].append(time.perf_counter() - started)
            spent["client"] += time.process_time()
            spent["db"] += tree_cpu_seconds(backend)

        for _ in range(turns):
            posted("app", port, served.app.proc, {"Host": tenant.host, "Authorization": f"Bearer {token}"})
            posted("floor", served.floor_port, served.floor.proc, {"Host": tenant.host})
            inserted()
    figures: dict[str, Any] = {"requests": len(times["app"]), "turns": turns}
    for side, latencies in times.items():
        # CPU per request, the steadier figure on a shared machine: the servers' processes
        # and the database backends; the statement floor's client (this process, answers'
        # JSON included) and its backend.
        per_request = {part: round(seconds * 1000 / len(latencies), 2) for part, seconds in cpu[side].items()}
        figures[side] = {
            **_ms(latencies),
            **{f"{part}_cpu_ms": value for part, value in per_request.items()},
            "cpu_ms": round(sum(cpu[side].values()) * 1000 / len(latencies), 2),
        }
    app, floor, statement = figures["app"], figures["floor"], figures["statement_floor"]
    figures.update(
        p99_ratio=round(app["p99_ms"] / floor["p99_ms"], 2),
        p50_ratio=round(app["p50_ms"] / floor["p50_ms"], 2),
        statement_p99_ratio=round(app["p99_ms"] / statement["p99_ms"], 2),
    )
    return figures


def _seed_responses(bench: Bench, tenant: BenchTenant, form_id: str, count: int) -> None:
    row = json.dumps(answers(form_fields(), 7))
    with psycopg.connect(bench.url) as conn:
        with conn.transaction():
            bind(conn, tenant.schema)
            conn.execute(
                "INSERT INTO form_responses (form_id, answers, form_version, owner_id, created_at)"
                " SELECT %s, %s::jsonb, 1, CASE WHEN g %% 2 = 0 THEN %s::uuid END,"
                " now() - make_interval(secs => %s - g) FROM generate_series(1, %s) AS g",
                [form_id, row, tenant.owner_id, count, count],
            )
            conn.execute("UPDATE forms SET response_count = %s WHERE id = %s", [count, form_id])
        conn.execute(f"ANALYZE {quote_ident(tenant.schema)}.form_responses")


class PeakMemory:
    """The app's resident memory (every process of its tree), sampled while a download runs."""

    def __init__(self, bench: Bench) -> None:
        assert bench.served is not None
        self.server = bench.served.app
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mb()[0])
            time.sleep(MEMORY_SAMPLE_SECONDS)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _export_figure(bench: Bench, tenant: BenchTenant, port: int, token: str, form_id: str) -> dict[str, Any]:
    count = EXPORT_ROWS[bench.args.quick]
    started = time.perf_counter()
    _seed_responses(bench, tenant, form_id, count)
    seeded = time.perf_counter() - started
    assert bench.served is not None
    headers = {"Host": tenant.host, "Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{port}/forms/{form_id}/responses.csv"
    # Idle: after one small request has loaded the route's code in the worker that serves it.
    httpx.get(f"http://127.0.0.1:{port}/forms/{form_id}", headers=headers, timeout=30)
    time.sleep(0.5)
    idle = bench.served.app.rss_mb()[0]
    lines = 0
    with PeakMemory(bench) as memory:
        started = time.perf_counter()
        with httpx.stream("GET", url, headers=headers, timeout=600) as response:
            if response.status_code != 200:
                raise BenchError(f"GET {url} answered {response.status_code}: {response.read()[:300]!r}")
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
    # Quoted cells may hold newlines; these answers hold none, so lines are the rows + header.
    if lines - 1 != count:
        raise BenchError(f"the export held {lines - 1} rows, not {count}")
    with psycopg.connect(bench.url) as conn, conn.transaction():
        bind(conn, tenant.schema)
        floor_started = time.perf_counter()
        # The app's own statement: the floor is reading the rows, the figure adds the CSV.
        sql, params = export_query(form_fields())
        with conn.cursor(name="floor") as cursor:
            cursor.execute(sql, {**params, "id": form_id})
            while cursor.fetchmany(1000):
                pass
        floor_elapsed = time.perf_counter() - floor_started
    return {
        "rows": count,
        "seed_s": round(seeded, 1),
        "seconds": round(elapsed, 2),
        "rows_per_s": round(count / elapsed),
        "idle_mb": round(idle, 1),
        "peak_mb": round(memory.peak, 1),
        "above_idle_mb": round(max(0.0, memory.peak - idle), 1),
        "floor_rows_per_s": round(count / floor_elapsed),
    }


def _address(n: int) -> str:
    # 127.1.0.1 onwards: every address of 127.0.0.0/8 is this machine's loopback.
    return f"127.1.{n // 250}.{1 + n % 250}"


async def _post_from(address: str, port: int, request: bytes) -> int:
    """One request on a new connection from ``address``; the answer's status. Plain asyncio
    streams: an httpx client per address spent more time making its TLS context than the
    request took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    try:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # the server closes after the answer (Connection: close)
    finally:
        writer.close()
    return int(status_line.split()[1])


async def _public_posts(port: int, host: str, form_id: str, addresses: int) -> dict[str, Any]:
    fields = form_fields()
    times: list[float] = []
    statuses: dict[int, int] = {}
    gate = asyncio.Semaphore(PUBLIC_CONCURRENCY)

    async def post(n: int) -> None:
        body = json.dumps({"answers": answers(fields, n)}).encode()
        request = (
            f"POST /public/forms/{form_id}/responses HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        async with gate:
            started = time.perf_counter()
            status = await _post_from(_address(n), port, request)
            times.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(post(n) for n in range(addresses)))
    elapsed = time.perf_counter() - started
    return {
        "addresses": addresses,
        "posts_per_s": round(addresses / elapsed),
        **_ms(times),
        "mean_ms": round(statistics.mean(times) * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def forms(bench: Bench) -> None:
    served = bench.served
    assert served is not None
    tenant = bench.tenants[0]
    (target,) = bench.targets([tenant], lambda _t: "/forms")
    quick = bench.args.quick
    step(
        f"forms: {RESPONSE_COUNT[quick]} responses to a {FIELD_COUNT}-field form against the floor "
        f"app's raw INSERT and the INSERT alone, in {RESPONSE_TURNS[quick]} turns; CSV export of "
        f"{EXPORT_ROWS[quick]:,} responses; public posts from {PUBLIC_ADDRESSES[quick]:,} addresses"
    )
    answered = _create_form(served.port, tenant.host, target.token, public=False)
    exported = _create_form(served.port, tenant.host, target.token, public=False)
    public = _create_form(served.port, tenant.host, target.token, public=True)
    bench.results["forms"] = {
        "response": _response_figure(bench, tenant, served.port, target.token, answered),
        "export": _export_figure(bench, tenant, served.port, target.token, exported),
        "public_posts": asyncio.run(_public_posts(served.port, tenant.host, public, PUBLIC_ADDRESSES[quick])),
    }


def rows(results: dict[str, Any]) -> list[Row]:
    f = results["forms"]
    r, e, p = f["response"], f["export"], f["public_posts"]
    f_, s_ = r["floor"], r["statement_floor"]
    return [
        (
            f"form response ({FIELD_COUNT} fields, POST /form-responses)",
            f"p50 {r['app']['p50_ms']:.1f} ms, p99 {r['app']['p99_ms']:.1f} ms, "
            f"CPU {r['app']['cpu_ms']:.2f} ms/req (server {r['app']['server_cpu_ms']:.2f}"
            f" + db {r['app']['db_cpu_ms']:.2f})",
            f"floor app (raw INSERT) p50 {f_['p50_ms']:.1f} ms, p99 {f_['p99_ms']:.1f} ms, "
            f"CPU {f_['cpu_ms']:.2f} ms/req (server {f_['server_cpu_ms']:.2f} + db {f_['db_cpu_ms']:.2f});"
            f" p99 ratio {r['p99_ratio']:.2f}. The INSERT alone (no HTTP): p50 {s_['p50_ms']:.1f} ms, "
            f"p99 {s_['p99_ms']:.1f} ms, CPU {s_['cpu_ms']:.2f} ms/req (client {s_['client_cpu_ms']:.2f}"
            f" + db {s_['db_cpu_ms']:.2f}); p99 ratio {r['statement_p99_ratio']:.2f}",
        ),
        (
            f"CSV export ({e['rows']:,} responses)",
            f"{e['rows_per_s']:,} rows/s ({e['seconds']:.1f} s); peak {e['above_idle_mb']:.1f} MB above idle",
            f"floor (server-side cursor) {e['floor_rows_per_s']:,} rows/s; idle {e['idle_mb']:.0f} MB",
        ),
        (
            f"public posts ({p['addresses']:,} addresses)",
            f"{p['posts_per_s']} posts/s, p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms",
            f"statuses {p['statuses']} (a connection per address)",
        ),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    f = results["forms"]
    r, e = f["response"], f["export"]
    return [
        ("form response p99 / floor app", f"{r['p99_ratio']:.2f}", "≤ 3", r["p99_ratio"] <= 3),
        ("CSV export rows/s", f"{e['rows_per_s']:,}", "≥ 20,000", e["rows_per_s"] >= 20_000),
        ("CSV export memory above idle", f"{e['above_idle_mb']:.1f} MB", "≤ 20 MB", e["above_idle_mb"] <= 20),
    ]


STEP = Step("forms", forms, rows, goals, serves=True)
