"""Provisioning (``provision``): N tenants through ``provision_tenant``, against the same
CREATE statements as plain SQL, interleaved with the tenants (see run.py's docstring)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg
from common import Bench, BenchTenant, Goal, Row, Step, bind, console, ms, percentile, progress_bar, step

from atrium.platform.db.alembic_runner import VERSION_TABLE, head_revision, upgrade_platform
from atrium.platform.security.passwords import hash_password
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.provisioning import OwnerSpec, provision_tenant, tenant_tables_ddl

PRODUCTION_BCRYPT_ROUNDS = 12


def provision(bench: Bench) -> None:
    args = bench.args
    n = args.tenants
    step(
        f"provisioning {n} tenants with provision_tenant (bcrypt cost {args.bcrypt_rounds}), "
        f"{args.raw_samples} raw-DDL schemas interleaved"
    )
    with bench.engine.begin() as conn:
        upgrade_platform(conn)
    head = head_revision("tenant")
    statements = list(tenant_tables_ddl())
    batch = ";\n".join(statements)
    every = max(1, n // args.raw_samples)
    times: list[float] = []
    raw_batch: list[float] = []
    raw_statements: list[float] = []
    fresh = not args.reuse_connection
    started = time.perf_counter()
    raw_seconds = 0.0
    raw = _RawDDL(bench.url)
    try:
        with progress_bar() as bar:
            task = bar.add_task("provisioning", total=n)
            for i in range(n):
                slug = f"bench-{i:05d}"
                owner = OwnerSpec("Bench Owner", f"owner@{slug}.example", "+1 555 0100", f"pw-{slug}-secret")
                if fresh:
                    # Like `atrium tenants create`: a new server backend for each tenant. The
                    # connection is opened untimed; provision_tenant checks it out (pre-ping included).
                    bench.engine.dispose()
                    bench.engine.connect().close()
                t0 = time.perf_counter()
                made = provision_tenant(bench.engine, slug, "Bench", owner, bcrypt_rounds=args.bcrypt_rounds)
                times.append(time.perf_counter() - t0)
                bench.tenants.append(BenchTenant(made.slug, made.schema, made.id, made.owner_id))
                if i % every == 0 and len(raw_batch) < args.raw_samples:
                    r0 = time.perf_counter()
                    raw_statements.append(raw.time(f"bench_raws_{i}", head, statements, fresh))
                    raw_batch.append(raw.time(f"bench_raw_{i}", head, [batch], fresh))
                    raw_seconds += time.perf_counter() - r0
                bar.advance(task)
                if not console.is_terminal and (i + 1) % max(1, n // 10) == 0:
                    recent = times[-max(1, n // 10) :]
                    p50_recent = ms(statistics.median(recent))
                    step(f"  {i + 1}/{n} tenants, p50 of the last {len(recent)}: {p50_recent:.1f} ms")
    finally:
        raw.close()
    wall = time.perf_counter() - started - raw_seconds
    bcrypt_started = time.perf_counter()
    hash_password("correct horse battery", PRODUCTION_BCRYPT_ROUNDS)
    bcrypt_s = time.perf_counter() - bcrypt_started
    p50 = ms(statistics.median(times))
    raw_p50 = ms(statistics.median(raw_statements))
    bench.results["provision"] = {
        "tenants": n,
        "p50_ms": round(p50, 2),
        "p95_ms": round(ms(percentile(times, 95)), 2),
        "tenants_per_s": round(n / wall, 1),
        "raw_ddl_p50_ms": round(raw_p50, 2),
        # The floor sends the statements as provision_tenant does, one per message (Citus
        # refuses several in one); the one-batch figure shows what that costs.
        "raw_ddl_mode": "statement by statement, as provision_tenant sends them",
        "raw_ddl_batch_p50_ms": round(ms(statistics.median(raw_batch)), 2),
        "raw_samples": len(raw_statements),
        "connection": "reused" if args.reuse_connection else "fresh per tenant (as the CLI)",
        "p50_first_tenth_ms": round(ms(statistics.median(times[: max(1, n // 10)])), 2),
        "p50_last_tenth_ms": round(ms(statistics.median(times[-max(1, n // 10) :])), 2),
        "ratio_p50": round(p50 / raw_p50, 2),
        "bcrypt_rounds": args.bcrypt_rounds,
        "bcrypt_ms": round(ms(bcrypt_s), 1),
        "bcrypt_ms_rounds": PRODUCTION_BCRYPT_ROUNDS,
    }
    r = bench.results["provision"]
    step(
        f"  provision p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, {r['tenants_per_s']} tenants/s; "
        f"raw DDL p50 {r['raw_ddl_p50_ms']} ms (statement by statement), {r['raw_ddl_batch_p50_ms']} ms "
        f"(one batch); bcrypt cost 12: {r['bcrypt_ms']} ms"
    )


class _RawDDL:
    """The floor: the tenant tables by plain SQL, one transaction per schema.

    On a connection of its own, opened untimed: fresh for each schema when the tenants get
    fresh ones, else one kept for the whole run (as the tenants' pooled connection is).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def time(self, schema: str, head: str, statements: list[str], fresh: bool) -> float:
        if fresh or self.conn is None:
            if self.conn is not None:
                self.conn.close()
            self.conn = psycopg.connect(self.url)
        conn = self.conn
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            bind(conn, schema)
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (%s)", [head])
        elapsed = time.perf_counter() - t0
        with conn.transaction():  # untimed: keep the catalog the size the tenants make it
            conn.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
        return elapsed


def rows(results: dict[str, Any]) -> list[Row]:
    p = results["provision"]
    return [
        (
            f"provision ({p['tenants']} tenants)",
            f"p50 {p['p50_ms']:.1f} ms, p95 {p['p95_ms']:.1f} ms, {p['tenants_per_s']:.1f} tenants/s",
            f"raw DDL p50 {p['raw_ddl_p50_ms']:.1f} ms (statement by statement; "
            f"{p['raw_ddl_batch_p50_ms']:.1f} ms in one batch); ratio {p['ratio_p50']:.2f}",
        ),
        (
            "  bcrypt",
            f"cost {p['bcrypt_rounds']} while provisioning",
            f"one hash at cost {p['bcrypt_ms_rounds']}: {p['bcrypt_ms']:.0f} ms (not in the figures above)",
        ),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    p = results["provision"]
    return [("provision ratio_p50", f"{p['ratio_p50']:.2f}", "≤ 2", p["ratio_p50"] <= 2)]


# Every other step needs the tenants: run.py runs this one whatever ``--only`` says.
STEP = Step("provision", provision, rows, goals)
