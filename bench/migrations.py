"""Migrations: ``migrate_noop`` (every tenant at head, in-process and as the CLI) and
``migrate_apply`` (a throw-away revision over every tenant, against the same ALTER as plain
SQL at the same concurrency); see run.py's docstring."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import textwrap
import threading
import time
import uuid
from typing import Any

import psycopg
from common import ROOT, Bench, BenchError, Goal, Row, Step, atrium_command, bind, progress_bar, step

from atrium.platform.db.alembic_runner import MIGRATIONS_DIR, VERSION_TABLE, head_revision
from atrium.platform.tenancy.schema_migrations import DEFAULT_CONCURRENCY, migrate_tenants

BENCH_COLUMN = "bench_note"
RAW_COLUMN = "bench_raw_note"


def migrate_noop(bench: Bench) -> None:
    n = len(bench.tenants)
    step(f"migrate with nothing pending over {n} tenants (in-process, then `atrium tenants migrate`)")
    runs: list[float] = []
    for _ in range(3):
        t0 = time.perf_counter()
        report = migrate_tenants(bench.settings, bench.engine, None, concurrency=DEFAULT_CONCURRENCY)
        runs.append(time.perf_counter() - t0)
        if report.outcomes or len(report.current) != n:
            raise BenchError(f"expected {n} tenants at head, got {len(report.current)} and {report.outcomes}")
    cli_runs: list[float] = []
    env = {**os.environ, "DATABASE_URL": bench.url}
    env.pop("REDIS_URL", None)
    for _ in range(3):
        t0 = time.perf_counter()
        done = subprocess.run(
            [*atrium_command(), "tenants", "migrate", "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        cli_runs.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise BenchError(f"atrium tenants migrate failed: {done.stderr.strip()}")
        data = json.loads(done.stdout)
        if data["already_current"] != n or data["upgraded"]:
            raise BenchError(f"atrium tenants migrate did unexpected work: {done.stdout[:500]}")
    bench.results["migrate_noop"] = {
        "tenants": n,
        "seconds": round(statistics.median(runs), 3),
        "cli_seconds": round(statistics.median(cli_runs), 3),
        "cli_reported_seconds": data["seconds"],
        "runs": 3,
    }
    r = bench.results["migrate_noop"]
    step(f"  in-process {r['seconds']} s, CLI wall {r['cli_seconds']} s (median of 3)")


def migrate_apply(bench: Bench) -> None:
    n = len(bench.tenants)
    concurrency = bench.args.concurrency
    head = head_revision("tenant")
    revision = f"bench_{uuid.uuid4().hex[:8]}"
    versions = bench.workdir / "bench_versions"
    versions.mkdir()
    (versions / f"{revision}_bench_note.py").write_text(
        textwrap.dedent(
            f'''\
            """bench: a throw-away revision (bench/migrations.py); lives only in a temp directory."""
            import sqlalchemy as sa
            from alembic import op

            revision = "{revision}"
            down_revision = "{head}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                op.add_column("users", sa.Column("{BENCH_COLUMN}", sa.Text(), nullable=True))


            def downgrade() -> None:
                op.drop_column("users", "{BENCH_COLUMN}")
            '''
        )
    )
    # Alembic's version_locations replaces the default <script>/versions: pass both.
    locations = (str(MIGRATIONS_DIR / "tenant" / "versions"), str(versions))
    step(f"migrate {n} tenants to a throw-away revision {revision} (concurrency {concurrency})")
    with progress_bar() as bar:
        task = bar.add_task("migrating", total=n)
        t0 = time.perf_counter()
        report = migrate_tenants(
            bench.settings,
            bench.engine,
            None,
            concurrency=concurrency,
            version_locations=locations,
            on_done=lambda _o: bar.advance(task),
        )
        seconds = time.perf_counter() - t0
    if report.head != revision or report.failures or len(report.upgraded) != n:
        failures = [(o.slug, o.error) for o in report.failures[:3]]
        raise BenchError(f"migrate_apply: {len(report.upgraded)} of {n} upgraded; failures {failures}")
    step(f"  migrate_tenants: {seconds:.2f} s; now the floor: the same ALTER as plain SQL")
    raw_seconds = _raw_apply(bench, revision, concurrency)
    bench.results["migrate_apply"] = {
        "tenants": n,
        "seconds": round(seconds, 2),
        "concurrency": concurrency,
        "seconds_per_1000": round(seconds * 1000 / n, 2),
        "raw_sql_seconds": round(raw_seconds, 2),
        "raw_sql_concurrency": concurrency,
        "ratio": round(seconds / raw_seconds, 2),
    }
    step(f"  raw SQL: {raw_seconds:.2f} s ({concurrency} connections)")


def _raw_apply(bench: Bench, revision: str, concurrency: int) -> float:
    """ALTER + alembic_version + registry version, one transaction per schema, N threads."""
    pending = list(bench.tenants)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(bench.url) as conn:
                while True:
                    with lock:
                        if not pending:
                            return
                        tenant = pending.pop()
                    with conn.transaction():
                        bind(conn, tenant.schema)
                        conn.execute(f"ALTER TABLE users ADD COLUMN {RAW_COLUMN} TEXT")
                        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = %s", [revision])
                        conn.execute(
                            "UPDATE platform.tenants SET version = %s WHERE id = %s",
                            [revision, tenant.id],
                        )
        except BaseException as exc:  # reported by the caller
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise BenchError(f"raw migration failed: {failures[0]!r}")
    return time.perf_counter() - t0


# 4-6. requests, spread, memory --------------------------------------------------------


def noop_rows(results: dict[str, Any]) -> list[Row]:
    noop = results["migrate_noop"]
    return [
        (
            f"migrate_noop ({noop['tenants']} tenants)",
            f"{noop['seconds']:.3f} s in-process",
            f"`atrium tenants migrate` wall time {noop['cli_seconds']:.2f} s",
        )
    ]


def noop_goals(results: dict[str, Any]) -> list[Goal]:
    noop = results["migrate_noop"]
    return [
        (
            "migrate_noop cli_seconds",
            f"{noop['cli_seconds']:.2f} s ({noop['tenants']} tenants)",
            "≤ 2 s at 10,000 tenants",
            noop["cli_seconds"] <= 2,
        )
    ]


def apply_rows(results: dict[str, Any]) -> list[Row]:
    apply_ = results["migrate_apply"]
    return [
        (
            f"migrate_apply ({apply_['tenants']} tenants)",
            f"{apply_['seconds']:.2f} s, concurrency {apply_['concurrency']}",
            f"raw SQL {apply_['raw_sql_seconds']:.2f} s (same concurrency); ratio {apply_['ratio']:.2f}",
        )
    ]


def apply_goals(results: dict[str, Any]) -> list[Goal]:
    apply_ = results["migrate_apply"]
    apply_goal = 10.0 * max(apply_["tenants"], 1000) / 1000
    return [
        (
            "migrate_apply seconds",
            f"{apply_['seconds']:.2f} s ({apply_['tenants']} tenants)",
            f"≤ 10 s per 1,000 tenants (≤ {apply_goal:g} s here)",
            apply_["seconds"] <= apply_goal,
        )
    ]


NOOP = Step("migrate_noop", migrate_noop, noop_rows, noop_goals)
APPLY = Step("migrate_apply", migrate_apply, apply_rows, apply_goals)
