"""Atrium's benchmarks (issue 5): provisioning, migrations, requests, spread, memory.

    DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres .venv/bin/python bench/run.py --quick
    DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/run.py \
        --tenants 10000 --spread-tenants 1000 --duration 10 --record

``DATABASE_URL`` names a PostgreSQL server on this machine (the PostgreSQL memory figure
reads /proc) and a database to administer it from. The script creates a database of its
own there (``atrium_bench_<random>``), works only in it, and drops it at the end, also on
failure, Ctrl-C and SIGTERM. ``REDIS_URL`` (or ``--redis-url``), when set, is given to the
served app. It needs ``wrk`` (Debian package ``wrk``). It prints a table and writes
``bench/results/latest.json`` (or ``--output``); ``--record`` also adds the run to
``bench/RESULTS.md``. Nothing here asserts a speed: the goals are shown, not enforced.

Figures (each with its floor measured in the same run):

- ``provision``: N tenants through ``provision_tenant`` (what ``atrium tenants create``
  runs), one after another, each on a fresh server connection as the CLI has (opened
  untimed; ``--reuse-connection`` keeps one); against the same CREATE statements run as
  plain SQL in one transaction per schema, interleaved with the tenants so both see the
  same catalog and load. bcrypt runs at ``--bcrypt-rounds`` (4); one cost-12 hash is timed apart.
- ``migrate_noop``: ``migrate_tenants`` over N tenants at head, in-process and as the
  real ``atrium tenants migrate`` command (wall time, process start-up included).
- ``migrate_apply``: a throw-away revision (adds a nullable column to ``users``) written
  to a temporary directory, applied to every tenant with ``migrate_tenants(...,
  version_locations=(project versions, tmpdir))``; against the same ALTER and version
  updates as plain SQL, one transaction per schema, at the same concurrency.
- ``requests``: ``atrium serve --workers W`` in a subprocess, loaded by ``wrk`` (bench/targets.lua)
  for a fixed time per scenario after a warm-up; get_user alternates with bench/baseline_app.py (raw psycopg,
  same uvicorn options, same workers) over RATIO_ROUNDS rounds, and the median round is reported).
- ``spread``: ``GET /users/{id}`` over 1 tenant and over T tenants (random tenant per request),
  alternating over ``--spread-rounds`` rounds (the median round is reported), at the usual wrk
  connections (saturating every core), and again with ``LIGHT_CONNECTIONS``; the floor app
  runs the same pairs in each round (``spread.floor``: what spreading one select over T
  schemas costs this machine with no Atrium code), in both shapes: the issue's (a
  transaction with the binding, then the select) and Atrium's own ``GET`` by id (one
  schema-qualified select alone in autocommit, ``spread.floor_alone``). Before the rounds
  each server serves the T tenants for ``--spread-warmup`` seconds, as it has served the one
  tenant by then, so that both sides are compared in their steady state; those seconds are
  measured in 5-s slices and reported as the cold start (``spread.cold``, and ``cold`` of
  each floor).
- ``memory``: the app's resident memory (server and workers, from /proc) after serving 10
  tenants and after serving every tenant; the largest PostgreSQL backend after the spread run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from atrium.platform.db.alembic_runner import MIGRATIONS_DIR, VERSION_TABLE, head_revision, upgrade_platform
from atrium.platform.db.engines import create_operator_engine
from atrium.platform.security.passwords import hash_password
from atrium.platform.security.tokens import TokenAuth
from atrium.platform.settings import Settings, to_sqlalchemy_url
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.provisioning import OwnerSpec, provision_tenant, tenant_tables_ddl
from atrium.platform.tenancy.schema_migrations import DEFAULT_CONCURRENCY, migrate_tenants

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
LUA_SCRIPT = BENCH_DIR / "targets.lua"
# Alternating app / floor rounds of the request ratio, and 1-tenant / T-tenant rounds of
# the spread ratio (the median round of each is reported).
RATIO_ROUNDS = 3
# wrk connections of the below-saturation spread pair (one per worker core is well below).
LIGHT_CONNECTIONS = 4
PRODUCTION_BCRYPT_ROUNDS = 12
BENCH_COLUMN = "bench_note"
RAW_COLUMN = "bench_raw_note"

console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# --- arguments ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Atrium benchmarks (issue 5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="CI-sized: small N, short runs (< 2 min)")
    parser.add_argument("--tenants", type=int, help="N: tenants provisioned and migrated (full: 1000)")
    parser.add_argument("--spread-tenants", type=int, help="T of the spread figure (full: 1000, quick: 20)")
    parser.add_argument("--duration", type=float, help="seconds of each wrk run (full: 10, quick: 2)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured load before each run")
    parser.add_argument(
        "--spread-warmup",
        type=float,
        help="seconds of load over the T tenants before the spread rounds, measured as the cold"
        " start (full: 60, quick: 2)",
    )
    parser.add_argument(
        "--spread-rounds",
        type=int,
        help="alternating 1-tenant / T-tenant rounds of the spread figure; the median is reported"
        " (full: 5, quick: 3)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server worker processes")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--bcrypt-rounds", type=int, default=4, help="bcrypt cost while provisioning")
    parser.add_argument(
        "--reuse-connection",
        action="store_true",
        help="provision every tenant on one pooled connection instead of a fresh one each (as the CLI)",
    )
    parser.add_argument(
        "--raw-samples", type=int, help="schemas created by plain DDL for the floor (default min(N, 200))"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="migrate_tenants concurrency for migrate_apply (the CLI default)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or None,
        help="REDIS_URL given to the served app (default: $REDIS_URL; none: in-process stores)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON results go")
    parser.add_argument("--record", action="store_true", help="append this run to bench/RESULTS.md")
    args = parser.parse_args(argv)
    quick = args.quick
    args.tenants = args.tenants or (20 if quick else 1000)
    args.spread_tenants = args.spread_tenants or (20 if quick else 1000)
    args.duration = args.duration or (2.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.raw_samples = args.raw_samples or min(args.tenants, 200)
    # The first round always meets the backends' first contacts with the T tenants, and one
    # burst of outside load spoils any round: with 3 rounds those two decide the median; 5
    # leave it to a clean round (bench/RESULTS.md, sixth pass).
    args.spread_rounds = args.spread_rounds or (3 if quick else 5)
    if args.spread_warmup is None:
        args.spread_warmup = 2.0 if quick else 60.0
    if args.spread_rounds < 1:
        parser.error("--spread-rounds must be at least 1")
    if args.tenants < 10:
        parser.error("--tenants must be at least 10 (the memory figure serves 10 tenants)")
    if not 1 <= args.spread_tenants <= args.tenants:
        parser.error("--spread-tenants must be between 1 and --tenants")
    if not 4 <= args.bcrypt_rounds <= 31:
        parser.error("--bcrypt-rounds must be between 4 and 31")
    if args.duration <= 0 or args.warmup < 0 or args.workers < 1 or args.connections < 1:
        parser.error("--duration, --workers and --connections must be positive")
    return args


# --- helpers -----------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1000.0


def percentile(values: list[float], pct: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(pct) - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def atrium_command() -> list[str]:
    """The installed ``atrium`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("atrium")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("atrium")
    return [found] if found else [sys.executable, "-m", "atrium.scripts"]


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def step(message: str) -> None:
    console.print(f"[bold]{time.strftime('%H:%M:%S')}[/] {message}")


def progress_bar() -> Progress:
    return Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


# --- /proc -------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmRSS, RssAnon, ...); empty if unreadable."""
    fields: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return fields


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_rss_mb(root: int) -> tuple[float, dict[int, float]]:
    per = {pid: proc_status(pid).get("VmRSS", 0) / 1024 for pid in process_tree(root)}
    return sum(per.values()), per


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# --- the scratch database ----------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[tuple[str, str]]:
    """A new database on the server; dropped afterwards, whatever happens."""
    name = f"atrium_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(server_url).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name, make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        try:
            step(f"dropping database {name}")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            signal.signal(signal.SIGINT, previous)


# --- servers and wrk ---------------------------------------------------------------------


class Server:
    """A server subprocess in a session of its own, with its log in a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, workers: int, timeout: float = 90.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        healthy = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{self.port}/health", headers={"Host": "localhost"}, timeout=5
                )
                healthy = healthy + 1 if response.status_code == 200 else 0
            except httpx.HTTPError:
                healthy = 0
            # Every worker is up once the tree holds the master and its workers.
            if healthy >= 3 and len(process_tree(self.proc.pid)) >= 1 + (workers if workers > 1 else 0):
                return
            time.sleep(0.2)
        raise BenchError(f"{self.name} did not become healthy in {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def problems(self, lines: int = 20) -> str:
        """The log's last lines that are not successful requests (errors, tracebacks)."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join([ln for ln in text if '" 200' not in ln][-lines:])

    def rss_mb(self) -> tuple[float, dict[int, float]]:
        assert self.proc is not None
        return tree_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C on `atrium serve` does
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group of this server only
            self.proc.wait(timeout=10)


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    token: str
    path: str


@dataclass(frozen=True, slots=True)
class BenchTenant:
    slug: str
    schema: str
    id: uuid.UUID
    owner_id: uuid.UUID

    @property
    def host(self) -> str:
        return f"{self.slug}.localhost"


class Wrk:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        binary = shutil.which("wrk")
        if binary is None:
            raise BenchError("wrk is not installed (Debian: apt-get install -y wrk)")
        self.binary, self.args, self.workdir = binary, args, workdir

    def run(
        self,
        port: int,
        targets: list[Target],
        seconds: float,
        pick: str = "random",
        label: str = "",
        connections: int | None = None,
    ) -> dict[str, Any]:
        targets_file = self.workdir / f"targets-{uuid.uuid4().hex[:8]}.tsv"
        targets_file.write_text("".join(f"{t.host}\t{t.token}\t{t.path}\n" for t in targets))
        connections = connections or self.args.connections
        threads = max(1, min(self.args.wrk_threads, connections))
        env = {
            **os.environ,
            "BENCH_TARGETS": str(targets_file),
            "BENCH_PICK": pick,
            "BENCH_THREADS": str(threads),
        }
        command = [
            self.binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, math.ceil(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_SCRIPT),
            f"http://127.0.0.1:{port}",
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
        targets_file.unlink(missing_ok=True)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if done.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({label}): {done.stderr.strip() or done.stdout.strip()}")
        raw = json.loads(line.removeprefix("BENCH_JSON "))
        errors = raw["errors"]
        if errors["status"] or errors["connect"] or errors["timeout"]:
            raise BenchError(f"wrk saw errors in {label}: {errors} of {raw['requests']} requests")
        return {
            "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p50_ms": round(raw["p50_us"] / 1000, 2),
            "p90_ms": round(raw["p90_us"] / 1000, 2),
            "p99_ms": round(raw["p99_us"] / 1000, 2),
            "max_ms": round(raw["max_us"] / 1000, 2),
            "requests": raw["requests"],
            "seconds": round(raw["duration_us"] / 1e6, 2),
            "tenants": len({t.host for t in targets}),
        }

    def measure(
        self,
        port: int,
        targets: list[Target],
        label: str,
        seconds: float | None = None,
        pick: str = "random",
        warmup: float | None = None,
        connections: int | None = None,
    ) -> dict[str, Any]:
        warmup = self.args.warmup if warmup is None else warmup
        if warmup > 0:
            self.run(port, targets, warmup, pick, f"{label} warm-up", connections)
        result = self.run(port, targets, seconds or self.args.duration, pick, label, connections)
        step(
            f"  {label}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms ({result['requests']} requests)"
        )
        return result


# --- the benchmark -----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, db_name: str, url: str, workdir: Path) -> None:
        self.args, self.db_name, self.url, self.workdir = args, db_name, url, workdir
        self.secret = secrets.token_urlsafe(48)
        self.settings = Settings(database_url=url, secret_key=self.secret, bcrypt_rounds=args.bcrypt_rounds)
        self.engine = create_operator_engine(self.settings, pool_size=2)
        self.tenants: list[BenchTenant] = []
        self.results: dict[str, Any] = {}
        self._raw_conn: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        if self._raw_conn is not None:
            self._raw_conn.close()
        self.engine.dispose()

    # 1. provisioning ----------------------------------------------------------------------

    def provision(self) -> None:
        args = self.args
        n = args.tenants
        step(
            f"provisioning {n} tenants with provision_tenant (bcrypt cost {args.bcrypt_rounds}), "
            f"{args.raw_samples} raw-DDL schemas interleaved"
        )
        with self.engine.begin() as conn:
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
        with progress_bar() as bar:
            task = bar.add_task("provisioning", total=n)
            for i in range(n):
                slug = f"bench-{i:05d}"
                owner = OwnerSpec("Bench Owner", f"owner@{slug}.example", "+1 555 0100", f"pw-{slug}-secret")
                if fresh:
                    # Like `atrium tenants create`: a new server backend for each tenant. The
                    # connection is opened untimed; provision_tenant checks it out (pre-ping included).
                    self.engine.dispose()
                    self.engine.connect().close()
                t0 = time.perf_counter()
                made = provision_tenant(self.engine, slug, "Bench", owner, bcrypt_rounds=args.bcrypt_rounds)
                times.append(time.perf_counter() - t0)
                self.tenants.append(BenchTenant(made.slug, made.schema, made.id, made.owner_id))
                if i % every == 0 and len(raw_batch) < args.raw_samples:
                    r0 = time.perf_counter()
                    raw_statements.append(self._raw_ddl(f"bench_raws_{i}", head, statements, fresh))
                    raw_batch.append(self._raw_ddl(f"bench_raw_{i}", head, [batch], fresh))
                    raw_seconds += time.perf_counter() - r0
                bar.advance(task)
                if not console.is_terminal and (i + 1) % max(1, n // 10) == 0:
                    recent = times[-max(1, n // 10) :]
                    p50_recent = ms(statistics.median(recent))
                    step(f"  {i + 1}/{n} tenants, p50 of the last {len(recent)}: {p50_recent:.1f} ms")
        wall = time.perf_counter() - started - raw_seconds
        bcrypt_started = time.perf_counter()
        hash_password("correct horse battery", PRODUCTION_BCRYPT_ROUNDS)
        bcrypt_s = time.perf_counter() - bcrypt_started
        p50 = ms(statistics.median(times))
        raw_p50 = ms(statistics.median(raw_statements))
        self.results["provision"] = {
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
        r = self.results["provision"]
        step(
            f"  provision p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, {r['tenants_per_s']} tenants/s; "
            f"raw DDL p50 {r['raw_ddl_p50_ms']} ms (statement by statement), {r['raw_ddl_batch_p50_ms']} ms "
            f"(one batch); bcrypt cost 12: {r['bcrypt_ms']} ms"
        )

    def _raw_ddl(self, schema: str, head: str, statements: list[str], fresh: bool) -> float:
        """The floor: the tenant tables by plain SQL, one transaction; the schema is dropped after.

        On a connection of its own, opened untimed: fresh for each schema when the tenants get
        fresh ones, else one kept for the whole run (as the tenants' pooled connection is).
        """
        if fresh or self._raw_conn is None:
            if self._raw_conn is not None:
                self._raw_conn.close()
            self._raw_conn = psycopg.connect(self.url)
        conn = self._raw_conn
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            conn.execute("SELECT set_config('search_path', %s, true)", [quote_ident(schema)])
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (%s)", [head])
        elapsed = time.perf_counter() - t0
        with conn.transaction():  # untimed: keep the catalog the size the tenants make it
            conn.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
        return elapsed

    # 2. migrate, nothing pending ----------------------------------------------------------

    def migrate_noop(self) -> None:
        n = len(self.tenants)
        step(f"migrate with nothing pending over {n} tenants (in-process, then `atrium tenants migrate`)")
        runs: list[float] = []
        for _ in range(3):
            t0 = time.perf_counter()
            report = migrate_tenants(self.settings, self.engine, None, concurrency=DEFAULT_CONCURRENCY)
            runs.append(time.perf_counter() - t0)
            if report.outcomes or len(report.current) != n:
                raise BenchError(
                    f"expected {n} tenants at head, got {len(report.current)} and {report.outcomes}"
                )
        cli_runs: list[float] = []
        env = {**os.environ, "DATABASE_URL": self.url}
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
        self.results["migrate_noop"] = {
            "tenants": n,
            "seconds": round(statistics.median(runs), 3),
            "cli_seconds": round(statistics.median(cli_runs), 3),
            "cli_reported_seconds": data["seconds"],
            "runs": 3,
        }
        r = self.results["migrate_noop"]
        step(f"  in-process {r['seconds']} s, CLI wall {r['cli_seconds']} s (median of 3)")

    # 3. migrate, one revision pending -----------------------------------------------------

    def migrate_apply(self) -> None:
        n = len(self.tenants)
        concurrency = self.args.concurrency
        head = head_revision("tenant")
        revision = f"bench_{uuid.uuid4().hex[:8]}"
        versions = self.workdir / "bench_versions"
        versions.mkdir()
        (versions / f"{revision}_bench_note.py").write_text(
            textwrap.dedent(
                f'''\
                """bench: a throw-away revision (bench/run.py); lives only in a temp directory."""
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
                self.settings,
                self.engine,
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
        raw_seconds = self._raw_apply(revision, concurrency)
        self.results["migrate_apply"] = {
            "tenants": n,
            "seconds": round(seconds, 2),
            "concurrency": concurrency,
            "seconds_per_1000": round(seconds * 1000 / n, 2),
            "raw_sql_seconds": round(raw_seconds, 2),
            "raw_sql_concurrency": concurrency,
            "ratio": round(seconds / raw_seconds, 2),
        }
        step(f"  raw SQL: {raw_seconds:.2f} s ({concurrency} connections)")

    def _raw_apply(self, revision: str, concurrency: int) -> float:
        """ALTER + alembic_version + registry version, one transaction per schema, N threads."""
        pending = list(self.tenants)
        lock = threading.Lock()
        failures: list[BaseException] = []

        def worker() -> None:
            try:
                with psycopg.connect(self.url) as conn:
                    while True:
                        with lock:
                            if not pending:
                                return
                            tenant = pending.pop()
                        with conn.transaction():
                            conn.execute(
                                "SELECT set_config('search_path', %s, true)", [quote_ident(tenant.schema)]
                            )
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

    def _targets(self, tenants: list[BenchTenant], path: Callable[[BenchTenant], str]) -> list[Target]:
        auth = TokenAuth(self.secret, 6 * 3600, None, None, 0)  # type: ignore[arg-type]  # issues tokens only
        return [Target(t.host, auth.issue(t.owner_id, t.id), path(t)) for t in tenants]

    def _touch_every_tenant(self, wrk: Wrk, port: int, everyone: list[Target], rate: float) -> dict[str, Any]:
        """Round-robin runs until every target was requested; the figures of the longest run."""
        remaining, runs = everyone, []
        for _ in range(4):
            needed = math.ceil(1.3 * len(remaining) / max(rate, 1.0)) + 1
            label = f"get_user over all {len(everyone)} tenants" + (
                f" ({len(remaining)} left)" if runs else ""
            )
            run = wrk.measure(port, remaining, label, max(self.args.duration, needed), "roundrobin", warmup=0)
            runs.append(run)
            # One wrk thread walks the list in order: the first `requests` targets were
            # reached. Several threads start at offsets of their own: then walk it all again.
            if self.args.wrk_threads == 1:
                remaining = remaining[run["requests"] :]
            elif run["requests"] >= len(remaining):
                remaining = []
            if not remaining:
                return max(runs, key=lambda r: r["requests"])
            rate = max(run["rps"], 1.0)
        raise BenchError(f"{len(remaining)} of {len(everyone)} tenants were never requested")

    def _spread_pair(
        self, wrk: Wrk, port: int, one: list[Target], many: list[Target], label: str, i: int
    ) -> SpreadRound:
        """One round of the spread figure on the server at ``port``: 1 tenant, then T."""
        single = wrk.measure(port, one, f"{label}: 1 tenant, round {i}")
        spread = wrk.measure(port, many, f"{label}: {len(many)} tenants, round {i}")
        return spread["p99_ms"] / single["p99_ms"], single, spread

    def _cold_start(self, wrk: Wrk, port: int, many: list[Target], label: str) -> list[dict[str, Any]]:
        """``--spread-warmup`` seconds over the T tenants, in slices of at most 5 s.

        Each PostgreSQL backend meets each of its tenants on its own: it loads that
        schema's catalog entries, and psycopg prepares a tenant's statement on its fifth
        run on a connection, which PostgreSQL plans generically after five more. Over
        1,000 tenants that takes tens of seconds of load (bench/RESULTS.md, eighth
        pass); the slices show how long, and the rounds then compare steady states.
        """
        slices: list[dict[str, Any]] = []
        elapsed, total = 0.0, self.args.spread_warmup
        while elapsed < total:
            seconds = min(5.0, total - elapsed)
            run = wrk.run(port, many, seconds, label=f"{label} warm-up")
            elapsed += run["seconds"]
            slices.append({"at_s": round(elapsed, 1), "rps": run["rps"], "p99_ms": run["p99_ms"]})
        if slices:
            step(
                f"  {label}: {len(many)} tenants from cold, {elapsed:.0f} s in slices: "
                + ", ".join(f"{s['rps']:.0f} req/s p99 {s['p99_ms']:.0f} ms" for s in slices)
            )
        return slices

    def _seed_users(self, tenant: BenchTenant, count: int) -> None:
        password = hash_password("bench-user-password", 4)
        with psycopg.connect(self.url) as conn, conn.transaction():
            conn.execute("SELECT set_config('search_path', %s, true)", [quote_ident(tenant.schema)])
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO users (name, email, phone, password) VALUES (%s, %s, %s, %s)",
                    [
                        (f"User {i}", f"user{i}@{tenant.slug}.example", "+1 555 0101", password)
                        for i in range(count)
                    ],
                )

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_") and k != "REDIS_URL"}
        env.update(DATABASE_URL=self.url, ATRIUM_SECRET_KEY=self.secret, ATRIUM_BCRYPT_ROUNDS="4")
        if self.args.redis_url:
            env["REDIS_URL"] = self.args.redis_url
        return env

    def _check(self, port: int, target: Target) -> None:
        response = httpx.get(
            f"http://127.0.0.1:{port}{target.path}",
            headers={"Host": target.host, "Authorization": f"Bearer {target.token}"},
            timeout=10,
        )
        if response.status_code != 200:
            raise BenchError(f"GET {target.path} answered {response.status_code}: {response.text[:300]}")

    def pg_backends(self, application_name: str) -> dict[str, float]:
        """The largest RSS among this database's backends of ``application_name`` (from /proc)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            pids = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
                    " AND backend_type = 'client backend'",
                    [self.db_name, application_name],
                )
            ]
        statuses = [s for s in (proc_status(pid) for pid in pids) if "VmRSS" in s]
        if not statuses:
            raise BenchError(
                "cannot read the PostgreSQL backends' memory from /proc: the server must run on this machine"
            )
        return {
            "pg_backend_max_rss_mb": round(max(s["VmRSS"] for s in statuses) / 1024, 1),
            "pg_backend_max_rss_anon_mb": round(max(s.get("RssAnon", 0) for s in statuses) / 1024, 1),
            "pg_backends": len(statuses),
        }

    def requests(self, wrk: Wrk) -> None:
        args = self.args
        first = self.tenants[0]
        self._seed_users(first, 50)
        port = free_port()
        server = Server(
            "atrium serve",
            [*atrium_command(), "serve", "--port", str(port), "--workers", str(args.workers)],
            self._server_env(),
            port,
            self.workdir / "atrium-serve.log",
        )
        step(
            f"serving with `atrium serve --workers {args.workers}` on port {port}; wrk: {args.connections} "
            f"connections, {args.duration:g} s per run after {args.warmup:g} s warm-up"
        )
        get_one = self._targets([first], lambda t: f"/users/{t.owner_id}")
        list_one = self._targets([first], lambda _t: "/users?limit=50")
        spread = self._targets(self.tenants[: args.spread_tenants], lambda t: f"/users/{t.owner_id}")
        # The floor app needs no token; the same hosts and ids, on its route of Atrium's shape.
        one_alone = [Target(t.host, t.token, f"/alone{t.path}") for t in get_one]
        spread_alone = [Target(t.host, t.token, f"/alone{t.path}") for t in spread]
        everyone = spread + self._targets(
            self.tenants[args.spread_tenants :], lambda t: f"/users/{t.owner_id}"
        )
        ten = everyone[:10]
        base_port = free_port()
        baseline_server = Server(
            "baseline",
            [
                sys.executable,
                str(BENCH_DIR / "baseline_app.py"),
                "--port",
                str(base_port),
                "--workers",
                str(args.workers),
            ],
            self._server_env(),
            base_port,
            self.workdir / "baseline.log",
        )
        try:
            server.start(args.workers)
            baseline_server.start(args.workers)
            for target in (get_one[0], list_one[0], everyone[-1]):
                self._check(port, target)
            self._check(base_port, get_one[0])
            step(
                f"get_user against the raw-psycopg floor (bench/baseline_app.py, same uvicorn options, "
                f"served beside it on port {base_port}), alternating, {RATIO_ROUNDS} rounds"
            )
            # The machine is shared and noisy: alternate app and floor, and take the round
            # with the median ratio, so that a burst of outside load hits one round, not
            # one side.
            rounds = []
            for i in range(1, RATIO_ROUNDS + 1):
                app_run = wrk.measure(port, get_one, f"get_user (1 tenant), round {i}")
                base_run = wrk.measure(base_port, get_one, f"baseline (raw psycopg, 1 tenant), round {i}")
                rounds.append((app_run["rps"] / base_run["rps"], app_run, base_run))
            rounds.sort(key=lambda r: r[0])
            ratio, get_user, baseline = rounds[len(rounds) // 2]
            list_users = wrk.measure(port, list_one, "list_users (limit=50)")
            mem_10 = wrk.measure(port, ten, "get_user over 10 tenants")
            rss_10, _ = server.rss_mb()
            # Each server has served the one tenant for minutes by now, the T tenants not
            # yet: they are served first (floors first, Atrium last, right before the
            # rounds), so that the rounds compare steady states; the cold start is a
            # figure of its own.
            cold_alone = self._cold_start(wrk, base_port, spread_alone, "floor spread, alone")
            cold_floor = self._cold_start(wrk, base_port, spread, "floor spread")
            cold = self._cold_start(wrk, port, spread, "spread")
            # 1 tenant and T tenants alternate over --spread-rounds rounds, and the round with
            # the median p99 ratio is reported (with every round's ratio), as for the request
            # ratio: one p99 of a saturated run is the least stable figure of the bench.
            # The floor app runs the same pairs in each round: its ratio is what spreading
            # one single-row select over T schemas costs this machine, with no Atrium code.
            spread_rounds, floor_rounds, alone_rounds = [], [], []
            for i in range(1, args.spread_rounds + 1):
                spread_rounds.append(self._spread_pair(wrk, port, get_one, spread, "spread", i))
                floor_rounds.append(self._spread_pair(wrk, base_port, get_one, spread, "floor spread", i))
                alone_rounds.append(
                    self._spread_pair(wrk, base_port, one_alone, spread_alone, "floor spread, alone", i)
                )
            baseline_server.stop()
            atrium = spread_summary(spread_rounds)
            # The same pair below saturation: with every core busy, wrk's closed loop turns
            # lost throughput into queueing, so the p99 above mixes cost and queue; here
            # it is closer to the cost of one request.
            light = LIGHT_CONNECTIONS
            spread_1_light = wrk.measure(
                port, get_one, f"spread: 1 tenant, {light} connections", connections=light
            )
            spread_t_light = wrk.measure(
                port, spread, f"spread: {len(spread)} tenants, {light} connections", connections=light
            )
            backends = self.pg_backends("atrium")
            # Every tenant at least once: round robin, long enough at the rate just measured,
            # then again over whatever was not reached (the rate falls as tenants grow).
            mem_n = self._touch_every_tenant(wrk, port, everyone, atrium["tn"]["rps"])
            rss_n, per_process = server.rss_mb()
            backends_n = self.pg_backends("atrium")
        except BenchError as exc:
            raise BenchError(f"{exc}\nserver log:\n{server.problems()}") from None
        finally:
            server.stop()
            baseline_server.stop()
        self.results["requests"] = {
            "workers": args.workers,
            "connections": args.connections,
            "duration_s": args.duration,
            "redis": bool(args.redis_url),
            "get_user": get_user,
            "list_users": list_users,
            "baseline": baseline,
            "ratio": round(ratio, 2),
            "ratio_rounds": [round(r[0], 2) for r in rounds],
        }
        floor, floor_alone = spread_summary(floor_rounds), spread_summary(alone_rounds)
        self.results["spread"] = {
            "tenants": len(spread),
            "warmup_s": args.spread_warmup,
            **atrium,
            "cold": cold_start_summary(cold, atrium),
            "floor": {**floor, "cold": cold_start_summary(cold_floor, floor)},
            "floor_alone": {**floor_alone, "cold": cold_start_summary(cold_alone, floor_alone)},
            "light": {
                "connections": LIGHT_CONNECTIONS,
                "t1": spread_1_light,
                "tn": spread_t_light,
                "p99_ratio": round(spread_t_light["p99_ms"] / spread_1_light["p99_ms"], 2),
            },
        }
        self.results["memory"] = {
            "tenants_n": len(everyone),
            "rss_mb_10": round(rss_10, 1),
            "rss_mb_n": round(rss_n, 1),
            "rss_ratio": round(rss_n / rss_10, 3),
            "processes": len(per_process),
            **backends,
            "pg_backend_max_rss_mb_after_n": backends_n["pg_backend_max_rss_mb"],
            "pg_backend_max_rss_anon_mb_after_n": backends_n["pg_backend_max_rss_anon_mb"],
            "ten_tenants_run": mem_10,
            "all_tenants_run": mem_n,
        }


# (p99 ratio T / 1, the 1-tenant run, the T-tenant run)
SpreadRound = tuple[float, dict[str, Any], dict[str, Any]]


def median_round(rounds: list[SpreadRound]) -> SpreadRound:
    return sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]


def spread_summary(rounds: list[SpreadRound]) -> dict[str, Any]:
    """The median round's runs and ratios, and every round's figures."""
    ratio, one, many = median_round(rounds)
    return {
        "t1": one,
        "tn": many,
        "p99_ratio": round(ratio, 2),
        "rps_ratio": round(many["rps"] / one["rps"], 2),
        "rounds": round_figures(rounds),
    }


def cold_start_summary(slices: list[dict[str, Any]], rounds: dict[str, Any]) -> dict[str, Any]:
    """The warm-up's slices, its first slice against the rounds' one tenant, and when the
    rate first reached 90 % of the median round's rate over the T tenants."""
    if not slices:
        return {"slices": [], "p99_ratio_first": None, "rps_ratio_first": None, "seconds_to_90pct": None}
    first, t1, tn = slices[0], rounds["t1"], rounds["tn"]
    reached = next((s["at_s"] for s in slices if s["rps"] >= 0.9 * tn["rps"]), None)
    return {
        "slices": slices,
        "p99_ratio_first": round(first["p99_ms"] / t1["p99_ms"], 2),
        "rps_ratio_first": round(first["rps"] / t1["rps"], 2),
        "seconds_to_90pct": reached,
    }


def round_figures(rounds: list[SpreadRound]) -> list[dict[str, float]]:
    return [
        {
            "p99_ratio": round(ratio, 2),
            "rps_ratio": round(many["rps"] / one["rps"], 2),
            "t1_p99_ms": one["p99_ms"],
            "tn_p99_ms": many["p99_ms"],
        }
        for ratio, one, many in rounds
    ]


# --- goals, table, files -----------------------------------------------------------------


def goals(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, measured, goal, met) rows."""
    p, noop, apply_ = results["provision"], results["migrate_noop"], results["migrate_apply"]
    req, spread, mem = results["requests"], results["spread"], results["memory"]
    apply_goal = 10.0 * max(apply_["tenants"], 1000) / 1000
    return [
        ("provision ratio_p50", f"{p['ratio_p50']:.2f}", "≤ 2", p["ratio_p50"] <= 2),
        (
            "migrate_noop cli_seconds",
            f"{noop['cli_seconds']:.2f} s ({noop['tenants']} tenants)",
            "≤ 2 s at 10,000 tenants",
            noop["cli_seconds"] <= 2,
        ),
        (
            "migrate_apply seconds",
            f"{apply_['seconds']:.2f} s ({apply_['tenants']} tenants)",
            f"≤ 10 s per 1,000 tenants (≤ {apply_goal:g} s here)",
            apply_["seconds"] <= apply_goal,
        ),
        ("requests ratio", f"{req['ratio']:.2f}", "≥ 0.6", req["ratio"] >= 0.6),
        ("spread p99_ratio", f"{spread['p99_ratio']:.2f}", "≤ 1.25", spread["p99_ratio"] <= 1.25),
        (
            "  floor: the raw-psycopg app, same run",
            f"{spread['floor']['p99_ratio']:.2f}",
            "(not a goal: what this machine allows)",
            None,
        ),
        (
            "  floor in the shape of Atrium's GET (one select, autocommit)",
            f"{spread['floor_alone']['p99_ratio']:.2f}",
            "(not a goal: what this machine allows that shape)",
            None,
        ),
        (
            f"  cold start: the first {spread['cold']['slices'][0]['at_s']:g} s over the T tenants"
            if spread["cold"]["slices"]
            else "  cold start",
            "—" if spread["cold"]["p99_ratio_first"] is None else f"{spread['cold']['p99_ratio_first']:.2f}",
            "(not a goal; see RESULTS.md)",
            None,
        ),
        (
            f"  same, {spread['light']['connections']} wrk connections",
            f"{spread['light']['p99_ratio']:.2f}",
            "(not a goal; see RESULTS.md)",
            None,
        ),
        ("memory rss_n / rss_10", f"{mem['rss_ratio']:.3f}", "≤ 1.10", mem["rss_ratio"] <= 1.10),
    ]


def load(r: dict[str, Any]) -> str:
    """One wrk run's figures."""
    return f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"


def figure_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, floor / note) rows of the main table."""
    p, noop, apply_ = results["provision"], results["migrate_noop"], results["migrate_apply"]
    req, spread, mem = results["requests"], results["spread"], results["memory"]
    light, cold = spread["light"], spread["cold"]

    def spread_row(label: str, summary: dict[str, Any]) -> tuple[str, str, str]:
        rounds = ", ".join(f"{r['p99_ratio']:.2f}" for r in summary["rounds"])
        return (
            label,
            f"1: {load(summary['t1'])}",
            f"{spread['tenants']}: {load(summary['tn'])}; p99 ratio {summary['p99_ratio']:.2f} (median of "
            f"rounds {rounds})",
        )

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
        (
            f"migrate_noop ({noop['tenants']} tenants)",
            f"{noop['seconds']:.3f} s in-process",
            f"`atrium tenants migrate` wall time {noop['cli_seconds']:.2f} s",
        ),
        (
            f"migrate_apply ({apply_['tenants']} tenants)",
            f"{apply_['seconds']:.2f} s, concurrency {apply_['concurrency']}",
            f"raw SQL {apply_['raw_sql_seconds']:.2f} s (same concurrency); ratio {apply_['ratio']:.2f}",
        ),
        (
            "get_user",
            load(req["get_user"]),
            f"baseline {load(req['baseline'])}; ratio {req['ratio']:.2f} (median of rounds "
            f"{', '.join(f'{r:.2f}' for r in req['ratio_rounds'])})",
        ),
        ("list_users (limit 50)", load(req["list_users"]), ""),
        spread_row(f"spread (1 vs {spread['tenants']} tenants)", spread),
        spread_row("  floor (bench/baseline_app.py)", spread["floor"]),
        spread_row("  floor, one select alone", spread["floor_alone"]),
        (
            f"  cold start ({spread['warmup_s']:g} s over {spread['tenants']} tenants before the rounds)",
            ", ".join(f"{s['rps']:.0f}" for s in cold["slices"]) + " req/s",
            "p99 "
            + ", ".join(f"{s['p99_ms']:.0f}" for s in cold["slices"])
            + " ms; "
            + (
                f"90 % of the rounds' rate after {cold['seconds_to_90pct']:g} s"
                if cold["seconds_to_90pct"] is not None
                else "below 90 % of the rounds' rate throughout"
            ),
        ),
        (
            f"  with {light['connections']} wrk connections",
            f"1: {load(light['t1'])}",
            f"{spread['tenants']}: {load(light['tn'])}; p99 ratio {light['p99_ratio']:.2f}",
        ),
        (
            "memory (app, all processes)",
            f"{mem['rss_mb_10']:.0f} MB after 10 tenants, {mem['rss_mb_n']:.0f} MB after {mem['tenants_n']}",
            f"largest PostgreSQL backend after spread: {mem['pg_backend_max_rss_mb']:.0f} MB RSS "
            f"({mem['pg_backend_max_rss_anon_mb']:.0f} MB anonymous); after all "
            f"{mem['tenants_n']}: {mem['pg_backend_max_rss_mb_after_n']:.0f} MB "
            f"({mem['pg_backend_max_rss_anon_mb_after_n']:.0f} MB)",
        ),
    ]


def print_table(results: dict[str, Any]) -> None:
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    table = Table(title="Atrium benchmarks", show_lines=False)
    for column in ("figure", "value", "floor / more"):
        table.add_column(column, overflow="fold")
    for row in figure_rows(results):
        table.add_row(*row)
    out.print(table)
    goal_table = Table(title="Goals (shown, not enforced)")
    for column in ("figure", "measured", "goal", "met"):
        goal_table.add_column(column)
    for figure, measured, goal, met in goals(results):
        verdict = "—" if met is None else "[green]yes[/]" if met else "[red]no[/]"
        goal_table.add_row(figure, measured, goal, verdict)
    out.print(goal_table)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        f"## {meta['date'][:10]}: {meta['mode']} run, {results['provision']['tenants']} tenants",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gb']} GB memory, "
        f"Linux {machine['kernel']}, Python {machine['python']}; PostgreSQL {meta['postgres']['version']} "
        f"({', '.join(f'{k} {v}' for k, v in meta['postgres']['settings'].items())}); "
        f"app served with Redis: {'yes' if results['requests']['redis'] else 'no'}. "
        f"Total wall time {meta['seconds']:.0f} s; load average (1, 5, 15 min) at start "
        f"{meta['loadavg_start']}, at end {meta['loadavg_end']}.",
        "",
        "| figure | value | floor / more |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in figure_rows(results)),
        "",
        "| goal | measured | target | met |",
        "|---|---|---|---|",
        *(
            f"| {a} | {b} | {c} | {'—' if m is None else 'yes' if m else '**no**'} |"
            for a, b, c, m in goals(results)
        ),
        "",
    ]
    return "\n".join(lines)


def postgres_meta(url: str) -> dict[str, Any]:
    names = ("shared_buffers", "fsync", "synchronous_commit", "autovacuum", "max_connections")
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(names)]
            ).fetchall()
        )
        buffers = conn.execute("SHOW shared_buffers").fetchone()
    if buffers:
        settings["shared_buffers"] = buffers[0]
    return {
        "version": version[0] if version else "?",
        "settings": {k: settings[k] for k in names if k in settings},
    }


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)


def record(results: dict[str, Any]) -> None:
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    marker = "<!-- runs: newest first -->"
    section = markdown(results)
    if marker in text:
        text = text.replace(marker, f"{marker}\n\n{section}", 1)
    else:
        text = text.rstrip("\n") + f"\n\n{marker}\n\n{section}"
    RESULTS_MD.write_text(text)


# --- main --------------------------------------------------------------------------------


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_url = os.environ.get("DATABASE_URL", "").strip()
    if not server_url:
        console.print("DATABASE_URL is not set (e.g. postgresql://root@127.0.0.1:5432/postgres)")
        return 2
    to_sqlalchemy_url(server_url)  # validates
    signal.signal(signal.SIGTERM, _sigterm)
    # Ctrl-C must clean up even when started in the background (which ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="atrium-bench-"))
    command = (
        f"DATABASE_URL={redact(server_url)} "
        + (f"REDIS_URL={redact(args.redis_url)} " if args.redis_url else "")
        + "python bench/run.py "
        + shlex.join(sys.argv[1:])
    )
    try:
        wrk = Wrk(args, workdir)
        with scratch_database(server_url) as (db_name, url):
            step(f"working in database {db_name}")
            bench = Bench(args, db_name, url, workdir)
            try:
                bench.provision()
                bench.migrate_noop()
                bench.migrate_apply()
                bench.requests(wrk)
            finally:
                bench.close()
            results = {
                "meta": {
                    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "mode": "quick" if args.quick else "full",
                    "command": command,
                    "database": db_name,
                    "machine": machine_info(),
                    "postgres": postgres_meta(url),
                    "args": {
                        k: (str(v) if isinstance(v, Path) else redact(v) if k == "redis_url" and v else v)
                        for k, v in vars(args).items()
                    },
                    "loadavg_start": load_start,
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                },
                **bench.results,
            }
    except BenchError as exc:
        console.print(f"[red]bench: {exc}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("[red]bench: interrupted[/]")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    write_results(args.output, results)
    print_table(results)
    step(f"wrote {args.output} ({results['meta']['seconds']:.0f} s in all)")
    if args.record:
        record(results)
        step(f"appended this run to {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
