"""The invoices' figures (``invoices``, issue 21), each beside a raw-SQL floor:

- ``finalize``: ``--finalizes`` drafts (200; quick 60) finalized by ``FINALIZERS`` (20)
  concurrent clients through ``POST /invoices/{id}/finalize``; throughput, p50 and p99, and
  a check that the numbers given are exactly INV-000001 … INV-<n>, none missing or repeated.
  The floor does the same transaction by raw psycopg (bind, lock the invoice, then one
  statement that bumps the counter row and numbers the invoice, in one pipeline with the
  commit) at the same concurrency, in another tenant, and is checked the same way.
- ``pdf``: ``GET /invoices/{id}/pdf`` of a 50-line invoice, one request at a time (p50);
  the floor is the invoice row read by raw psycopg, and rendering alone is shown beside it.

The drafts are written by SQL, untimed, with the totals the app computes.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import statistics
import time
import types
import uuid
from decimal import Decimal
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
    kept_alive,
    percentile,
    step,
    target_headers,
    tree_cpu_seconds,
)

from atrium.platform.db.binding import BIND_SQL
from atrium.platform.tenancy.naming import quote_ident
from atrium.tenants.invoices import money
from atrium.tenants.invoices.pdf import render_pdf
from atrium.tenants.invoices.routes import COUNTER, NUMBER_FORMAT

FINALIZERS = 20
PDF_LINES = 50
ITEM = {"description": "Bench work", "quantity": "1.5", "unit_price": 1999, "tax_rate": "20"}

# The floor's finalize: what the app's transaction does, by hand. The counter row is
# locked by the statement sent with the COMMIT only, as in the app (routes._numbered).
_LOCK = "SELECT id, issue_date FROM invoices WHERE id = %(id)s AND status = 'draft' FOR UPDATE"
_NUMBER = """
WITH bump AS (
    INSERT INTO invoice_counters (name, last) VALUES (%(counter)s, 1)
    ON CONFLICT (name) DO UPDATE SET last = invoice_counters.last + 1 RETURNING last
)
UPDATE invoices
SET number = (SELECT 'INV-' || lpad(last::text, greatest(6, length(last::text)), '0') FROM bump),
    status = 'open', issue_date = coalesce(issue_date, current_date), updated_at = now()
WHERE id = %(id)s RETURNING number
"""


def seed_drafts(bench: Bench, tenant: BenchTenant, count: int) -> list[uuid.UUID]:
    totals = money.totals(
        [money.Line(Decimal(ITEM["quantity"]), ITEM["unit_price"], Decimal(ITEM["tax_rate"]))]
    )
    ids = [uuid.uuid4() for _ in range(count)]
    with psycopg.connect(bench.url) as conn, conn.transaction():
        bind(conn, tenant.schema)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO invoices (id, owner_id, customer_name, currency, items, subtotal, tax, total)"
                " VALUES (%s, %s, %s, 'USD', %s::jsonb, %s, %s, %s)",
                [
                    (
                        i,
                        tenant.owner_id,
                        f"Customer {n}",
                        json.dumps([ITEM]),
                        totals.subtotal,
                        totals.tax,
                        totals.total,
                    )
                    for n, i in enumerate(ids)
                ],
            )
    return ids


def numbers_given(bench: Bench, tenant: BenchTenant) -> list[str]:
    with psycopg.connect(bench.url) as conn:
        rows = conn.execute(
            f"SELECT number FROM {quote_ident(tenant.schema)}.invoices"
            " WHERE number IS NOT NULL ORDER BY number"
        ).fetchall()
    return [r[0] for r in rows]


def check_numbers(given: list[str], count: int, who: str) -> dict[str, int]:
    expected = [NUMBER_FORMAT.format(n) for n in range(1, count + 1)]
    missing = len(set(expected) - set(given))
    repeated = len(given) - len(set(given))
    if given != expected:
        raise BenchError(
            f"{who}: numbering errors ({missing} missing, {repeated} repeated, {len(given)} given)"
        )
    return {"missing": missing, "repeated": repeated}


def summary(latencies: list[float], wall: float) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "throughput_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
    }


async def _in_parallel(ids: list[uuid.UUID], one: Any) -> tuple[list[float], float]:
    """``one(id)`` over ``ids`` by FINALIZERS workers; every latency and the wall time."""
    queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    for i in ids:
        queue.put_nowait(i)
    latencies: list[float] = []

    async def worker(index: int) -> None:
        while not queue.empty():
            invoice_id = queue.get_nowait()
            started = time.perf_counter()
            await one(index, invoice_id)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(FINALIZERS)))
    return latencies, time.perf_counter() - started


async def finalize_app(port: int, target: Target, ids: list[uuid.UUID]) -> tuple[list[float], float]:
    headers = target_headers(target)
    async with kept_alive(port, FINALIZERS) as connections:

        async def one(index: int, invoice_id: uuid.UUID) -> None:
            status, answer = await connections[index].send(
                "POST", f"/invoices/{invoice_id}/finalize", headers
            )
            if status != 200:
                raise BenchError(f"finalize answered {status}: {answer[:300]!r}")

        return await _in_parallel(ids, one)


async def warm_up(port: int, app: Target, spare: Target, spare_ids: list[uuid.UUID]) -> None:
    """What the floor has before its clock starts (its connections open): the app's pool
    filled and the finalize path run once in each worker, on a spare tenant's drafts, and
    the app tenant's host and caller known, by reads of its drafts."""
    await finalize_app(port, spare, spare_ids)
    async with kept_alive(port, FINALIZERS) as connections:
        headers = target_headers(app)
        await asyncio.gather(*(c.send("GET", "/invoices?limit=1", headers) for c in connections))


async def finalize_floor(url: str, schema: str, ids: list[uuid.UUID]) -> tuple[list[float], float]:
    connections = [await psycopg.AsyncConnection.connect(url) for _ in range(FINALIZERS)]
    try:

        async def one(index: int, invoice_id: uuid.UUID) -> None:
            conn = connections[index]
            # As the app sends them: the binding with BEGIN, the draft locked, then the
            # number in one pipeline with the COMMIT (routes._numbered).
            async with conn.pipeline():
                await conn.execute(BIND_SQL, {"path": quote_ident(schema), "timeout": "30s"})
                await conn.execute(_LOCK, {"id": invoice_id})
            async with conn.pipeline():
                await conn.execute(_NUMBER, {"id": invoice_id, "counter": COUNTER})
                await conn.commit()

        return await _in_parallel(ids, one)
    finally:
        for conn in connections:
            await conn.close()


def pdf_figure(bench: Bench, port: int, tenant: BenchTenant, token: str, samples: int) -> dict[str, Any]:
    headers = {"Host": tenant.host, "Authorization": f"Bearer {token}"}
    items = [{**ITEM, "description": f"Line {n}: bench work"} for n in range(PDF_LINES)]
    body = {"customer_name": "PDF Customer", "currency": "EUR", "items": items, "notes": "Net 30"}
    base = f"http://127.0.0.1:{port}"
    made = httpx.post(f"{base}/invoices", json=body, headers=headers, timeout=30)
    if made.status_code != 201:
        raise BenchError(f"POST /invoices answered {made.status_code}: {made.text[:300]}")
    row = made.json()
    app, floor, render = [], [], []
    with (
        httpx.Client(base_url=base, headers=headers, timeout=30) as client,
        psycopg.connect(bench.url) as conn,
    ):
        for _ in range(samples):
            started = time.perf_counter()
            response = client.get(f"/invoices/{row['id']}/pdf")
            app.append(time.perf_counter() - started)
            if response.status_code != 200 or not response.content.startswith(b"%PDF"):
                raise BenchError(f"GET pdf answered {response.status_code}")
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(BIND_SQL, {"path": quote_ident(tenant.schema), "timeout": "30s"})
                conn.execute("SELECT * FROM invoices WHERE id = %s", [row["id"]]).fetchone()
            floor.append(time.perf_counter() - started)
    invoice = types.SimpleNamespace(
        **{
            **row,
            "updated_at": datetime.datetime.fromisoformat(row["updated_at"]),
            "issue_date": None,
            "due_date": None,
        }
    )
    for _ in range(samples):
        started = time.perf_counter()
        render_pdf(invoice, "Bench Org")  # type: ignore[arg-type]
        render.append(time.perf_counter() - started)
    return {
        "lines": PDF_LINES,
        "samples": samples,
        "bytes": len(response.content),
        "p50_ms": round(statistics.median(app) * 1000, 1),
        "floor_p50_ms": round(statistics.median(floor) * 1000, 2),
        "render_p50_ms": round(statistics.median(render) * 1000, 1),
    }


def invoices(bench: Bench) -> None:
    args, served = bench.args, bench.served
    assert served is not None
    count = args.finalizes or (60 if args.quick else 200)
    app_tenant = bench.tenants[3 % len(bench.tenants)]
    floor_tenant = bench.tenants[4 % len(bench.tenants)]
    step(f"invoices: {count} drafts in each of {app_tenant.schema} and {floor_tenant.schema}")
    app_ids, floor_ids = seed_drafts(bench, app_tenant, count), seed_drafts(bench, floor_tenant, count)
    spare_tenant = bench.tenants[5 % len(bench.tenants)]
    spare_ids = seed_drafts(bench, spare_tenant, FINALIZERS * 2)
    target, spare = bench.targets([app_tenant, spare_tenant], lambda _t: "/")
    step(f"invoices: warm-up ({len(spare_ids)} finalizes in {spare_tenant.schema}), untimed")
    asyncio.run(warm_up(served.port, target, spare, spare_ids))
    step(f"invoices: finalizing {count} by {FINALIZERS} concurrent clients, app then floor")
    assert served.app.proc is not None
    cpu = tree_cpu_seconds(served.app.proc.pid)
    latencies, wall = asyncio.run(finalize_app(served.port, target, app_ids))
    # The server's CPU per finalize: far steadier than the latency on a shared machine.
    cpu_ms = round((tree_cpu_seconds(served.app.proc.pid) - cpu) * 1000 / count, 2)
    app = {
        **summary(latencies, wall),
        "cpu_ms": cpu_ms,
        **check_numbers(numbers_given(bench, app_tenant), count, "app"),
    }
    latencies, wall = asyncio.run(finalize_floor(bench.url, floor_tenant.schema, floor_ids))
    floor = {**summary(latencies, wall), **check_numbers(numbers_given(bench, floor_tenant), count, "floor")}
    samples = 10 if args.quick else 100
    step(f"invoices: PDF of a {PDF_LINES}-line invoice, {samples} requests one at a time")
    pdf = pdf_figure(bench, served.port, app_tenant, target.token, samples)
    bench.results["invoices"] = {
        "finalize": {"count": count, "clients": FINALIZERS, "app": app, "floor": floor},
        "pdf": pdf,
    }


def _finalize_text(r: dict[str, Any]) -> str:
    return f"{r['throughput_per_s']:.0f}/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"


def rows(results: dict[str, Any]) -> list[Row]:
    f, p = results["invoices"]["finalize"], results["invoices"]["pdf"]
    return [
        (
            f"invoices finalize ({f['count']} by {f['clients']} clients; numbers 1..{f['count']}, "
            f"{f['app']['missing']} missing, {f['app']['repeated']} repeated)",
            f"{_finalize_text(f['app'])}, {f['app']['cpu_ms']:.1f} ms server CPU each",
            f"floor {_finalize_text(f['floor'])}",
        ),
        (
            f"invoices pdf ({p['lines']} lines, {p['bytes']:,} bytes)",
            f"p50 {p['p50_ms']:.1f} ms",
            f"floor (the row by raw psycopg) p50 {p['floor_p50_ms']:.2f} ms; "
            f"rendering alone p50 {p['render_p50_ms']:.1f} ms",
        ),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    f, p = results["invoices"]["finalize"], results["invoices"]["pdf"]
    errors = f["app"]["missing"] + f["app"]["repeated"]
    return [
        (
            "finalize p99 (20 concurrent clients)",
            f"{f['app']['p99_ms']:.1f} ms",
            "≤ 100 ms",
            f["app"]["p99_ms"] <= 100,
        ),
        ("finalize numbering errors", str(errors), "0", errors == 0),
        ("pdf p50 (50 lines)", f"{p['p50_ms']:.1f} ms", "≤ 150 ms", p["p50_ms"] <= 150),
    ]


STEP = Step("invoices", invoices, rows, goals, serves=True)
